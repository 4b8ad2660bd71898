package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/internal/procs"
	"github.com/p2pkex/p2pkex/node"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "serve the key exchange until interrupted",
		Description: `Runs on the repo made by "p2pkex init" (--init creates it first when
there is none, for scripts), listens,
prints its full addresses and answers exchanges, printing each as it
happens. Received messages are kept in the repo's inbox ("p2pkex inbox"
reads them); only a line of metadata (sender, size) is printed. SIGINT or
SIGTERM stops it cleanly. While it runs, the other
commands work through its control socket (DIR/api.sock; DIR/api holds
its path; docs/API.md).

Settings come from DIR/config.json (listen addresses, bootstrap peers,
discovery, limits, message grace; "p2pkex init" writes the defaults); the
flags override it. --metrics-addr serves Prometheus metrics (p2pkex_* and
libp2p's own) at http://HOST:PORT/metrics.

Discovery: the daemon finds other p2pkex nodes by mDNS on the local
network (service "p2pkex"; --no-mdns turns it off) and through a
Kademlia DHT of p2pkex nodes (protocol prefix /p2pkex, not the public
IPFS DHT) with the rendezvous "p2pkex/1.0.0". The DHT contacts only the
--bootstrap peers: with none it contacts no one and only answers nodes
that reach it. A bootstrap node for others runs with --dht-server. Each
peer found is printed as "discovered <peer ID> via mdns|dht" and can then
be given to "p2pkex exchange"; the daemon never starts an exchange or a
connection with a discovered peer on its own.

NATs: --relay makes the daemon a circuit relay v2 for others (limits:
2 min and 128 KiB per relayed connection, 128 reservations, 16 circuits
per peer; see node.DefaultRelayResources) and answers AutoNAT; it
declares itself publicly reachable. A daemon behind a NAT uses the relays
of config.json ("relays", or --relays): when AutoNAT finds it unreachable
(or --reachability private says so) it reserves a slot on them, and peers
reach it at RELAY/p2p-circuit/p2p/<peer ID>. Exchanges and messages run
over such a relayed connection; hole punching (DCUtR, always on) then
tries a direct connection, which later exchanges use.

Examples:
  p2pkex daemon --repo /tmp/bob --listen /ip4/127.0.0.1/tcp/4001
  p2pkex daemon --init --repo /tmp/relay --relay --listen /ip4/0.0.0.0/tcp/4001
  p2pkex daemon --repo /tmp/carol --relays /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...
  p2pkex daemon --init --repo /tmp/boot --dht-server --no-mdns
  p2pkex daemon --metrics-addr 127.0.0.1:9464
  p2pkex daemon --repo /tmp/alice --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...`,
		Flags: append(nodeFlags(), repoFlag(),
			&cli.BoolFlag{Name: "init", Usage: "create the repo first if there is none (as \"p2pkex init\"; for scripts)"},
			&cli.StringSliceFlag{Name: "listen", Usage: "listen on `MULTIADDR` (repeatable; default TCP and QUIC on all interfaces)"},
			&cli.BoolFlag{Name: "no-mdns", Usage: "do not announce or look for peers by mDNS on the local network"},
			&cli.BoolFlag{Name: "no-dht", Usage: "do not run the p2pkex DHT"},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "join the p2pkex DHT through `MULTIADDR` ending in /p2p/<peer ID> (repeatable; default none)"},
			&cli.BoolFlag{Name: "dht-server", Usage: "answer DHT queries even when not known to be publicly reachable (for bootstrap nodes and LANs)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics (port 0: any free port)"},
			&cli.BoolFlag{Name: "relay", Usage: "run a circuit relay v2 service and AutoNAT for nodes behind NATs (for a node with a public address)"},
			&cli.StringSliceFlag{Name: "relays", Usage: "use the circuit relay at `MULTIADDR` ending in /p2p/<peer ID> (repeatable; default: relays in config.json)"},
			&cli.StringFlag{Name: "reachability", Usage: "public or private: skip AutoNAT's detection (private: reserve relay slots at once)"},
		),
		Action: func(ctx context.Context, c *cli.Command) error {
			ctx, requestShutdown := context.WithCancel(ctx) // "p2pkex shutdown" (shutdown.go)
			defer requestShutdown()
			if err := noArgs(c); err != nil {
				return err
			}
			// One P more than CPUs: the store's syncs hold a P while they
			// wait (internal/procs). $GOMAXPROCS overrides.
			procs.Raise()
			if err := checkNodeFlags(c); err != nil { // nodeconfig.go
				return err
			}
			dir := c.String("repo")
			if dir == "" {
				return noRepoDir
			}
			cfg, err := loadConfig(dir) // config.go; defaults without one
			if err != nil {
				return err
			}
			opts, err := nodeSettings(cfg, c) // the same as every one-shot command's
			if err != nil {
				return err
			}
			more, err := daemonConfig(cfg, c)
			if err != nil {
				return err
			}
			opts = append(opts, more...)
			metricsAddr := c.String("metrics-addr")
			if metricsAddr != "" {
				if err := checkMetricsAddr(metricsAddr); err != nil {
					return err
				}
				opts = append(opts, node.WithMetrics(prometheus.DefaultRegisterer))
			}
			// No core dumps of the daemon's keys (docs/SECURITY.md).
			if err := node.ProtectProcess(); err != nil {
				fmt.Fprintf(c.Root().ErrWriter, "p2pkex: warning: %v\n", err)
			}
			// After the flags' checks: a mistake in them is reported first.
			r, err := openRepo(dir, c.Bool("init"), c.Root().ErrWriter, serving)
			if err != nil {
				return err
			}
			defer r.Close()
			out := &progress{w: c.Root().Writer}
			ib, err := openDaemonInbox(c, dir, cfg, out) // inbox.go
			if err != nil {
				return err
			}
			defer ib.Close() // after the node closed: no message is kept after it
			n, err := node.New(ctx, append(opts, node.WithStore(r.store), node.WithMessageKeeper(ib.keep))...)
			if err != nil {
				return err
			}
			defer n.Close()

			defer printRefusedMessages(n, out)() // send.go
			defer printTrustWarnings(n, out)()   // chat.go
			if metricsAddr != "" {
				stopMetrics, err := serveMetrics(metricsAddr) // metrics.go
				if err != nil {
					return err
				}
				defer stopMetrics()
			}
			// The control API (api/server): "p2pkex shutdown" stops the
			// daemon as a SIGINT would.
			srv := server.New(n, server.Options{Dir: r.dir, Inbox: ib.ib, Shutdown: requestShutdown, Metrics: metricsURL})
			if err := srv.Start(); err != nil {
				return err
			}
			defer srv.Close() // ends inbox followers and chats first, then stops serving
			out.printf("p2pkex daemon %s\n", n.ID())
			out.printf("exchange key %s\n", n.Fingerprint())
			for _, a := range n.Addrs() {
				out.printf("listening on %s\n", a)
			}
			if u := metricsURL(); u != "" {
				out.printf("metrics on %s\n", u)
			}

			events, stop := n.Subscribe(0)
			// Discovery starts with the node: peers found before the
			// subscription are listed by DiscoveredPeers. Each peer is
			// printed once per source.
			reported := map[string]bool{}
			discovered := func(p peer.ID, src node.DiscoverySource) {
				if k := p.String() + " via " + src.String(); !reported[k] {
					reported[k] = true
					out.printf("discovered %s\n", k)
				}
			}
			for _, d := range n.DiscoveredPeers() {
				for _, src := range d.Sources {
					discovered(d.ID, src)
				}
			}
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
					case node.EventDiscovered:
						discovered(e.Peer, e.Source)
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
