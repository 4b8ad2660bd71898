package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
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

Discovery: the daemon finds other p2pkex nodes by mDNS on the local
network (service "p2pkex"; --no-mdns turns it off) and through a
Kademlia DHT of p2pkex nodes (protocol prefix /p2pkex, not the public
IPFS DHT) with the rendezvous "p2pkex/1.0.0". The DHT contacts only the
--bootstrap peers: with none it contacts no one and only answers nodes
that reach it. A bootstrap node for others runs with --dht-server. Each
peer found is printed as "discovered <peer ID> via mdns|dht" and can then
be given to "p2pkex exchange"; the daemon never starts an exchange or a
connection with a discovered peer on its own.

Examples:
  p2pkex daemon --repo /tmp/bob --listen /ip4/127.0.0.1/tcp/4001
  p2pkex daemon --repo /tmp/boot --dht-server --no-mdns
  p2pkex daemon --repo /tmp/alice --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...`,
		Flags: append(nodeFlags(), repoFlag(),
			&cli.StringSliceFlag{Name: "listen", Usage: "listen on `MULTIADDR` (repeatable; default TCP and QUIC on all interfaces)"},
			&cli.BoolFlag{Name: "no-mdns", Usage: "do not announce or look for peers by mDNS on the local network"},
			&cli.BoolFlag{Name: "no-dht", Usage: "do not run the p2pkex DHT"},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "join the p2pkex DHT through `MULTIADDR` ending in /p2p/<peer ID> (repeatable; default none)"},
			&cli.BoolFlag{Name: "dht-server", Usage: "answer DHT queries even when not known to be publicly reachable (for bootstrap nodes and LANs)"},
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
			disc, err := discoveryOptions(c)
			if err != nil {
				return err
			}
			opts = append(opts, disc...)
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

// discoveryOptions turns the daemon's discovery flags into node options:
// mDNS and the DHT are on unless turned off.
func discoveryOptions(c *cli.Command) ([]node.Option, error) {
	noDHT := c.Bool("no-dht")
	boot := c.StringSlice("bootstrap")
	if noDHT && len(boot) > 0 {
		return nil, usagef("--bootstrap needs the DHT: drop --no-dht")
	}
	if noDHT && c.Bool("dht-server") {
		return nil, usagef("--dht-server needs the DHT: drop --no-dht")
	}
	var opts []node.Option
	if !c.Bool("no-mdns") {
		opts = append(opts, node.WithMDNS(node.DefaultMDNSService))
	}
	if noDHT {
		return opts, nil
	}
	var peers []peer.AddrInfo
	index := map[peer.ID]int{}
	for _, s := range boot {
		pi, err := parsePeerAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--bootstrap: %w", err)
		}
		if len(pi.Addrs) == 0 {
			return nil, usagef("--bootstrap %q: needs an address before /p2p/<peer ID>", s)
		}
		if i, ok := index[pi.ID]; ok {
			peers[i].Addrs = append(peers[i].Addrs, pi.Addrs...)
			continue
		}
		index[pi.ID] = len(peers)
		peers = append(peers, *pi)
	}
	var dhtOpts []node.DHTOption
	if c.Bool("dht-server") {
		dhtOpts = append(dhtOpts, node.WithDHTMode(node.DHTModeServer))
	}
	return append(opts, node.WithDHT(peers, dhtOpts...)), nil
}
