package main

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
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
			pi, err := server.ParsePeer(c.Args().First())
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
			quiet := c.Bool("quiet") || c.Bool("json")
			var res *api.ExchangeResult
			err = onBackend(ctx, c, pi, func(b backend) (err error) { // backend.go
				// The daemon's lines are indented as its own; a node of
				// the command's own prints them as the demo does.
				format := "  %-6s %s\n"
				if _, viaDaemon := b.(*client.Client); viaDaemon {
					format = "  %s%s\n"
				}
				res, err = b.Exchange(ctx, c.Args().First(), func(line string) {
					if !quiet {
						out.printf(format, "", line)
					}
				})
				return err
			})
			err = timedOut(err, "exchange with %s timed out", pi.ID) // backend.go
			events := apiTrustEvents(err)
			if res != nil {
				events = res.TrustEvents
			}
			return reportExchange(c, pi.ID, res, withNext(c, events), err)
		},
	}
}

// reportExchange prints an exchange's trust events on stderr, then its
// result (or, with --json, its result or error as JSON) on stdout.
func reportExchange(c *cli.Command, p peer.ID, res *api.ExchangeResult, events []api.TrustEvent, err error) error {
	printTrust(c.Root().ErrWriter, events)
	w := c.Root().Writer
	if events == nil {
		events = []api.TrustEvent{}
	}
	if c.Bool("json") {
		if err != nil {
			if isUsage(err) { // backend.go
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
	*api.ExchangeResult
	TrustEvents []api.TrustEvent `json:"trust_events"`
}

// exchangeFailure is --json's output of a failed exchange.
type exchangeFailure struct {
	Peer        string           `json:"peer"`
	Error       string           `json:"error"`
	TrustEvents []api.TrustEvent `json:"trust_events"`
}

func peerIDOf(r *repo) peer.ID {
	id, _ := peer.IDFromPrivateKey(r.identity)
	return id
}
