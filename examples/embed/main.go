// Command embed shows p2pkex as a library: it starts a node, exchanges keys
// with the peer given on the command line, shows the safety number, sends a
// message sealed under the new key and prints the messages it receives.
//
//	go run ./examples/embed /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
//
// Start the peer with "p2pkex daemon --repo /tmp/bob --listen
// /ip4/127.0.0.1/tcp/4001 --no-mdns"; the daemon prints the message. Without
// an argument, the program starts a second node itself ("bob"), which
// answers every message with an echo.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.SetFlags(0)
		log.Fatalf("embed: %v", err)
	}
}

// run is the whole program; main_test.go runs it without arguments.
func run(ctx context.Context, args []string, out io.Writer) error {
	// A node with an in-memory store, listening on loopback only. A real
	// application passes node.WithStore(peerstore.OpenBolt(dir)) to keep
	// its identity and keys, or node.WithHost to attach to its own host.
	alice, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		return err
	}
	defer alice.Close()

	// Progress events: phases entered, and loud key-change reports.
	events, stop := alice.Subscribe(0)
	defer stop()
	go func() {
		for e := range events {
			switch {
			case e.Kind == node.EventStep && e.Step.Kind == protocol.EventPhaseEntered:
				fmt.Fprintf(out, "alice: %v\n", e.Step.Phase)
			case e.Kind == node.EventTrustChanged:
				fmt.Fprintf(out, "alice: %s\n", e.Trust) // first use, key changes, identity changes
			}
		}
	}()

	// Subscribe before anything can arrive: a node without subscribers
	// refuses messages.
	inbox, stopInbox := alice.Messages(0)
	defer stopInbox()

	target, echo, err := peerOf(ctx, args)
	if err != nil {
		return err
	}
	if echo != nil {
		defer echo.Close()
	}

	if err := alice.Connect(ctx, *target); err != nil {
		return err
	}
	info, err := alice.Exchange(ctx, target.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "epoch %d, key ID %s, suite %v, sent own key %v, received peer's key %v\n",
		info.Epoch, info.KeyID, info.Suite, info.SentOwnKey, info.ReceivedPeerKey)
	// Both sides compute the same number; people compare it to rule out a
	// man in the middle (p2pkex verify shows it on the daemon's side).
	sn := alice.SafetyNumber(target.ID)
	fmt.Fprintf(out, "safety number %s\n              %s\n", sn.Digits(), sn.Words())

	// A message, sealed under keys derived from the session key.
	if err := alice.Send(ctx, target.ID, []byte("hello from embed")); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	fmt.Fprintf(out, "sent %q\n", "hello from embed")

	// A daemon does not answer; our own bob echoes. Wait a little either way.
	wait := 2 * time.Second
	if echo != nil {
		wait = 20 * time.Second
	}
	select {
	case m := <-inbox:
		fmt.Fprintf(out, "received from %s (epoch %d): %q\n", m.From, m.Epoch, m.Data)
	case <-time.After(wait):
		if echo != nil {
			return errors.New("no echo from bob")
		}
		fmt.Fprintln(out, "no message received")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// peerOf returns the peer named by args, or starts a second node that
// echoes every message and returns it.
func peerOf(ctx context.Context, args []string) (*peer.AddrInfo, *node.Node, error) {
	if len(args) > 0 {
		m, err := ma.NewMultiaddr(args[0])
		if err != nil {
			return nil, nil, err
		}
		pi, err := peer.AddrInfoFromP2pAddr(m)
		return pi, nil, err
	}
	bob, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		return nil, nil, err
	}
	msgs, _ := bob.Messages(0) // ends when bob closes
	go func() {
		for m := range msgs {
			reply := append([]byte("echo: "), m.Data...)
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = bob.Send(sctx, m.From, reply)
			cancel()
		}
	}()
	return &peer.AddrInfo{ID: bob.ID(), Addrs: bob.Host().Addrs()}, bob, nil
}
