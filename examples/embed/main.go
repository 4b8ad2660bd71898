// Command embed shows p2pkex as a library: it starts a node, exchanges keys
// with the peer given on the command line, and prints the key's metadata.
//
//	go run ./examples/embed /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
//
// Start the peer with "p2pkex daemon --repo /tmp/bob --listen
// /ip4/127.0.0.1/tcp/4001". Without an argument, the program starts a second
// node itself and exchanges with it.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Args[1:]); err != nil {
		log.SetFlags(0)
		log.Fatalf("embed: %v", err)
	}
}

func run(ctx context.Context, args []string) error {
	// A node with an in-memory store, listening on loopback.
	alice, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		return err
	}
	defer alice.Close()

	// Progress events: phases entered, notices sent and received.
	events, stop := alice.Subscribe(0)
	defer stop()
	go func() {
		for e := range events {
			if e.Kind == node.EventStep && e.Step.Kind == protocol.EventPhaseEntered {
				fmt.Printf("alice: %v\n", e.Step.Phase)
			}
		}
	}()

	var target *peer.AddrInfo
	if len(args) > 0 {
		m, err := ma.NewMultiaddr(args[0])
		if err != nil {
			return err
		}
		if target, err = peer.AddrInfoFromP2pAddr(m); err != nil {
			return err
		}
	} else {
		bob, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			return err
		}
		defer bob.Close()
		target = &peer.AddrInfo{ID: bob.ID(), Addrs: bob.Host().Addrs()}
	}

	if err := alice.Connect(ctx, *target); err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		info, err := alice.Exchange(ctx, target.ID)
		if err != nil {
			return err
		}
		fmt.Printf("epoch %d, key ID %s, suite %v, sent own key %v, received peer's key %v\n",
			info.Epoch, info.KeyID, info.Suite, info.SentOwnKey, info.ReceivedPeerKey)
	}

	// The application's key for talking to the peer.
	key, err := alice.ActiveKey(target.ID)
	if err != nil {
		return err
	}
	defer clear(key.Key[:])
	fmt.Printf("active key: epoch %d, key ID %s\n", key.Epoch, key.ID)
	return nil
}
