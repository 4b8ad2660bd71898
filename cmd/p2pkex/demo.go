package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run Alice and Bob in one process and show three exchanges",
		Description: `Alice and Bob start on loopback with temporary stores and run:
  1. a first exchange, in which both public keys are sent;
  2. a second one, in which phase 2 is skipped;
  3. after Bob rotates his exchange key, a third, in which only Bob's key is sent.
The demo exits non-zero unless both sides agree on the key every time.

Examples:
  p2pkex demo
  p2pkex demo --quiet --suite X25519`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "suite", Value: protocol.SuiteMLKEM768X25519.String(), Usage: "suite: MLKEM768X25519 or X25519"},
			&cli.IntFlag{Name: "notice-size", Value: protocol.DefaultNoticeSize, Usage: "largest notice in bytes (128 to 65536)"},
			&cli.BoolFlag{Name: "quiet", Usage: "show phases only, not every notice"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			suite, err := protocol.ParseSuite(c.String("suite"))
			if err != nil {
				return usageError{err.Error()}
			}
			size := int(c.Int("notice-size"))
			if size < protocol.MinNoticeSize || size > protocol.MaxNoticeSize {
				return usagef("--notice-size %d outside [%d, %d]", size, protocol.MinNoticeSize, protocol.MaxNoticeSize)
			}
			return runDemo(ctx, c, suite, size)
		},
	}
}

type demoSide struct {
	name  string
	node  *node.Node
	store ps.Store
	done  <-chan node.Event
}

func runDemo(ctx context.Context, c *cli.Command, suite protocol.Suite, noticeSize int) error {
	out := &progress{w: c.Root().Writer, notices: !c.Bool("quiet")}
	tmp, err := os.MkdirTemp("", "p2pkex-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var followers sync.WaitGroup
	start := func(name string) (*demoSide, error) {
		store, err := ps.OpenBolt(filepath.Join(tmp, name))
		if err != nil {
			return nil, err
		}
		n, err := node.New(ctx,
			node.WithStore(store),
			node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
			node.WithSuites(suite),
			node.WithNoticeSize(noticeSize))
		if err != nil {
			store.Close()
			return nil, err
		}
		events, _ := n.Subscribe(0)
		results := make(chan node.Event, 16)
		followers.Add(1)
		go out.follow(name, events, results, &followers)
		return &demoSide{name: name, node: n, store: store, done: results}, nil
	}
	alice, err := start("Alice")
	if err != nil {
		return err
	}
	bob, err := start("Bob")
	if err != nil {
		alice.close()
		return err
	}
	defer followers.Wait()
	defer alice.close()
	defer bob.close()
	alice.node.Host().Peerstore().AddAddrs(bob.node.ID(), bob.node.Host().Addrs(), peerstore.PermanentAddrTTL)

	out.printf("p2pkex demo: Alice and Bob on loopback, suite %v, notice size %d, stores in %s\n", suite, noticeSize, tmp)
	for _, s := range []*demoSide{alice, bob} {
		out.printf("  %-6s %s  exchange key %.16s\n", s.name, s.node.ID(), s.node.Fingerprint())
	}

	rounds := []struct {
		title              string
		before             func() error
		wantAlice, wantBob bool // whose public key phase 2 must carry
	}{
		{"first contact: neither holds the other's public key", nil, true, true},
		{"again: both public keys are known and current", nil, false, false},
		{"Bob rotated his exchange key: Alice's fingerprint of it is stale", bob.node.RotateExchangeKey, false, true},
	}
	for i, r := range rounds {
		if r.before != nil {
			if err := r.before(); err != nil {
				return err
			}
			out.printf("\nBob rotated: exchange key %.16s\n", bob.node.Fingerprint())
		}
		out.printf("\n[%d/%d] %s\n", i+1, len(rounds), r.title)
		if _, err := alice.node.Exchange(ctx, bob.node.ID()); err != nil {
			return fmt.Errorf("exchange %d: %w", i+1, err)
		}
		info, err := waitDone(ctx, alice.done, bob.node.ID())
		if err != nil {
			return fmt.Errorf("exchange %d: Alice: %w", i+1, err)
		}
		bobInfo, err := waitDone(ctx, bob.done, alice.node.ID())
		if err != nil {
			return fmt.Errorf("exchange %d: Bob: %w", i+1, err)
		}
		if err := agree(alice, bob, info, bobInfo); err != nil {
			return fmt.Errorf("exchange %d: %w", i+1, err)
		}
		if info.InitiatorKeySent != r.wantAlice || info.ResponderKeySent != r.wantBob {
			return fmt.Errorf("exchange %d: phase 2 sent Alice's key: %v, Bob's key: %v; want %v, %v",
				i+1, info.InitiatorKeySent, info.ResponderKeySent, r.wantAlice, r.wantBob)
		}
		out.printf("  Alice: epoch %d, key ID %s (%s)\n", info.Epoch, info.KeyID, describe(info))
		out.printf("  Bob:   epoch %d, key ID %s (%s)\n", bobInfo.Epoch, bobInfo.KeyID, describe(bobInfo))
		out.printf("  keys agree\n")
	}
	out.printf("\nAll %d exchanges agreed.\n", len(rounds))
	return nil
}

func (s *demoSide) close() {
	s.node.Close()
	s.store.Close()
}

// waitDone waits for the node's EventDone with peer p.
func waitDone(ctx context.Context, ch <-chan node.Event, p peer.ID) (*node.KeyInfo, error) {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return nil, errors.New("node closed")
			}
			if e.Peer != p {
				continue
			}
			switch e.Kind {
			case node.EventDone:
				return e.Info, nil
			case node.EventFailed:
				return nil, e.Err
			}
		case <-timeout:
			return nil, errors.New("no result within 30s")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// agree checks that both sides installed the same key at the same epoch.
func agree(alice, bob *demoSide, ai, bi *node.KeyInfo) error {
	ka, err := alice.store.ActiveSession(bob.node.ID())
	if err != nil {
		return fmt.Errorf("reading Alice's key: %w", err)
	}
	kb, err := bob.store.ActiveSession(alice.node.ID())
	if err != nil {
		return fmt.Errorf("reading Bob's key: %w", err)
	}
	defer clear(ka.Key[:])
	defer clear(kb.Key[:])
	if ka.Epoch != ai.Epoch || kb.Epoch != bi.Epoch || ai.Epoch != bi.Epoch {
		return fmt.Errorf("epochs differ: Alice %d, Bob %d", ai.Epoch, bi.Epoch)
	}
	if !ka.Key.Equal(&kb.Key) || ka.ID != kb.ID {
		return errors.New("the two sides hold different keys (Alice's and Bob's)")
	}
	return nil
}
