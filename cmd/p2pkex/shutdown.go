package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/peerstore"
)

func shutdownCommand() *cli.Command {
	return &cli.Command{
		Name:  "shutdown",
		Usage: "stop the repo's running daemon",
		Description: `Asks the daemon running on the repo to stop, as Ctrl-C in its terminal
would, and waits until it has closed its store (the repo is then free
for another process), at most --timeout.

Example:
  p2pkex shutdown --repo /tmp/alice`,
		Flags: []cli.Flag{repoFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up waiting after this long"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir := c.String("repo")
			if err := requireRepo(dir); err != nil { // repo.go
				return err
			}
			d := daemon(dir) // backend.go
			if d == nil {
				return fmt.Errorf("no daemon running on %s", dir)
			}
			defer d.Close()
			ctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
			defer cancel()
			rep, err := d.Shutdown(ctx)
			if err != nil {
				return err
			}
			if err := waitRepoFree(ctx, dir); err != nil {
				if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("the daemon on %s is stopping but still holds the repo after %s", dir, c.Duration("timeout"))
				}
				return err
			}
			fmt.Fprintf(c.Root().Writer, "daemon %s on %s stopped\n", rep.PeerID, dir)
			return nil
		},
	}
}

// waitRepoFree waits until no process holds the repo's store: the daemon
// has closed it and, with it, everything it ran. Its open only probes the
// lock, so it skips the walk of the lookup tree (oneShot).
func waitRepoFree(ctx context.Context, dir string) error {
	for {
		s, err := openStore(dir, oneShot, peerstore.WithLockTimeout(50*time.Millisecond)) // repo.go
		if err == nil {
			return s.Close()
		}
		if !errors.Is(err, peerstore.ErrLocked) {
			return fmt.Errorf("open store of repo %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
