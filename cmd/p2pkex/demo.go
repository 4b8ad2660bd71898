package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	done  <-chan demoResult
}

// demoResult is one side's record of an exchange: its lines by phase, and
// the event that ended it.
type demoResult struct {
	ev    node.Event
	role  string
	lines [4][]string // phase 1, phase 2, phase 3, done
	skip2 bool        // phase 2 skipped: both public keys current
}

// demoRecord collects a side's events by exchange, so that the demo can
// print Alice's and Bob's lines side by side, phase by phase, instead of
// in the order the two goroutines happened to log them.
func demoRecord(ch <-chan node.Event, results chan<- demoResult, notices bool, wg *sync.WaitGroup) {
	defer wg.Done()
	var r demoResult
	phase := 0
	for e := range ch {
		switch e.Kind {
		case node.EventDone, node.EventFailed:
			r.ev = e
			results <- r
			r, phase = demoResult{}, 0
			continue
		case node.EventStep:
		default:
			continue
		}
		st := e.Step
		switch st.Kind {
		case protocol.EventPhaseEntered:
			switch st.Phase {
			case protocol.Phase1:
				phase = 0
				r.role = st.Role.String()
			case protocol.Phase2:
				phase = 1
				var parts []string
				if st.SendOwn {
					parts = append(parts, "sends its own")
				}
				if st.ReceivePeer {
					parts = append(parts, "receives the peer's")
				}
				if len(parts) == 0 {
					r.skip2 = true
				} else {
					r.lines[1] = append(r.lines[1], strings.Join(parts, ", "))
				}
			case protocol.Phase3:
				phase = 2
			case protocol.PhaseDone:
				phase = 3
				r.lines[3] = append(r.lines[3], "peer's confirmation verified")
			}
		case protocol.EventNoticeSent:
			if notices {
				r.lines[phase] = append(r.lines[phase], fmt.Sprintf("-> %-13v %4d B", st.Notice, st.Size))
			}
		case protocol.EventNoticeReceived:
			if notices {
				r.lines[phase] = append(r.lines[phase], fmt.Sprintf("<- %-13v %4d B", st.Notice, st.Size))
			}
		}
	}
}

// demoIntro explains, once, the words the demo's lines use.
const demoIntro = `Alice and Bob each run a p2pkex node in this process, on loopback, with
temporary repos, and agree three times on a fresh symmetric key, with no
server in between. The words below:
  exchange key  each side's public key for the exchange (HPKE), signed by its
                libp2p identity; a short fingerprint of it tells the other
                side whether the copy it holds is current
  key part      each side's random half of the new key, sealed to the other's
                exchange key and signed; the key is derived from both halves
  notice        one message of the exchange (-> sent, <- received); one too
                big for the notice size travels in several
  epoch         the number of the key with that peer: each exchange installs
                the next one; the key ID names it without revealing it
`

var demoPhases = [4]struct{ title, why string }{
	{"phase 1, start", "nonces, commitments to the key parts, fingerprints compared"},
	{"phase 2, exchange keys", "only missing or stale ones travel; receipt confirmed"},
	{"phase 3, key parts", "halves sent sealed and signed; both derive the key"},
	{"done", "each checked the other's MAC over the key: installed"},
}

func runDemo(ctx context.Context, c *cli.Command, suite protocol.Suite, noticeSize int) error {
	w := c.Root().Writer
	quiet := c.Bool("quiet")
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
		results := make(chan demoResult, 16)
		followers.Add(1)
		go demoRecord(events, results, !quiet, &followers)
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

	fmt.Fprintf(w, "p2pkex demo: suite %v, notice size %d bytes\n", suite, noticeSize)
	if !quiet {
		fmt.Fprintf(w, "\n%s\n", demoIntro)
	}
	for _, s := range []*demoSide{alice, bob} {
		fmt.Fprintf(w, "  %-6s peer ID %s  exchange key %.16s\n", s.name, s.node.ID(), s.node.Fingerprint())
	}

	rounds := []struct {
		title, why         string
		before             func() error
		wantAlice, wantBob bool // whose public key phase 2 must carry
	}{
		{"first contact", "neither holds the other's exchange key, so both travel", nil, true, true},
		{"again", "both exchange keys are known and current, so none travels", nil, false, false},
		{"after Bob rotates his exchange key", "(rotating limits what a stolen exchange key reveals)\n      Alice's copy of Bob's is stale, so only his travels", bob.node.RotateExchangeKey, false, true},
	}
	for i, r := range rounds {
		if r.before != nil {
			if err := r.before(); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "\n[%d/%d] %s\n", i+1, len(rounds), r.title)
		if !quiet {
			fmt.Fprintf(w, "      %s\n", r.why)
		}
		if r.before != nil {
			fmt.Fprintf(w, "      Bob's new exchange key: %.16s\n", bob.node.Fingerprint())
		}
		if _, err := alice.node.Exchange(ctx, bob.node.ID()); err != nil {
			return fmt.Errorf("exchange %d: %w", i+1, err)
		}
		ar, err := waitDone(ctx, alice.done, bob.node.ID())
		if err != nil {
			return fmt.Errorf("exchange %d: Alice: %w", i+1, err)
		}
		br, err := waitDone(ctx, bob.done, alice.node.ID())
		if err != nil {
			return fmt.Errorf("exchange %d: Bob: %w", i+1, err)
		}
		printDemoExchange(w, ar, br, quiet)
		info, bobInfo := ar.ev.Info, br.ev.Info
		if err := agree(alice, bob, info, bobInfo); err != nil {
			return fmt.Errorf("exchange %d: %w", i+1, err)
		}
		if info.InitiatorKeySent != r.wantAlice || info.ResponderKeySent != r.wantBob {
			return fmt.Errorf("exchange %d: phase 2 sent Alice's key: %v, Bob's key: %v; want %v, %v",
				i+1, info.InitiatorKeySent, info.ResponderKeySent, r.wantAlice, r.wantBob)
		}
		fmt.Fprintf(w, "  result  Alice: epoch %d, key ID %s (%s)\n", info.Epoch, info.KeyID, describe(info))
		fmt.Fprintf(w, "          Bob:   epoch %d, key ID %s (%s)\n", bobInfo.Epoch, bobInfo.KeyID, describe(bobInfo))
		fmt.Fprintf(w, "          keys agree\n")
	}
	fmt.Fprintf(w, "\nAll %d exchanges agreed.\n", len(rounds))
	sn := alice.node.SafetyNumber(bob.node.ID())
	fmt.Fprintf(w, "Safety number of Alice and Bob: %s\n", sn.Digits())
	if !quiet {
		fmt.Fprintf(w, `  (both compute it from their two peer IDs; read aloud and compared, it
  shows each talks to the right identity: "p2pkex verify" does that)

Now try two daemons, one per repo (each in a terminal of its own):
  p2pkex init --repo /tmp/alice && p2pkex init --repo /tmp/bob
  p2pkex daemon --repo /tmp/bob --listen /ip4/127.0.0.1/tcp/4001
  p2pkex daemon --repo /tmp/alice --listen /ip4/127.0.0.1/tcp/4002
  p2pkex exchange --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/<Bob's peer ID>
  p2pkex send --repo /tmp/alice <Bob's peer ID> hello
  p2pkex inbox --repo /tmp/bob
  p2pkex verify --repo /tmp/alice <Bob's peer ID>
(Bob's daemon prints his peer ID; "p2pkex id --repo /tmp/bob" does too.)
`)
	}
	return nil
}

// printDemoExchange prints one exchange phase by phase, Alice's lines on
// the left and Bob's on the right.
func printDemoExchange(w io.Writer, a, b demoResult, quiet bool) {
	const col = 36
	row := func(l, r string) { fmt.Fprintf(w, "      %-*s %s\n", col, l, r) }
	row("Alice ("+a.role+")", "Bob ("+b.role+")")
	for i, ph := range demoPhases {
		title, why := ph.title, ph.why
		if i == 1 && a.skip2 && b.skip2 {
			title, why = "phase 2: skipped", "both hold each other's current exchange key"
		}
		if quiet {
			fmt.Fprintf(w, "  %s\n", title)
		} else {
			fmt.Fprintf(w, "  %s: %s\n", title, why)
		}
		for j := 0; j < max(len(a.lines[i]), len(b.lines[i])); j++ {
			var l, r string
			if j < len(a.lines[i]) {
				l = a.lines[i][j]
			}
			if j < len(b.lines[i]) {
				r = b.lines[i][j]
			}
			row(l, r)
		}
	}
}

func (s *demoSide) close() {
	s.node.Close()
	s.store.Close()
}

// waitDone waits for a side's record of its exchange with peer p.
func waitDone(ctx context.Context, ch <-chan demoResult, p peer.ID) (demoResult, error) {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				return r, errors.New("node closed")
			}
			if r.ev.Peer != p {
				continue
			}
			switch r.ev.Kind {
			case node.EventDone:
				return r, nil
			case node.EventFailed:
				return r, r.ev.Err
			}
		case <-timeout:
			return demoResult{}, errors.New("no result within 30s")
		case <-ctx.Done():
			return demoResult{}, ctx.Err()
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
