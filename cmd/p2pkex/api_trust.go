package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// Trust and chat on the command line: "p2pkex verify", "p2pkex chat", the
// daemon's endpoints for them, and the daemon's key-change warnings.
//
//	GET  /v0/verify?peer=ID           -> verifyReply
//	POST /v0/verify {"peer": ID}      -> verifyReply (marks the peer verified)
//	POST /v0/verify {"peer": ID, "revoke": true}
//	                                  -> verifyReply (withdraws the verification)
//	GET  /v0/messages?peer=ID         -> NDJSON stream of chatLine, until the client leaves

type verifyRequest struct {
	Peer   string `json:"peer"`
	Revoke bool   `json:"revoke,omitempty"`
}

// verifyAction is what "p2pkex verify" does to a peer's trust state.
type verifyAction uint8

const (
	verifyShow    verifyAction = iota
	verifyConfirm              // --confirm: verified
	verifyRevoke               // --revoke: back to first-use
)

type verifyReply struct {
	Self        string `json:"self"`
	Peer        string `json:"peer"`
	Trust       string `json:"trust"`         // the trust state (after --confirm)
	Previous    string `json:"previous"`      // before --confirm
	Fingerprint string `json:"fingerprint"`   // the peer's exchange-key record, if known
	Digits      string `json:"safety_number"` // 12 groups of 5 digits
	Words       string `json:"safety_words"`  // 12 words
	Confirmed   bool   `json:"confirmed"`     // --confirm ran
	Revoked     bool   `json:"revoked"`       // --revoke ran
	Known       bool   `json:"known"`         // an exchange took place
}

type chatLine struct {
	From  string `json:"from"`
	Epoch uint64 `json:"epoch"`
	Text  string `json:"text"`
}

// verifyPeer reads (and with verifyConfirm or verifyRevoke sets) the trust
// of p in store.
func verifyPeer(store peerstore.Store, self, p peer.ID, action verifyAction) (*verifyReply, error) {
	if p == self {
		return nil, usagef("verify: %s is this repo's own peer ID", p)
	}
	sn := protocol.NewSafetyNumber(self, p)
	r := &verifyReply{Self: self.String(), Peer: p.String(), Digits: sn.Digits(), Words: sn.Words(),
		Trust: peerstore.TrustUnknown.String()}
	pk, err := store.Peer(p)
	switch {
	case errors.Is(err, peerstore.ErrNotFound):
		if action != verifyShow {
			return nil, fmt.Errorf("no key of %s known: run \"p2pkex exchange\" first", p)
		}
		r.Previous = r.Trust
		return r, nil
	case err != nil:
		return nil, err
	}
	r.Known = true
	r.Trust, r.Previous = pk.Trust.String(), pk.Trust.String()
	if fp, err := protocol.ParseFingerprint(pk.Fingerprint); err == nil {
		r.Fingerprint = fp.String()
	}
	switch action {
	case verifyConfirm:
		if err := store.SetTrust(p, peerstore.TrustVerified); err != nil {
			return nil, err
		}
		r.Trust, r.Confirmed = peerstore.TrustVerified.String(), true
	case verifyRevoke:
		if pk.Trust != peerstore.TrustVerified {
			return nil, fmt.Errorf("%s is not verified (it is %s): nothing to revoke", p, pk.Trust)
		}
		if err := store.SetTrust(p, peerstore.TrustFirstUse); err != nil {
			return nil, err
		}
		r.Trust, r.Revoked = peerstore.TrustFirstUse.String(), true
	}
	return r, nil
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

// handleTrustAPI serves the trust and chat endpoints on the control API.
func handleTrustAPI(mux *http.ServeMux, n *node.Node) {
	verify := func(w http.ResponseWriter, s string, action verifyAction) {
		p, err := parsePeerIDArg(s)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := verifyPeer(n.Store(), n.ID(), p, action)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, rep)
	}
	mux.HandleFunc("GET /v0/verify", func(w http.ResponseWriter, r *http.Request) {
		verify(w, r.URL.Query().Get("peer"), verifyShow)
	})
	mux.HandleFunc("POST /v0/verify", func(w http.ResponseWriter, r *http.Request) {
		var req verifyRequest
		if !decodeRequest(w, r, 4096, &req) {
			return
		}
		action := verifyConfirm
		if req.Revoke {
			action = verifyRevoke
		}
		verify(w, req.Peer, action)
	})
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
				out.printf("%s\n", trustWarning(e.Peer, e.Trust))
			}
		}
	}()
	return func() {
		stopEvents()
		wg.Wait()
	}
}

func trustWarning(p peer.ID, tc *node.TrustChange) string {
	return "WARNING: " + trustEventOf(p, tc).Message // trustevents.go
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

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "show the safety number of a peer; --confirm marks the peer verified, --revoke withdraws that",
		ArgsUsage: "PEER",
		Description: `PEER is a peer ID or a multiaddr ending in /p2p/<peer ID>. The safety
number is derived from both peers' identities (docs/PROTOCOL.md, section
11.6): the peer's "p2pkex verify" shows the same one. Compare it over a
channel you trust (in person, a call), as digits or as words; if it
matches, run again with --confirm. A verified peer whose exchange key then
changes without a rotation that accounts for it is refused (trust policy
"tofu", the default; see docs/SECURITY.md), and so is another identity
answering at its address. To accept such a change once you know why it
happened, withdraw the verification with --revoke (the peer is back to
first-use), run the exchange again (the peer becomes "changed"), compare
safety numbers and confirm. Through the repo's daemon if it runs, else on
the repo directly.

Examples:
  p2pkex verify --repo /tmp/alice 12D3KooW...
  p2pkex verify --repo /tmp/alice --confirm 12D3KooW...
  p2pkex verify --repo /tmp/alice --revoke 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(),
			&cli.BoolFlag{Name: "confirm", Usage: "mark the peer verified (after comparing the safety numbers)"},
			&cli.BoolFlag{Name: "revoke", Usage: "withdraw the peer's verification (back to first-use), to accept a key or identity change"},
			&cli.BoolFlag{Name: "quiet", Usage: "print only the safety number: digits, then words"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("verify: want one PEER (peer ID or MULTIADDR), got %d arguments", c.Args().Len())
			}
			p, err := parsePeerIDArg(c.Args().First())
			if err != nil {
				return err
			}
			action := verifyShow
			switch {
			case c.Bool("confirm") && c.Bool("revoke"):
				return usagef("verify: --confirm and --revoke exclude each other")
			case c.Bool("confirm"):
				action = verifyConfirm
			case c.Bool("revoke"):
				action = verifyRevoke
			}
			dir := c.String("repo")
			var rep *verifyReply
			if api := dialAPI(dir); api != nil {
				rep = &verifyReply{}
				var resp *http.Response
				if action != verifyShow {
					resp, err = api.do(ctx, http.MethodPost, "/v0/verify", verifyRequest{Peer: p.String(), Revoke: action == verifyRevoke})
				} else {
					resp, err = api.do(ctx, http.MethodGet, "/v0/verify?peer="+url.QueryEscape(p.String()), nil)
				}
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if err := json.NewDecoder(resp.Body).Decode(rep); err != nil {
					return fmt.Errorf("daemon reply: %w", err)
				}
			} else {
				r, err := openRepo(dir, false)
				if err != nil {
					return err
				}
				defer r.Close()
				if rep, err = verifyPeer(r.store, peerIDOf(r), p, action); err != nil {
					return err
				}
			}
			w := c.Root().Writer
			if c.Bool("quiet") {
				fmt.Fprintf(w, "%s\n%s\n", rep.Digits, rep.Words)
				return nil
			}
			fmt.Fprintf(w, "peer           %s\n", rep.Peer)
			fmt.Fprintf(w, "trust          %s\n", rep.Trust)
			if rep.Fingerprint != "" {
				fmt.Fprintf(w, "exchange key   %s\n", rep.Fingerprint)
			}
			fmt.Fprintf(w, "safety number  %s\n", rep.Digits)
			fmt.Fprintf(w, "words          %s\n", rep.Words)
			switch {
			case rep.Confirmed:
				fmt.Fprintf(w, "%s is now verified (was %s)\n", rep.Peer, rep.Previous)
			case rep.Revoked:
				fmt.Fprintf(w, "%s is no longer verified (now %s)\n", rep.Peer, rep.Trust)
			case !rep.Known:
				fmt.Fprintf(w, "no exchange with this peer yet\n")
			case rep.Trust != peerstore.TrustVerified.String():
				fmt.Fprintf(w, "compare with the peer's \"p2pkex verify\"; if they match: p2pkex verify --confirm %s\n", rep.Peer)
			}
			return nil
		},
	}
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
