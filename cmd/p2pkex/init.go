package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v3"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a repo: identity, default config, store",
		Description: `Creates the repo (default ~/.p2pkex; --repo or P2PKEX_PATH name
another): identity.key (a new Ed25519 libp2p identity, mode 0400),
config.json with the defaults (mode 0600; edit it, the daemon reads it
at start) and the store. A repo that already has an identity is left
alone. It is the only command that creates a repo ("p2pkex daemon --init"
too, for scripts): every other one refuses a directory that is not a repo,
so that a mistyped --repo is not a new identity.

With --json: {"repo", "peer_id", "config"}.

Examples:
  p2pkex init --repo /tmp/alice
  p2pkex init --repo /tmp/alice --json`,
		Flags: []cli.Flag{repoFlag(), jsonFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir := c.String("repo")
			if dir != "" {
				if _, err := os.Stat(filepath.Join(dir, identityFile)); !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("repo %s already initialised", dir)
				}
			}
			r, err := openRepo(dir, true, c.Root().ErrWriter, oneShot)
			if err != nil {
				return err
			}
			defer r.Close()
			w := c.Root().Writer
			if c.Bool("json") {
				return printJSON(w, struct {
					Repo   string `json:"repo"`
					PeerID string `json:"peer_id"`
					Config string `json:"config"`
				}{dir, peerIDOf(r).String(), filepath.Join(dir, configFile)})
			}
			fmt.Fprintf(w, "initialised repo %s\n", dir)
			fmt.Fprintf(w, "peer ID %s\n", peerIDOf(r))
			fmt.Fprintf(w, "config  %s\n", filepath.Join(dir, configFile))
			return nil
		},
	}
}
