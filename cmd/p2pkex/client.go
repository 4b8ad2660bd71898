package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// Commands that talk to a running daemon (api_more.go serves them):
// connect and status only through it; peers and keys read the repo when no
// daemon runs.

// withRepoOrDaemon runs viaDaemon when the repo's daemon runs (it holds the
// store's lock), else fromRepo on the repo opened by the command itself:
// a command that only reads the repo needs no daemon.
func withRepoOrDaemon(c *cli.Command, viaDaemon func(*apiClient) error, fromRepo func(*repo) error) error {
	dir := c.String("repo")
	if err := requireRepo(dir); err != nil { // repo.go
		return err
	}
	if api := dialAPI(dir); api != nil {
		return viaDaemon(api)
	}
	// No config is needed to read the store, but a broken one is reported
	// here as on every other path.
	if _, err := loadConfig(dir); err != nil {
		return err
	}
	r, err := openRepo(dir, false)
	if err != nil {
		return err
	}
	defer r.Close()
	return fromRepo(r)
}

// knownPeers is "peers" without a daemon: the peers the store knows, with
// their trust and last exchange; none is connected or discovered, as no
// node runs. (peersOf, api_more.go, adds the running node's view.)
func knownPeers(store peerstore.Store) ([]peerJSON, error) {
	known, err := store.Peers()
	if err != nil {
		return nil, fmt.Errorf("read known peers: %w", err)
	}
	out := make([]peerJSON, 0, len(known))
	for _, k := range known {
		pj := peerJSON{Peer: k.Peer.String(), Addrs: []string{}, Discovered: []string{}, Known: true, Trust: k.Trust.String()}
		if act, err := store.ActiveSession(k.Peer); err == nil {
			pj.Epoch, pj.KeyID, pj.Suite = act.Epoch, act.ID.String(), protocol.Suite(act.Suite).String()
			t := act.Created.UTC()
			pj.LastExchange = &t
			clear(act.Key[:])
		}
		out = append(out, pj)
	}
	slices.SortFunc(out, func(a, b peerJSON) int { return strings.Compare(a.Peer, b.Peer) })
	return out, nil
}

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

// connectJSON is connect --json's output: the daemon's reply with
// trust_events always present (an empty list rather than absent).
type connectJSON struct {
	Peer         string       `json:"peer"`
	Addr         string       `json:"addr"`
	SpeaksP2PKEX bool         `json:"p2pkex"`
	TrustEvents  []trustEvent `json:"trust_events"`
}

// plural is "1 peer", "2 peers".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
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
		Usage: "list connected, discovered and known peers",
		Description: `One line per peer: whether the daemon is connected to it, how it was
discovered (mdns, dht), its trust state (first-use, verified, changed;
unknown before any exchange), the epoch, suite and time (RFC 3339) of the
last exchange; a classical (not post-quantum) suite is marked
"(classical)". Without a running daemon it reads the repo: the known
peers, none connected or discovered.

With --json: a list of {"peer", "connected", "connection", "addrs",
"discovered", "known", "trust", "epoch", "key_id", "suite",
"last_exchange"}.

Examples:
  p2pkex peers --repo /tmp/alice
  p2pkex peers --repo /tmp/alice --json`,
		Flags: []cli.Flag{repoFlag(), jsonFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			var peers []peerJSON
			err := withRepoOrDaemon(c, func(api *apiClient) error {
				return api.getJSON(ctx, http.MethodGet, "/v0/peers", &peers)
			}, func(r *repo) (err error) {
				peers, err = knownPeers(r.store)
				return err
			})
			if err != nil {
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
					last = p.LastExchange.Local().Format(time.RFC3339)
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

With --json: {"peer", "addr", "p2pkex" (whether it speaks /p2pkex/1.0.0),
"trust_events": [...]}.

Examples:
  p2pkex connect --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
  p2pkex connect --repo /tmp/alice --json /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...`,
		Flags: []cli.Flag{repoFlag(), jsonFlag(),
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
			if err := notSelf(c, pi.ID); err != nil { // repo.go
				return err
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
			rep.TrustEvents = withNext(c, rep.TrustEvents)
			printTrust(c.Root().ErrWriter, rep.TrustEvents)
			if c.Bool("json") {
				if rep.TrustEvents == nil {
					rep.TrustEvents = []trustEvent{}
				}
				return printJSON(c.Root().Writer, connectJSON(rep))
			}
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
session epochs with their key IDs, suites and creation times (RFC 3339).
Through the repo's daemon if it runs, else from the repo itself.

Example:
  p2pkex keys --repo /tmp/alice 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(), jsonFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() > 1 {
				return usagef("keys: want at most one PEER, got %d arguments", c.Args().Len())
			}
			path := "/v0/keys"
			var onlyPeer peer.ID
			if c.Args().Len() == 1 {
				pi, err := parsePeerArg(c.Args().First())
				if err != nil {
					return err
				}
				onlyPeer = pi.ID
				path += "?peer=" + url.QueryEscape(pi.ID.String())
			}
			var rep keysReply
			err := withRepoOrDaemon(c, func(api *apiClient) error {
				return api.getJSON(ctx, http.MethodGet, path, &rep)
			}, func(r *repo) error {
				var only peer.ID
				if c.Args().Len() == 1 {
					only = onlyPeer
				}
				if _, _, err := r.store.ExchangeKeys(); errors.Is(err, peerstore.ErrNotFound) {
					// No node ever ran here: no exchange key, no exchange.
					rep = keysReply{Peers: []peerKeyset{}}
					if only != "" {
						return fmt.Errorf("no keys with %s: no exchange with it yet", only)
					}
					return nil
				}
				k, err := keysOf(r.store, only) // api_more.go
				if err == nil {
					rep = *k
				}
				return err
			})
			if err != nil && strings.HasSuffix(err.Error(), "no exchange with it yet") {
				// The same words on both paths, and what to do, with the
				// user's --repo.
				return &lineError{fmt.Sprintf("%s: run \"p2pkex exchange%s %s\" first", err, repoArg(c), onlyPeer), err}
			}
			if err != nil {
				return err
			}
			w := c.Root().Writer
			if c.Bool("json") {
				return printJSON(w, rep)
			}
			ts := func(t time.Time) string { return t.Local().Format(time.RFC3339) }
			if rep.Own.Seq == 0 {
				fmt.Fprintln(w, "exchange key (none yet: made when a node first runs on the repo)")
			} else {
				fmt.Fprintf(w, "exchange key %s  seq %d  created %s\n", rep.Own.Fingerprint, rep.Own.Seq, ts(rep.Own.Created))
			}
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
			fmt.Fprintf(w, "connected     %s\n", plural(st.ConnectedPeers, "peer"))
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
