package main

// "p2pkex forget PEER", like ssh-keygen -R: removes everything the repo
// holds of a peer (its exchange-key record, its trust state, its session
// keys), after saying what it will remove. It is the way back from a
// refused key change or a peer that lost its store: the next exchange is a
// first contact. Through the repo's daemon if it runs, else on a node of
// the command's own on the repo (Node.Forget: one store transaction).
//
//	GET  /v0/forget?peer=ID     -> forgetReply (what would be removed; nothing is)
//	POST /v0/forget {"peer": ID} -> forgetReply (what was removed)

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
)

type forgetRequest struct {
	Peer string `json:"peer"`
}

// forgetReply says what forget removes (GET) or removed (POST).
type forgetReply struct {
	Peer     string `json:"peer"`
	Record   bool   `json:"record"`   // the peer's exchange-key record
	Trust    string `json:"trust"`    // its trust state (unknown: none)
	Sessions int    `json:"sessions"` // session keys
	Removed  bool   `json:"removed"`  // POST: they are gone
}

func (r *forgetReply) nothing() bool { return !r.Record && r.Sessions == 0 }

// what is the list of what r names, for people.
func (r *forgetReply) what() string {
	var parts []string
	if r.Record {
		parts = append(parts, "its exchange-key record", "its trust state ("+r.Trust+")")
	}
	switch r.Sessions {
	case 0:
	case 1:
		parts = append(parts, "1 session key")
	default:
		parts = append(parts, fmt.Sprintf("%d session keys", r.Sessions))
	}
	if len(parts) > 1 {
		return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
	}
	return strings.Join(parts, "")
}

// forgetOn reports what n holds of the peer and, if remove, removes it.
func forgetOn(n *node.Node, s string, remove bool) (*forgetReply, error) {
	p, err := parsePeerIDArg(s)
	if err != nil {
		return nil, err
	}
	if p == n.ID() {
		return nil, usagef("forget: %s is this repo's own peer ID", p)
	}
	r := &forgetReply{Peer: p.String(), Trust: peerstore.TrustUnknown.String()}
	if remove {
		res, err := n.Forget(p)
		if err != nil {
			return nil, err
		}
		r.Record, r.Trust, r.Sessions, r.Removed = res.Record, res.Trust.String(), res.Sessions, true
		return r, nil
	}
	switch pk, err := n.Store().Peer(p); {
	case err == nil:
		r.Record, r.Trust = true, pk.Trust.String()
	case !errors.Is(err, peerstore.ErrNotFound):
		return nil, err
	}
	switch ss, err := n.Store().Sessions(p); {
	case err == nil:
		r.Sessions = len(ss)
		for i := range ss {
			clear(ss[i].Key[:])
		}
	case !errors.Is(err, peerstore.ErrNotFound):
		return nil, err
	}
	return r, nil
}

// handleForgetAPI serves /v0/forget on the control API.
func handleForgetAPI(mux *http.ServeMux, n *node.Node) {
	forget := func(w http.ResponseWriter, s string, remove bool) {
		rep, err := forgetOn(n, s, remove)
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err, nil) // api.go
			return
		}
		writeJSON(w, rep)
	}
	mux.HandleFunc("GET /v0/forget", func(w http.ResponseWriter, r *http.Request) {
		forget(w, r.URL.Query().Get("peer"), false)
	})
	mux.HandleFunc("POST /v0/forget", func(w http.ResponseWriter, r *http.Request) {
		var req forgetRequest
		if !decodeRequest(w, r, 4096, &req) {
			return
		}
		forget(w, req.Peer, true)
	})
}

func forgetCommand() *cli.Command {
	return &cli.Command{
		Name:      "forget",
		Usage:     "remove a peer's record, trust state and session keys from the repo",
		ArgsUsage: "PEER",
		Description: `PEER is a peer ID or a multiaddr ending in /p2p/<peer ID>. Like
"ssh-keygen -R", forget removes everything the repo holds of the peer: its
exchange-key record, its trust state and its session keys (destroyed;
messages sealed under them can no longer be read). The next exchange with
the peer is a first contact: compare safety numbers again ("p2pkex
verify"). This is the way back from a refused key change, for instance
after the peer lost its store, once its owner confirmed it.

forget says what it will remove and asks on a terminal; without one it
needs --yes. Through the repo's daemon if it runs, else on the repo.
--json prints peer, record, trust, sessions and removed.

Examples:
  p2pkex forget --repo /tmp/alice 12D3KooW...
  p2pkex forget --repo /tmp/alice --yes 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(), jsonFlag(),
			&cli.BoolFlag{Name: "yes", Usage: "do not ask: remove it"},
		},
		Action: forgetAction,
	}
}

func forgetAction(ctx context.Context, c *cli.Command) error {
	if c.Args().Len() != 1 {
		return usagef("forget: want one PEER (peer ID or MULTIADDR), got %d arguments", c.Args().Len())
	}
	p, err := parsePeerIDArg(c.Args().First())
	if err != nil {
		return err
	}
	if err := notSelf(c, p); err != nil { // repo.go
		return err
	}
	call, done, err := forgetClient(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	rep, err := call(p.String(), false)
	if err != nil {
		return err
	}
	w, info := c.Root().Writer, c.Root().Writer
	if c.Bool("json") {
		info = c.Root().ErrWriter // stdout is the JSON
	}
	if rep.nothing() {
		fmt.Fprintf(info, "the repo holds nothing of %s\n", p)
		if c.Bool("json") {
			return printJSON(w, rep)
		}
		return nil
	}
	fmt.Fprintf(info, "forget %s: %s will be removed\n", p, rep.what())
	if !c.Bool("yes") {
		if !isTerminal(c.Root().Reader) { // term_*.go
			return usagef("forget: no terminal to ask on: add --yes to remove them")
		}
		fmt.Fprintf(info, "Remove them? [y/N] ")
		line, _ := bufio.NewReader(c.Root().Reader).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return errors.New("forget: nothing removed")
		}
	}
	if rep, err = call(p.String(), true); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(w, rep)
	}
	fmt.Fprintf(w, "forgot %s: removed %s; the next exchange is a first contact\n", p, rep.what())
	return nil
}

// forgetClient returns how to ask the repo's daemon, or a node of the
// command's own on the repo, for forgetOn.
func forgetClient(ctx context.Context, c *cli.Command) (call func(p string, remove bool) (*forgetReply, error), done func(), err error) {
	dir := c.String("repo")
	if api := dialAPI(dir); api != nil {
		return func(p string, remove bool) (*forgetReply, error) {
			var resp *http.Response
			var err error
			if remove {
				resp, err = api.do(ctx, http.MethodPost, "/v0/forget", forgetRequest{Peer: p})
			} else {
				resp, err = api.do(ctx, http.MethodGet, "/v0/forget?peer="+url.QueryEscape(p), nil)
			}
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			var rep forgetReply
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
				return nil, fmt.Errorf("daemon reply: %w", err)
			}
			return &rep, nil
		}, func() {}, nil
	}
	r, err := openRepo(dir, false)
	if err != nil {
		return nil, nil, err
	}
	n, err := newRepoNode(ctx, c, r) // nodeconfig.go
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return func(p string, remove bool) (*forgetReply, error) { return forgetOn(n, p, remove) },
		func() { n.Close(); r.Close() }, nil
}
