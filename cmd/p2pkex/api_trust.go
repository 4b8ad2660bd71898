package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// Chat on the command line: "p2pkex chat", the daemon's endpoints for it
// and for verify (verify.go), and the daemon's key-change warnings.
//
//	GET  /v0/messages?peer=ID         -> NDJSON stream of chatLine, until the client leaves

type chatLine struct {
	From  string `json:"from"`
	Epoch uint64 `json:"epoch"`
	Text  string `json:"text"`
}

// parsePeerIDArg takes a peer ID or a multiaddr ending in /p2p/<peer ID>.
func parsePeerIDArg(s string) (peer.ID, error) {
	if strings.HasPrefix(s, "/") {
		pi, err := parsePeerAddr(s)
		if err != nil {
			return "", err
		}
		return pi.ID, nil
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", usagef("%q is neither a peer ID nor a multiaddr ending in /p2p/<peer ID>", s)
	}
	return id, nil
}

// handleTrustAPI serves the verify and chat endpoints on the control API.
func handleTrustAPI(mux *http.ServeMux, n *node.Node) {
	handleVerifyAPI(mux, n) // verify.go
	handleForgetAPI(mux, n) // forget.go
	mux.HandleFunc("GET /v0/messages", func(w http.ResponseWriter, r *http.Request) {
		var from peer.ID
		if s := r.URL.Query().Get("peer"); s != "" {
			p, err := parsePeerIDArg(s)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			from = p
		}
		msgs, stop := n.Messages(0)
		defer stop()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		f, _ := w.(http.Flusher)
		if f != nil {
			f.Flush()
		}
		enc := json.NewEncoder(w)
		for {
			select {
			case <-r.Context().Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				if from != "" && m.From != from {
					continue
				}
				if enc.Encode(chatLine{From: m.From.String(), Epoch: m.Epoch, Text: string(m.Data)}) != nil {
					return
				}
				if f != nil {
					f.Flush()
				}
			}
		}
	})
}

// printTrustWarnings prints the node's key-change reports prominently,
// until the returned function is called.
func printTrustWarnings(n *node.Node, out *progress) (stop func()) {
	events, stopEvents := n.Subscribe(0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range events {
			if e.Kind == node.EventTrustChanged && e.Trust != nil {
				out.printf("%s\n", trustWarning(e.Trust))
			}
		}
	}()
	return func() {
		stopEvents()
		wg.Wait()
	}
}

func trustWarning(tc *node.TrustChange) string {
	return "WARNING: " + trustEventOf(*tc).Message // trustevents.go
}

// safetyNumberAPI is the safety number of the daemon's node and a peer it
// exchanged with, or "" if the daemon does not say who it is.
func safetyNumberAPI(ctx context.Context, api *apiClient, peerID string) string {
	var id idReply
	if err := api.getJSON(ctx, http.MethodGet, "/v0/id", &id); err != nil {
		return ""
	}
	self, err1 := peer.Decode(id.PeerID)
	p, err2 := peer.Decode(peerID)
	if err1 != nil || err2 != nil {
		return ""
	}
	return protocol.NewSafetyNumber(self, p).Digits()
}

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:      "chat",
		Usage:     "chat with a peer in the terminal (through the daemon)",
		ArgsUsage: "PEER",
		Description: `PEER is a multiaddr ending in /p2p/<peer ID> (or /p2p/<peer ID> alone
for a peer the daemon knows the address of). Each line read from standard
input is sent as one message, sealed under the session key of the last
exchange ("p2pkex exchange" first); messages from the peer are printed as
they arrive. End with Ctrl-D (end of input) or Ctrl-C. Needs the repo's
running daemon.

Example:
  p2pkex chat --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...`,
		Flags: []cli.Flag{repoFlag(),
			&cli.DurationFlag{Name: "linger", Usage: "after the end of input, keep printing received messages this long"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("chat: want one PEER (MULTIADDR ending in /p2p/<peer ID>), got %d arguments", c.Args().Len())
			}
			addr := c.Args().First()
			if !strings.HasPrefix(addr, "/") {
				addr = "/p2p/" + addr
			}
			pi, err := parsePeerAddr(addr)
			if err != nil {
				return err
			}
			dir := c.String("repo")
			api := dialAPI(dir)
			if api == nil {
				return fmt.Errorf("chat needs a running daemon: start one with \"p2pkex daemon --repo %s\"", dir)
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			resp, err := api.do(ctx, http.MethodGet, "/v0/messages?peer="+url.QueryEscape(pi.ID.String()), nil)
			if err != nil {
				return err
			}
			out := &progress{w: c.Root().Writer}
			short := pi.ID.String()
			if len(short) > 12 {
				short = "…" + short[len(short)-6:]
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				sc.Buffer(nil, 8*node.DefaultMaxMessageSize)
				for sc.Scan() {
					var l chatLine
					if json.Unmarshal(sc.Bytes(), &l) == nil {
						// Quoted: a peer's bytes never reach the terminal raw.
						out.printf("%s> %s\n", short, strings.Trim(fmt.Sprintf("%q", l.Text), `"`))
					}
				}
			}()
			out.printf("chat with %s; end with Ctrl-D\n", pi.ID)
			in := bufio.NewScanner(c.Root().Reader)
			for in.Scan() {
				line := in.Text()
				if strings.TrimSpace(line) == "" {
					continue
				}
				sctx, scancel := context.WithTimeout(ctx, time.Minute)
				r, err := api.do(sctx, http.MethodPost, "/v0/send", sendRequest{Addr: addr, Message: line})
				scancel()
				if err != nil {
					out.printf("! not sent: %s\n", oneLine(err))
					continue
				}
				r.Body.Close()
			}
			if d := c.Duration("linger"); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
			cancel()
			wg.Wait()
			return nil
		},
	}
}
