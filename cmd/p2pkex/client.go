package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
)

// Commands that only talk to a running daemon (api_more.go serves them):
// peers, connect, keys, status.

// needDaemon returns a client for the repo's daemon, or says how to start
// one.
func needDaemon(c *cli.Command) (*apiClient, error) {
	dir := c.String("repo")
	if err := requireRepo(dir); err != nil { // repo.go
		return nil, err
	}
	api := dialAPI(dir)
	if api == nil {
		return nil, fmt.Errorf("no daemon running on %s: start one with \"p2pkex daemon --repo %s\"", dir, shellWord(dir))
	}
	return api, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON"} }

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:  "peers",
		Usage: "list connected, discovered and known peers (through the daemon)",
		Description: `One line per peer: whether the daemon is connected to it, how it was
discovered (mdns, dht), its trust state (first-use, verified, changed;
unknown before any exchange), the epoch, suite and time of the last
exchange; a classical (not post-quantum) suite is marked "(classical)".

Example:
  p2pkex peers --repo /tmp/alice`,
		Flags: []cli.Flag{repoFlag(), jsonFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			api, err := needDaemon(c)
			if err != nil {
				return err
			}
			var peers []peerJSON
			if err := api.getJSON(ctx, http.MethodGet, "/v0/peers", &peers); err != nil {
				return err
			}
			w := c.Root().Writer
			if c.Bool("json") {
				return printJSON(w, peers)
			}
			if len(peers) == 0 {
				fmt.Fprintln(w, "no peers")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tCONNECTED\tDISCOVERED\tTRUST\tEPOCH\tSUITE\tLAST EXCHANGE")
			for _, p := range peers {
				conn, disc, epoch, suite, last := "no", "-", "-", "-", "-"
				if p.Connected {
					conn = "yes"
					if p.Connection == "relayed" {
						conn = "relayed"
					}
				}
				if len(p.Discovered) > 0 {
					disc = strings.Join(p.Discovered, ",")
				}
				if p.LastExchange != nil {
					epoch = fmt.Sprint(p.Epoch)
					last = p.LastExchange.Local().Format(time.DateTime)
				}
				if p.Suite != "" {
					suite = suiteLabel(p.Suite)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Peer, conn, disc, p.Trust, epoch, suite, last)
			}
			return tw.Flush()
		},
	}
}

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:      "connect",
		Usage:     "connect the daemon to a peer",
		ArgsUsage: "MULTIADDR",
		Description: `MULTIADDR is the peer's full address, ending in /p2p/<peer ID>. Once
connected, "p2pkex exchange" takes just the peer ID.

Example:
  p2pkex connect --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...`,
		Flags: []cli.Flag{repoFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up after this long"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("connect: want one MULTIADDR, got %d arguments", c.Args().Len())
			}
			pi, err := parsePeerAddr(c.Args().First())
			if err != nil {
				return err
			}
			if len(pi.Addrs) == 0 {
				return usagef("connect: multiaddr %q needs an address before /p2p/<peer ID>", c.Args().First())
			}
			api, err := needDaemon(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
			defer cancel()
			resp, err := api.do(ctx, http.MethodPost, "/v0/connect", connectRequest{Addr: c.Args().First()})
			if err != nil {
				printTrust(c.Root().ErrWriter, withNext(c, apiTrustEvents(err))) // trustevents.go
				return err
			}
			defer resp.Body.Close()
			var rep connectReply
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
				return fmt.Errorf("daemon reply: %w", err)
			}
			printTrust(c.Root().ErrWriter, withNext(c, rep.TrustEvents))
			fmt.Fprintf(c.Root().Writer, "connected to %s\n", rep.Peer)
			return nil
		},
	}
}

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:      "keys",
		Usage:     "list the node's exchange keys and the session keys by peer and epoch (never the keys themselves)",
		ArgsUsage: "[PEER]",
		Description: `Shows the node's own exchange key (sequence number, fingerprint,
creation time; the previous one while its grace period lasts) and, for
every peer it exchanged keys with (or only PEER, a peer ID), the kept
session epochs with their key IDs, suites and creation times.

Example:
  p2pkex keys --repo /tmp/alice 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(), jsonFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() > 1 {
				return usagef("keys: want at most one PEER, got %d arguments", c.Args().Len())
			}
			path := "/v0/keys"
			if c.Args().Len() == 1 {
				pi, err := parsePeerArg(c.Args().First())
				if err != nil {
					return err
				}
				path += "?peer=" + url.QueryEscape(pi.ID.String())
			}
			api, err := needDaemon(c)
			if err != nil {
				return err
			}
			var rep keysReply
			if err := api.getJSON(ctx, http.MethodGet, path, &rep); err != nil {
				return err
			}
			w := c.Root().Writer
			if c.Bool("json") {
				return printJSON(w, rep)
			}
			ts := func(t time.Time) string { return t.Local().Format(time.DateTime) }
			fmt.Fprintf(w, "exchange key %s  seq %d  created %s\n", rep.Own.Fingerprint, rep.Own.Seq, ts(rep.Own.Created))
			if p := rep.Previous; p != nil {
				fmt.Fprintf(w, "previous     %s  seq %d  destroyed after %s\n", p.Fingerprint, p.Seq, ts(*p.Retire))
			}
			for _, p := range rep.Peers {
				fmt.Fprintf(w, "peer %s  trust %s\n", p.Peer, p.Trust)
				if p.Fingerprint != "" {
					fmt.Fprintf(w, "  exchange key %s\n", p.Fingerprint)
				}
				for _, s := range p.Sessions {
					fmt.Fprintf(w, "  epoch %d  key ID %s  %s  created %s\n", s.Epoch, s.KeyID, suiteLabel(s.Suite), ts(s.Created))
				}
			}
			return nil
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the running daemon's peer ID, addresses, uptime, peers and exchanges",
		Description: `Asks the repo's daemon; without one there is nothing running to report on.

Examples:
  p2pkex status --repo /tmp/alice
  p2pkex status --repo /tmp/alice --json`,
		Flags: []cli.Flag{repoFlag(), jsonFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			api, err := needDaemon(c)
			if err != nil {
				return err
			}
			var st statusReply
			if err := api.getJSON(ctx, http.MethodGet, "/v0/status", &st); err != nil {
				return err
			}
			w := c.Root().Writer
			if c.Bool("json") {
				return printJSON(w, st)
			}
			fmt.Fprintf(w, "peer ID       %s\n", st.PeerID)
			fmt.Fprintf(w, "exchange key  %s\n", st.Fingerprint)
			fmt.Fprintf(w, "uptime        %s\n", st.Uptime)
			fmt.Fprintf(w, "connected     %d peers\n", st.ConnectedPeers)
			fmt.Fprintf(w, "exchanges     %d done, %d failed\n", st.ExchangesDone, st.ExchangesFailed)
			fmt.Fprintf(w, "reachability  %s\n", st.Reachability)
			for _, r := range st.Relays {
				fmt.Fprintf(w, "relay         %s (reservation)\n", r)
			}
			for _, a := range st.Addrs {
				fmt.Fprintf(w, "address       %s\n", a)
			}
			if st.Metrics != "" {
				fmt.Fprintf(w, "metrics       %s\n", st.Metrics)
			}
			return nil
		},
	}
}
