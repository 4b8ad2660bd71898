package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

func exchangeCommand() *cli.Command {
	return &cli.Command{
		Name:      "exchange",
		Usage:     "exchange keys with a running daemon and store the new key",
		ArgsUsage: "PEER",
		Description: `PEER is the peer's full address, ending in /p2p/<peer ID>, as
"p2pkex daemon" and "p2pkex id" print it; or, through a running daemon,
just the peer ID of a peer it is connected to, discovered or knows the
address of ("p2pkex peers" lists them). The repo is created on first use.

Examples:
  p2pkex exchange --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
  p2pkex exchange --repo /tmp/alice 12D3KooW...`,
		Flags: append(nodeFlags(), repoFlag(),
			&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "quiet", Usage: "print only the result"},
		),
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("exchange: want one PEER (peer ID or MULTIADDR), got %d arguments", c.Args().Len())
			}
			pi, err := parsePeerArg(c.Args().First()) // api_more.go
			if err != nil {
				return err
			}
			if _, err := nodeOptions(c); err != nil { // bad flags fail before anything runs
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
			defer cancel()
			out := &progress{w: c.Root().Writer}
			quiet := c.Bool("quiet")
			dir := c.String("repo")
			if api := dialAPI(dir); api != nil {
				// The repo's daemon runs the exchange.
				if err := ownNodeOnly(c, dir); err != nil {
					return err
				}
				res, err := api.exchange(ctx, c.Args().First(), func(line string) {
					if !quiet {
						out.printf("  %s\n", line)
					}
				})
				if err != nil {
					return err
				}
				out.printf("epoch %d, key ID %s with %s (%s)\n", res.Epoch, res.KeyID, res.Peer,
					describeFlags(res.SentOwnKey, res.ReceivedPeerKey))
				if l := safetyLineAPI(ctx, api, res.Peer); l != "" { // api_trust.go
					out.printf("%s\n", l)
				}
				return nil
			}
			n, closeNode, err := ownNode(ctx, c, dir, true, pi)
			if err != nil {
				return err
			}
			defer closeNode()
			var wg sync.WaitGroup
			if !quiet {
				events, stop := n.Subscribe(0)
				defer wg.Wait()
				defer stop()
				wg.Add(1)
				go out.follow("", events, nil, &wg)
			}
			info, err := connectAndExchange(ctx, n, pi, func(w string, _ peer.ID) { out.printf("%s\n", w) })
			if err != nil {
				return err
			}
			out.printf("epoch %d, key ID %s with %s (%s)\n", info.Epoch, info.KeyID, info.Peer, describe(info))
			out.printf("%s\n", safetyLine(n.ID(), info.Peer)) // api_trust.go
			return nil
		},
	}
}

// connectAndExchange dials pi and runs one exchange, with errors a user
// can act on. warn gets the warning of an identity change the trust policy
// allowed (identity.go): the exchange then runs with the new identity.
func connectAndExchange(ctx context.Context, n *node.Node, pi *peer.AddrInfo, warn func(string, peer.ID)) (*node.KeyInfo, error) {
	p, err := reach(ctx, n, pi, warn)
	if err != nil {
		return nil, err
	}
	info, err := n.Exchange(ctx, p)
	if err != nil {
		return nil, explainExchangeError(p, err)
	}
	return info, nil
}

func peerIDOf(r *repo) peer.ID {
	id, _ := peer.IDFromPrivateKey(r.identity)
	return id
}

// parsePeerAddr parses a full multiaddr ending in /p2p/<peer ID>.
func parsePeerAddr(s string) (*peer.AddrInfo, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, usagef("malformed multiaddr %q: %v", s, err)
	}
	pi, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return nil, usagef("multiaddr %q must end in /p2p/<peer ID>", s)
	}
	return pi, nil
}

// shortDialError keeps libp2p's dial error to one line: its summary and
// the first address's reason.
func shortDialError(err error) string {
	lines := strings.Split(err.Error(), "\n")
	s := lines[0]
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "* ") {
			if i := strings.LastIndex(l, ": "); i >= 0 {
				l = l[i+2:]
			}
			return s + " (" + l + ")"
		}
	}
	return s
}

func explainExchangeError(p peer.ID, err error) error {
	s := err.Error()
	var ice *node.IdentityChangeError
	switch {
	case strings.Contains(s, "protocols not supported") || strings.Contains(s, "protocol not supported"):
		return fmt.Errorf("%s does not speak %s (not a p2pkex node?)", p, protocol.ID)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("exchange with %s timed out", p)
	case errors.As(err, &ice) && ice.Refused:
		return identityRefused(ice)
	case errors.Is(err, protocol.ErrRollback): // a key change no policy may accept (docs/SECURITY.md)
		return fmt.Errorf("KEY CHANGED: %s presented an exchange key its held record rules out (%s); refused: ask the peer, compare safety numbers (\"p2pkex verify %s\")", p, err, p)
	}
	return fmt.Errorf("exchange with %s failed: %s", p, shortDialError(err))
}

// nodeFlags are the protocol options every node-running command takes.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "suite", Usage: "offer only these suites (MLKEM768X25519, X25519), most preferred first"},
		&cli.IntFlag{Name: "notice-size", Value: protocol.DefaultNoticeSize, Usage: "largest notice in bytes (128 to 65536)"},
		&cli.StringFlag{Name: "trust-policy", Value: "tofu", Usage: "on a peer key change no rotation accounts for: tofu (refuse it for verified peers), strict (always refuse), accept"},
	}
}

// ownNode starts, for a command whose repo has no daemon running, a node
// of its own on the repo (created if create; newOfflineNode), to reach pi; pi must have an address (no daemon knows where it is) and must
// not be the repo's own peer ID. closeNode stops the node and closes the
// repo.
func ownNode(ctx context.Context, c *cli.Command, dir string, create bool, pi *peer.AddrInfo) (n *node.Node, closeNode func(), err error) {
	r, err := openRepo(dir, create)
	if err != nil {
		return nil, nil, err
	}
	if pi.ID == peerIDOf(r) {
		r.Close()
		return nil, nil, usagef("%s: %s is this repo's own peer ID", c.Name, pi.ID)
	}
	if len(pi.Addrs) == 0 {
		r.Close()
		return nil, nil, fmt.Errorf("no daemon running on %s to know where %s is: give its full multiaddr, or start one with \"p2pkex daemon --repo %s\"", dir, pi.ID, dir)
	}
	if n, err = newOfflineNode(ctx, c, r); err != nil { // offline.go
		r.Close()
		return nil, nil, err
	}
	return n, func() { n.Close(); r.Close() }, nil
}

// ownNodeOnly refuses the node flags when the repo's daemon will do the
// work: it runs with its own settings, and a flag it would ignore must not
// pass silently.
func ownNodeOnly(c *cli.Command, dir string) error {
	for _, f := range nodeFlags() {
		if name := f.Names()[0]; c.IsSet(name) {
			return usagef("--%s applies to a node of the command's own, but the daemon running on %s does this with its own settings (config.json, or its flags): give them to the daemon", name, dir)
		}
	}
	return nil
}

func nodeOptions(c *cli.Command) ([]node.Option, error) {
	var opts []node.Option
	if names := c.StringSlice("suite"); len(names) > 0 {
		var suites []protocol.Suite
		for _, n := range names {
			s, err := protocol.ParseSuite(n)
			if err != nil {
				return nil, usageError{err.Error()}
			}
			suites = append(suites, s)
		}
		opts = append(opts, node.WithSuites(suites...))
	}
	if name := c.String("trust-policy"); name != "" {
		policy, err := node.ParseTrustPolicy(name) // node/trust.go
		if err != nil {
			return nil, usageError{err.Error()}
		}
		opts = append(opts, node.WithTrustPolicy(policy))
	}
	if !c.IsSet("notice-size") && c.Int("notice-size") == 0 {
		return opts, nil // a command without the flag (rotate): the default
	}
	size := int(c.Int("notice-size"))
	if size < protocol.MinNoticeSize || size > protocol.MaxNoticeSize {
		return nil, usagef("--notice-size %d outside [%d, %d]", size, protocol.MinNoticeSize, protocol.MaxNoticeSize)
	}
	return append(opts, node.WithNoticeSize(size)), nil
}
