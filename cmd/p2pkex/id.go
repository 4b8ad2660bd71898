package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
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
			out := &api.ID{Addrs: []string{}}
			if d := daemon(dir); d != nil { // backend.go
				defer d.Close()
				var err error
				if out, err = d.ID(ctx); err != nil {
					return err
				}
			} else {
				// No node runs, but a broken config is reported here as on
				// every other path.
				if _, err := loadConfig(dir); err != nil {
					return err
				}
				r, err := openRepo(dir, false, c.Root().ErrWriter, oneShot)
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
			var rep *api.RotateReply
			err := onBackend(ctx, c, nil, func(b backend) (err error) { // backend.go
				rep, err = b.Rotate(ctx)
				return err
			})
			if err != nil {
				return err
			}
			return printRotated(c, rep)
		},
	}
}

func printRotated(c *cli.Command, rep *api.RotateReply) error {
	w := c.Root().Writer
	if c.Bool("json") {
		return printJSON(w, rep)
	}
	fmt.Fprintf(w, "exchange key %s (was %s)\n", rep.Fingerprint, rep.Previous)
	return nil
}
