package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
)

// Messaging from the command line: "p2pkex send", the daemon's
// POST /v0/send {"addr": MULTIADDR, "message": TEXT} -> sendReply, and the
// daemon printing the messages it receives.

type sendRequest struct {
	Addr    string `json:"addr"`
	Message string `json:"message"`
}

type sendReply struct {
	Peer        string       `json:"peer"`
	TrustEvents []trustEvent `json:"trust_events,omitempty"` // trustevents.go
}

// sendJSON is send --json's output: stable field names (README).
type sendJSON struct {
	Peer        string       `json:"peer"`
	Delivered   bool         `json:"delivered"` // always true: a failure exits 1 with a line on stderr
	Size        int          `json:"size"`      // the message's bytes
	TrustEvents []trustEvent `json:"trust_events"`
}

func printSent(c *cli.Command, peerID string, size int, events []trustEvent) error {
	w := c.Root().Writer
	if c.Bool("json") {
		if events == nil {
			events = []trustEvent{}
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
			pi, err := parsePeerArg(addr) // api_more.go
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
			dir := c.String("repo")
			if api := dialAPI(dir); api != nil {
				if err := ownNodeOnly(c, dir); err != nil { // exchange.go
					return err
				}
				var rep sendReply
				resp, err := api.do(ctx, http.MethodPost, "/v0/send", sendRequest{Addr: addr, Message: msg})
				if err != nil {
					printTrust(c.Root().ErrWriter, withNext(c, apiTrustEvents(err))) // trustevents.go
					return err
				}
				defer resp.Body.Close()
				if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
					return fmt.Errorf("daemon reply: %w", err)
				}
				events := withNext(c, rep.TrustEvents)
				printTrust(c.Root().ErrWriter, events)
				return printSent(c, rep.Peer, len(msg), events)
			}
			n, closeNode, err := ownNode(ctx, c, dir, pi) // exchange.go
			if err != nil {
				return err
			}
			defer closeNode()
			events, err := connectAndSend(ctx, n, pi, []byte(msg))
			events = withNext(c, events)
			printTrust(c.Root().ErrWriter, events)
			if err != nil {
				return err
			}
			return printSent(c, pi.ID.String(), len(msg), events)
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

// connectAndSend dials pi and sends one message to pi.ID (never to another
// identity: identity.go), with errors a user can act on, and returns the
// trust events on the way.
func connectAndSend(ctx context.Context, n *node.Node, pi *peer.AddrInfo, msg []byte) ([]trustEvent, error) {
	k, err := n.ActiveKey(pi.ID)
	if err != nil {
		return nil, fmt.Errorf("no session key with %s: run \"p2pkex exchange\" first", pi.ID)
	}
	clear(k.Key[:])
	if err := reach(ctx, n, pi); err != nil {
		return trustEventsOf(nil, err), err // trustevents.go
	}
	err = n.Send(ctx, pi.ID, msg)
	events := trustEventsOf(nil, err)
	switch {
	case err == nil:
		return events, nil
	case wrongIdentity(pi, err) != nil:
		return events, wrongIdentity(pi, err)
	case errors.Is(err, node.ErrNoKey):
		return events, fmt.Errorf("no session key with %s: run \"p2pkex exchange\" first", pi.ID)
	case errors.Is(err, node.ErrNotDelivered):
		return events, fmt.Errorf("%s received the message but nothing there reads messages", pi.ID)
	case errors.Is(err, context.DeadlineExceeded):
		return events, fmt.Errorf("send to %s timed out", pi.ID)
	}
	return events, fmt.Errorf("send to %s failed: %s", pi.ID, shortDialError(err))
}

// handleSendAPI serves POST /v0/send on the daemon's control API.
func handleSendAPI(mux *http.ServeMux, n *node.Node) {
	mux.HandleFunc("POST /v0/send", func(w http.ResponseWriter, r *http.Request) {
		var req sendRequest
		// JSON escaping can grow a message up to six times.
		if !decodeRequest(w, r, 6*node.DefaultMaxMessageSize+4096, &req) {
			return
		}
		pi, err := resolvePeer(n, req.Addr) // a full multiaddr or a peer ID (api_more.go)
		if err == nil && pi.ID == n.ID() {
			err = fmt.Errorf("%s is this node's own peer ID", pi.ID)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		events, err := connectAndSend(r.Context(), n, pi, []byte(req.Message))
		if err != nil {
			writeAPIError(w, http.StatusBadGateway, err, events)
			return
		}
		writeJSON(w, sendReply{Peer: pi.ID.String(), TrustEvents: events})
	})
}

// printRefusedMessages prints the messages n refuses (never their text:
// the messages it takes are kept in the inbox, inbox.go, which prints their
// metadata), until the returned function is called.
func printRefusedMessages(n *node.Node, out *progress) (stop func()) {
	events, stopEvents := n.Subscribe(0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range events {
			if e.Kind == node.EventMessageRefused {
				out.printf("message from %s refused: %s\n", e.Peer, oneLine(e.Err))
			}
		}
	}()
	return func() {
		stopEvents()
		wg.Wait()
	}
}
