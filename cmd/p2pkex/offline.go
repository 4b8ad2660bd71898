package main

import (
	"context"

	"github.com/libp2p/go-libp2p"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
)

// newOfflineNode starts a node on the repo that listens nowhere, for
// commands that only change the repo.
func newOfflineNode(ctx context.Context, c *cli.Command, r *repo) (*node.Node, error) {
	opts, err := nodeOptions(c)
	if err != nil {
		return nil, err
	}
	return node.New(ctx, append(opts, node.WithStore(r.store), node.WithLibp2pOptions(libp2p.NoListenAddrs))...)
}
