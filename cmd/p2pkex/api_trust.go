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
//	POST /v0/chat {"addr": PEER}      -> chatReady: is there a session key and an address

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
	handleChatAPI(mux, n)
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

// chatReady is the daemon's answer to POST /v0/chat {"addr": PEER}:
// whether it can send to PEER at all, so that chat refuses to start
// instead of failing on every line.
type chatReady struct {
	Peer string `json:"peer"`
	Key  bool   `json:"session_key"` // a session key with the peer
	Addr bool   `json:"address"`     // an address for it (given, connected, or known)
}

// handleChatAPI serves POST /v0/chat.
func handleChatAPI(mux *http.ServeMux, n *node.Node) {
	mux.HandleFunc("POST /v0/chat", func(w http.ResponseWriter, r *http.Request) {
		var req sendRequest
		if !decodeRequest(w, r, 4096, &req) {
			return
		}
		pi, err := parsePeerArg(req.Addr)
		if err == nil && pi.ID == n.ID() {
			err = fmt.Errorf("%s is this node's own peer ID", pi.ID)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, addrErr := resolvePeer(n, req.Addr) // api_more.go
		rep := chatReady{Peer: pi.ID.String(), Addr: addrErr == nil}
		if k, err := n.ActiveKey(pi.ID); err == nil {
			clear(k.Key[:])
			rep.Key = true
		}
		writeJSON(w, rep)
	})
}

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:      "chat",
		Usage:     "chat with a peer in the terminal (through the daemon)",
		ArgsUsage: "PEER",
		Description: `PEER is the peer's peer ID, if the daemon knows an address for it
(connected, discovered, or from "p2pkex connect"), or its full multiaddr
ending in /p2p/<peer ID>. Chat needs the repo's running daemon and a
session key with the peer ("p2pkex exchange" first), and refuses to start
without them, saying how to get them.

Each line read from standard input is sent as one message, sealed under
the session key of the last exchange; messages from the peer are printed
as they arrive (they are also kept in the inbox, "p2pkex inbox"). Ctrl-D
(end of input) ends it; Ctrl-C too, at once, with exit status 130.

Examples:
  p2pkex chat --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
  p2pkex chat --repo /tmp/alice 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(),
			&cli.DurationFlag{Name: "linger", Usage: "after the end of input, keep printing received messages this long"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("chat: want one PEER (peer ID or MULTIADDR ending in /p2p/<peer ID>), got %d arguments", c.Args().Len())
			}
			addr := c.Args().First()
			pi, err := parsePeerArg(addr) // api_more.go
			if err != nil {
				return err
			}
			dir := c.String("repo")
			if err := requireRepo(dir); err != nil { // repo.go
				return err
			}
			if err := notSelf(c, pi.ID); err != nil {
				return err
			}
			api := dialAPI(dir)
			if api == nil {
				return fmt.Errorf("chat needs a running daemon: start one with \"p2pkex daemon%s\"", repoArg(c))
			}
			if err := chatCheck(ctx, c, api, addr, pi.ID); err != nil {
				return err
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
			// Standard input is read by a goroutine of its own: a read
			// blocked on a terminal cannot be cancelled, and Ctrl-C must
			// end the chat at once. The goroutine ends with the process.
			lines := make(chan string)
			go func() {
				defer close(lines)
				in := bufio.NewScanner(c.Root().Reader)
				in.Buffer(nil, node.DefaultMaxMessageSize+1)
				for in.Scan() {
					select {
					case lines <- in.Text():
					case <-ctx.Done():
						return
					}
				}
			}()
			out.printf("chat with %s; end with Ctrl-D\n", pi.ID)
			interrupted := func() error {
				cancel()
				wg.Wait()
				return context.Cause(ctx) // context.Canceled: exit 130 (app.go)
			}
		read:
			for {
				select {
				case <-ctx.Done():
					return interrupted()
				case line, ok := <-lines:
					if !ok {
						break read
					}
					if strings.TrimSpace(line) == "" {
						continue
					}
					sctx, scancel := context.WithTimeout(ctx, time.Minute)
					r, err := api.do(sctx, http.MethodPost, "/v0/send", sendRequest{Addr: addr, Message: line})
					scancel()
					if ctx.Err() != nil {
						return interrupted()
					}
					if err != nil {
						out.printf("! not sent: %s\n", oneLine(err))
						continue
					}
					r.Body.Close()
				}
			}
			if d := c.Duration("linger"); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return interrupted()
				}
			}
			cancel()
			wg.Wait()
			return nil
		},
	}
}

// chatCheck asks the daemon whether it can send to PEER, and refuses with
// the way to get what is missing (with the user's --repo).
func chatCheck(ctx context.Context, c *cli.Command, api *apiClient, addr string, p peer.ID) error {
	resp, err := api.do(ctx, http.MethodPost, "/v0/chat", sendRequest{Addr: addr})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ready chatReady
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil {
		return fmt.Errorf("the daemon's answer: %v", err)
	}
	repo := repoArg(c) // trustevents.go
	if !ready.Addr {
		return fmt.Errorf("chat: no address known for %s: give its full multiaddr (\"p2pkex chat%s MULTIADDR\"), or run \"p2pkex connect%s MULTIADDR\" first", p, repo, repo)
	}
	if !ready.Key {
		return fmt.Errorf("chat: no session key with %s: run \"p2pkex exchange%s %s\" first", p, repo, addr)
	}
	return nil
}
