package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

func idCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "print the repo's peer ID, exchange-key fingerprint and addresses",
		Description: `Asks the repo's daemon if it runs; otherwise reads the repo (then there
are no addresses to print). --qr shows the first full address as a QR code
in the terminal, for another device to scan.

Examples:
  p2pkex id --repo /tmp/bob
  p2pkex id --repo /tmp/bob --json
  p2pkex id --repo /tmp/bob --qr`,
		Flags: []cli.Flag{repoFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "qr", Usage: "also show the full address (the peer ID without a daemon) as a QR code"}},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir := c.String("repo")
			out := idReply{Addrs: []string{}}
			if api := dialAPI(dir); api != nil {
				if err := api.getJSON(ctx, "GET", "/v0/id", &out); err != nil {
					return err
				}
			} else {
				// No node runs, but a broken config is reported here as on
				// every other path.
				if _, err := loadConfig(dir); err != nil {
					return err
				}
				r, err := openRepo(dir, false)
				if err != nil {
					return err
				}
				defer r.Close()
				out.PeerID = peerIDOf(r).String()
				cur, _, err := r.store.ExchangeKeys()
				switch {
				case errors.Is(err, peerstore.ErrNotFound):
					out.Fingerprint = "(none yet: created when the node first starts)"
				case err != nil:
					return err
				default:
					out.Fingerprint = protocol.FingerprintOf(cur.Record).String()
				}
			}
			w := c.Root().Writer
			if c.Bool("json") && c.Bool("qr") {
				return usagef("id: --json and --qr do not go together")
			}
			if c.Bool("qr") {
				defer printQR(w, out) // qr.go
			}
			if c.Bool("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			fmt.Fprintf(w, "peer ID      %s\n", out.PeerID)
			fmt.Fprintf(w, "exchange key %s\n", out.Fingerprint)
			if !out.Running {
				fmt.Fprintf(w, "addresses    (daemon not running)\n")
			}
			for _, a := range out.Addrs {
				fmt.Fprintf(w, "address      %s\n", a)
			}
			return nil
		},
	}
}

func parseMultiaddr(s string) (ma.Multiaddr, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, usagef("malformed multiaddr %q: %s", s, multiaddrProblem(s, err))
	}
	return m, nil
}

// multiaddrProblem is go-multiaddr's reason without its own copy of the
// input ("failed to parse multiaddr \"X\": ..."), which the line names
// already.
func multiaddrProblem(s string, err error) string {
	msg := err.Error()
	for _, prefix := range []string{fmt.Sprintf("failed to parse multiaddr %q: ", s), "failed to parse multiaddr: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}

func rotateCommand() *cli.Command {
	return &cli.Command{
		Name:  "rotate",
		Usage: "replace the repo's exchange key (through the daemon if it runs)",
		Description: `Peers holding the old fingerprint receive the new key in phase 2 of
their next exchange; the old private key is destroyed by the rotation.
With --json: {"fingerprint": new, "previous": old}.

Examples:
  p2pkex rotate --repo /tmp/bob
  p2pkex rotate --repo /tmp/bob --json`,
		Flags: append(nodeFlags(), repoFlag(), jsonFlag()),
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := checkNodeFlags(c); err != nil {
				return err
			}
			if api := dialAPI(c.String("repo")); api != nil {
				if err := ownNodeOnly(c, c.String("repo")); err != nil { // exchange.go
					return err
				}
				var rep rotateReply
				if err := api.getJSON(ctx, "POST", "/v0/rotate", &rep); err != nil {
					return err
				}
				return printRotated(c, rep)
			}
			r, err := openRepo(c.String("repo"), false)
			if err != nil {
				return err
			}
			defer r.Close()
			n, err := newRepoNode(ctx, c, r) // nodeconfig.go
			if err != nil {
				return err
			}
			defer n.Close()
			before := n.Fingerprint()
			if err := n.RotateExchangeKey(); err != nil {
				return err
			}
			return printRotated(c, rotateReply{Fingerprint: n.Fingerprint().String(), Previous: before.String()})
		},
	}
}

func printRotated(c *cli.Command, rep rotateReply) error {
	w := c.Root().Writer
	if c.Bool("json") {
		return printJSON(w, rep)
	}
	fmt.Fprintf(w, "exchange key %s (was %s)\n", rep.Fingerprint, rep.Previous)
	return nil
}
