package main

import (
	"context"
	"sync"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "serve the key exchange until interrupted",
		Description: `Creates the repo on first use (identity and store), listens, prints
its full addresses and answers exchanges, printing each as it happens.
SIGINT or SIGTERM stops it cleanly.

Example:
  p2pkex daemon --repo /tmp/bob --listen /ip4/127.0.0.1/tcp/4001`,
		Flags: append(nodeFlags(), repoFlag(),
			&cli.StringSliceFlag{Name: "listen", Usage: "listen on `MULTIADDR` (repeatable; default TCP and QUIC on all interfaces)"},
		),
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			opts, err := nodeOptions(c)
			if err != nil {
				return err
			}
			if addrs := c.StringSlice("listen"); len(addrs) > 0 {
				for _, a := range addrs {
					if _, err := parseMultiaddr(a); err != nil {
						return err
					}
				}
				opts = append(opts, node.WithListenAddrs(addrs...))
			}
			r, err := openRepo(c.String("repo"), true)
			if err != nil {
				return err
			}
			defer r.Close()
			n, err := node.New(ctx, append(opts, node.WithStore(r.store))...)
			if err != nil {
				return err
			}
			defer n.Close()

			out := &progress{w: c.Root().Writer}
			defer printMessages(n, out)() // send.go
			stopAPI, err := serveAPI(n, r.dir)
			if err != nil {
				return err
			}
			defer stopAPI()
			out.printf("p2pkex daemon %s\n", n.ID())
			out.printf("exchange key %s\n", n.Fingerprint())
			for _, a := range n.Addrs() {
				out.printf("listening on %s\n", a)
			}

			events, stop := n.Subscribe(0)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e := range events {
					switch e.Kind {
					case node.EventDone:
						out.printf("exchange with %s: epoch %d, key ID %s (%s)\n", e.Peer, e.Info.Epoch, e.Info.KeyID, describe(e.Info))
					case node.EventFailed:
						out.printf("exchange with %s failed: %s\n", e.Peer, oneLine(e.Err))
					}
				}
			}()
			<-ctx.Done()
			stop()
			wg.Wait()
			out.printf("stopping\n")
			return nil
		},
	}
}
