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
		Usage:     "exchange keys with a peer and store the new key",
		ArgsUsage: "PEER",
		Description: `PEER is the peer's full address, ending in /p2p/<peer ID>, as
"p2pkex daemon" and "p2pkex id" print it; or, through a running daemon,
just the peer ID of a peer it is connected to, discovered or knows the
address of ("p2pkex peers" lists them). The exchange is with that peer or
fails: another identity answering at its address is refused. Through the
repo's daemon if it runs, else with a node of its own on the repo (created
on first use), configured from the repo's config.json like the daemon
(the flags override it).

Every trust event of the exchange (a first key pinned, a key change or
store reset accepted or refused, a rollback, another identity at the
address, a suite downgrade) is printed on stderr as "p2pkex: WARNING: ..."
with the next step to take.

--json prints one object: peer, epoch, key_id, suite, post_quantum,
sent_own_key, received_peer_key, safety_number, and trust_events, a list
of {peer, event (first-use, key-changed, store-reset, rollback,
identity-changed, suite-downgrade), refused, trust_before, trust_after,
reason, presented, addr, suite, message, next}. A failed exchange prints
{peer, error, trust_events} and exits 1.

Examples:
  p2pkex exchange --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
  p2pkex exchange --repo /tmp/alice 12D3KooW...
  p2pkex exchange --repo /tmp/alice --json 12D3KooW...`,
		Flags: append(nodeFlags(), repoFlag(), jsonFlag(),
			&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "quiet", Usage: "print only the result line (epoch, key ID, peer)"},
		),
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("exchange: want one PEER (peer ID or MULTIADDR), got %d arguments", c.Args().Len())
			}
			pi, err := parsePeerArg(c.Args().First()) // api_more.go
			if err != nil {
				return err
			}
			if err := checkNodeFlags(c); err != nil { // bad flags fail before anything runs
				return err
			}
			if err := notSelf(c, pi.ID); err != nil { // repo.go
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
			defer cancel()
			out := &progress{w: c.Root().Writer}
			asJSON := c.Bool("json")
			quiet := c.Bool("quiet") || asJSON
			dir := c.String("repo")
			var res *exchangeJSON
			var events []trustEvent
			if api := dialAPI(dir); api != nil {
				// The repo's daemon runs the exchange.
				if err := ownNodeOnly(c, dir); err != nil {
					return err
				}
				res, events, err = api.exchange(ctx, c.Args().First(), func(line string) {
					if !quiet {
						out.printf("  %s\n", line)
					}
				})
				if err == nil {
					res.SafetyNumber = safetyNumberAPI(ctx, api, res.Peer) // api_trust.go
				}
			} else {
				res, events, err = exchangeOwnNode(ctx, c, dir, pi, out, quiet)
			}
			return reportExchange(c, pi.ID, res, withNext(c, events), err)
		},
	}
}

// exchangeOwnNode runs the exchange on a node of the command's own.
func exchangeOwnNode(ctx context.Context, c *cli.Command, dir string, pi *peer.AddrInfo, out *progress, quiet bool) (*exchangeJSON, []trustEvent, error) {
	n, closeNode, err := ownNode(ctx, c, dir, pi)
	if err != nil {
		return nil, nil, err
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
	info, events, err := connectAndExchange(ctx, n, pi)
	if err != nil {
		return nil, events, err
	}
	res := toJSON(info)
	res.SafetyNumber = n.SafetyNumber(info.Peer).Digits()
	return res, events, nil
}

// reportExchange prints an exchange's trust events on stderr, then its
// result (or, with --json, its result or error as JSON) on stdout.
func reportExchange(c *cli.Command, p peer.ID, res *exchangeJSON, events []trustEvent, err error) error {
	printTrust(c.Root().ErrWriter, events)
	w := c.Root().Writer
	if events == nil {
		events = []trustEvent{}
	}
	if c.Bool("json") {
		if err != nil {
			if ue := (usageError{}); errors.As(err, &ue) {
				return err
			}
			_ = printJSON(w, exchangeFailure{Peer: p.String(), Error: oneLine(err), TrustEvents: events})
			return err
		}
		return printJSON(w, exchangeOutput{res, events})
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "epoch %d, key ID %s with %s (%s)\n", res.Epoch, res.KeyID, res.Peer,
		describeFlags(res.SentOwnKey, res.ReceivedPeerKey))
	if c.Bool("quiet") {
		return nil // the result line only, as --quiet says
	}
	if res.Suite != "" {
		fmt.Fprintf(w, "suite %s\n", suiteLabel(res.Suite)) // progress.go
	}
	if res.SafetyNumber != "" {
		fmt.Fprintf(w, "safety number %s\n", res.SafetyNumber)
	}
	return nil
}

// exchangeOutput is --json's output of an exchange.
type exchangeOutput struct {
	*exchangeJSON
	TrustEvents []trustEvent `json:"trust_events"`
}

// exchangeFailure is --json's output of a failed exchange.
type exchangeFailure struct {
	Peer        string       `json:"peer"`
	Error       string       `json:"error"`
	TrustEvents []trustEvent `json:"trust_events"`
}

// connectAndExchange dials pi and runs one exchange with pi.ID (never with
// another identity: identity.go), with errors a user can act on, and
// returns the exchange's trust events, also when it failed.
func connectAndExchange(ctx context.Context, n *node.Node, pi *peer.AddrInfo) (*node.KeyInfo, []trustEvent, error) {
	if err := reach(ctx, n, pi); err != nil {
		return nil, trustEventsOf(nil, err), err // trustevents.go
	}
	info, err := n.Exchange(ctx, pi.ID)
	events := trustEventsOf(info, err)
	if err != nil {
		return nil, events, explainExchangeError(pi.ID, err)
	}
	return info, events, nil
}

func peerIDOf(r *repo) peer.ID {
	id, _ := peer.IDFromPrivateKey(r.identity)
	return id
}

// parsePeerAddr parses a full multiaddr ending in /p2p/<peer ID>.
func parsePeerAddr(s string) (*peer.AddrInfo, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, usagef("malformed multiaddr %q: %s", s, multiaddrProblem(s, err))
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

// dialReason is why a dial failed, in the operating system's or the
// address's words, without the swarm's wrappings ("failed to dial: failed
// to dial X: all dials failed ..."): the reason of the first address
// tried. An address that answers but not as libp2p (a web server, say)
// ends multistream's negotiation with a message about newlines or an EOF;
// that is said in a person's words.
func dialReason(err error) string {
	lines := strings.Split(err.Error(), "\n")
	reason := lastPart(lines[0])
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "* ") {
			reason = lastPart(l)
			break
		}
	}
	switch reason {
	case "message did not have trailing newline", "unexpected EOF", "EOF", "connection reset by peer",
		"message too large", "protocols not supported", "protocol not supported":
		return "the address answers, but not as a libp2p node"
	}
	return reason
}

func lastPart(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

func explainExchangeError(p peer.ID, err error) error {
	s := err.Error()
	var kc *node.KeyChangeError
	switch {
	case strings.Contains(s, "protocols not supported") || strings.Contains(s, "protocol not supported"):
		return fmt.Errorf("%s does not speak %s (not a p2pkex node?)", p, protocol.ID)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("exchange with %s timed out", p)
	case wrongIdentity(&peer.AddrInfo{ID: p}, err) != nil: // identity.go
		return wrongIdentity(&peer.AddrInfo{ID: p}, err)
	case errors.As(err, &kc) && kc.Rollback: // the warning line says more
		return fmt.Errorf("exchange with %s refused under every trust policy: its exchange-key record cannot follow the one held (%s)", p, kc.Reason)
	case errors.As(err, &kc) && kc.Change == node.KeyReset:
		return fmt.Errorf("exchange with %s refused by trust policy %q: its key store was reset", p, kc.Policy)
	case errors.As(err, &kc):
		return fmt.Errorf("exchange with %s refused by trust policy %q: its exchange key changed without a rotation", p, kc.Policy)
	case errors.Is(err, protocol.ErrDowngrade):
		return fmt.Errorf("exchange with %s refused: it chose a weaker suite than both sides support (suite downgrade)", p)
	case errors.Is(err, protocol.ErrRollback): // a key change no policy may accept (docs/SECURITY.md)
		return fmt.Errorf("exchange with %s refused under every trust policy: its exchange-key record cannot follow the one held (%s)", p, err)
	}
	return fmt.Errorf("exchange with %s failed: %s", p, shortDialError(err))
}

// ownNode starts, for a command whose repo has no daemon running, a node
// of its own on the repo (newRepoNode), to reach pi; pi must have an
// address (no daemon knows where it is) and must not be the repo's own
// peer ID. closeNode stops the node and closes the repo.
func ownNode(ctx context.Context, c *cli.Command, dir string, pi *peer.AddrInfo) (n *node.Node, closeNode func(), err error) {
	r, err := openRepo(dir, false)
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
	if n, err = newRepoNode(ctx, c, r); err != nil { // nodeconfig.go
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
