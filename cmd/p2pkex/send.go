package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/node"
)

// Messaging from the command line: "p2pkex send" (POST /v0/send through
// the daemon), and the daemon printing the messages it refuses.

// sendJSON is send --json's output: stable field names (README).
type sendJSON struct {
	Peer        string           `json:"peer"`
	Delivered   bool             `json:"delivered"` // always true: a failure exits 1 with a line on stderr
	Size        int              `json:"size"`      // the message's bytes
	TrustEvents []api.TrustEvent `json:"trust_events"`
}

func printSent(c *cli.Command, peerID string, size int, events []api.TrustEvent) error {
	w := c.Root().Writer
	if c.Bool("json") {
		if events == nil {
			events = []api.TrustEvent{}
		}
		return printJSON(w, sendJSON{Peer: peerID, Delivered: true, Size: size, TrustEvents: events})
	}
	fmt.Fprintf(w, "delivered to %s\n", peerID)
	return nil
}

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "send an encrypted message to a peer you exchanged keys with",
		ArgsUsage: "PEER MESSAGE|-",
		Description: `PEER is the peer's full address, ending in /p2p/<peer ID>; or, through
a running daemon, just the peer ID of a peer it can reach ("p2pkex peers"
lists them). MESSAGE "-" reads the message from standard input (exactly
its bytes, up to 64 KiB); an empty message (or one of white space only) is
refused. It is sealed under the session key of the last exchange with the
peer ("p2pkex exchange" first); "delivered" means the peer's daemon has
it in its inbox, on disk ("p2pkex inbox" there shows it). Through the
repo's daemon if it runs, else with a node of its own on the repo.

Examples:
  p2pkex send --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... 'hello bob'
  p2pkex send --repo /tmp/alice 12D3KooW... 'hello again'
  date | p2pkex send --repo /tmp/alice 12D3KooW... -
  p2pkex send --repo /tmp/alice --json 12D3KooW... 'hello'

With --json: {"peer", "delivered": true, "size", "trust_events": [...]}.`,
		Flags: append(nodeFlags(), repoFlag(), jsonFlag(),
			&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "give up after this long"},
		),
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 2 {
				return usagef("send: want PEER and MESSAGE, got %d arguments", c.Args().Len())
			}
			addr, msg := c.Args().Get(0), c.Args().Get(1)
			pi, err := server.ParsePeer(addr)
			if err != nil {
				return err
			}
			if msg == "-" {
				if msg, err = readMessage(c.Root().Reader); err != nil {
					return err
				}
			}
			if len(msg) > node.DefaultMaxMessageSize {
				return usagef("send: message of %d bytes, limit %d", len(msg), node.DefaultMaxMessageSize)
			}
			if strings.TrimSpace(msg) == "" {
				return errors.New("send: empty message: nothing sent")
			}
			if err := checkNodeFlags(c); err != nil { // bad flags fail before anything runs
				return err
			}
			if err := notSelf(c, pi.ID); err != nil { // repo.go
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
			defer cancel()
			var rep *api.SendReply
			err = onBackend(ctx, c, pi, func(b backend) (err error) { // backend.go
				rep, err = b.Send(ctx, addr, msg)
				return err
			})
			err = timedOut(err, "send to %s timed out", pi.ID) // backend.go
			if err != nil {
				printTrust(c.Root().ErrWriter, withNext(c, apiTrustEvents(err))) // trustevents.go
				return err
			}
			events := withNext(c, rep.TrustEvents)
			printTrust(c.Root().ErrWriter, events)
			return printSent(c, rep.Peer, len(msg), events)
		},
	}
}

// readMessage reads "send PEER -"'s message from r, at most one byte more
// than a message may have (so that the size check sees it is too long).
func readMessage(r io.Reader) (string, error) {
	if r == nil {
		r = os.Stdin
	}
	b, err := io.ReadAll(io.LimitReader(r, node.DefaultMaxMessageSize+1))
	if err != nil {
		return "", fmt.Errorf("send: reading the message from standard input: %v", err)
	}
	return string(b), nil
}

// printRefusedMessages prints the messages n refuses (never their text:
// the messages it takes are kept in the inbox, inbox.go, which prints their
// metadata), until the returned function is called.
func printRefusedMessages(n *node.Node, out *progress) (stop func()) {
	return onEvents(n, func(e node.Event) { // chat.go
		if e.Kind == node.EventMessageRefused {
			out.printf("message from %s refused: %s\n", e.Peer, oneLine(e.Err))
		}
	})
}
