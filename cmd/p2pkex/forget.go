package main

// "p2pkex forget PEER", like ssh-keygen -R: removes everything the repo
// holds of a peer (its exchange-key record, its trust state, its session
// keys), after saying what it will remove. It is the way back from a
// refused key change or a peer that lost its store: the next exchange is a
// first contact. Through the repo's daemon if it runs, else on a node of
// the command's own on the repo (Node.Forget: one store transaction; GET
// and POST /v0/forget in the control API).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
)

// nothingHeld reports whether the repo holds nothing of the peer.
func nothingHeld(r *api.ForgetReply) bool { return !r.Record && r.Sessions == 0 }

// forgetWhat is the list of what r names, for people.
func forgetWhat(r *api.ForgetReply) string {
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
	p, err := peerIDArg(c) // repo.go
	if err != nil {
		return err
	}
	return onBackend(ctx, c, nil, func(b backend) error { // backend.go
		return forget(ctx, c, b, p)
	})
}

// forget says what the repo holds of p, asks, and removes it.
func forget(ctx context.Context, c *cli.Command, b backend, p peer.ID) error {
	rep, err := b.ForgetPreview(ctx, p.String())
	if err != nil {
		return err
	}
	w, info := c.Root().Writer, c.Root().Writer
	if c.Bool("json") {
		info = c.Root().ErrWriter // stdout is the JSON
	}
	if nothingHeld(rep) {
		fmt.Fprintf(info, "the repo holds nothing of %s\n", p)
		if c.Bool("json") {
			return printJSON(w, rep)
		}
		return nil
	}
	fmt.Fprintf(info, "forget %s: %s will be removed\n", p, forgetWhat(rep))
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
	if rep, err = b.Forget(ctx, p.String()); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(w, rep)
	}
	fmt.Fprintf(w, "forgot %s: removed %s; the next exchange is a first contact\n", p, forgetWhat(rep))
	return nil
}
