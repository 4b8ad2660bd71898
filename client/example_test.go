package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
	"github.com/p2pkex/p2pkex/node"
)

// A program drives the daemon of a repo: who it is, whom it knows, and an
// exchange it cannot run yet, with the API's error code to branch on.
func Example() {
	repo, stop := exampleDaemon() // "p2pkex daemon --repo REPO", in process
	defer stop()

	ctx := context.Background()
	c, err := client.New(repo)
	if errors.Is(err, client.ErrNoDaemon) {
		log.Fatalf("start one: p2pkex daemon --repo %s", repo)
	} else if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	id, err := c.ID(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("running:", id.Running, "listening:", len(id.Addrs) > 0)

	peers, err := c.Peers(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("peers:", len(peers))

	// A peer ID the daemon has no address for.
	_, err = c.Exchange(ctx, "12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v", func(line string) {
		fmt.Println("  ", line) // the exchange's progress, as it happens
	})
	var ae *api.Error
	if errors.As(err, &ae) {
		fmt.Println("code:", ae.Code)
	}
	// Output:
	// running: true listening: true
	// peers: 0
	// code: not-found
}

// New tells a repo without a running daemon by ErrNoDaemon.
func ExampleNew() {
	_, err := client.New(filepath.Join(os.TempDir(), "no-such-repo"))
	fmt.Println(errors.Is(err, client.ErrNoDaemon))
	// Output: true
}

// exampleDaemon runs a node on loopback with the control API on a
// temporary repo, as "p2pkex daemon" does.
func exampleDaemon() (repo string, stop func()) {
	repo, err := os.MkdirTemp("", "p2pkex-example-")
	if err != nil {
		log.Fatal(err)
	}
	n, err := node.New(context.Background(), node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		log.Fatal(err)
	}
	srv := server.New(n, server.Options{Dir: repo})
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	return repo, func() {
		srv.Close()
		n.Close()
		os.RemoveAll(repo)
	}
}
