package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
	"github.com/p2pkex/p2pkex/peerstore"
)

// Commands that talk to a running daemon: connect and status only through
// it; peers and keys read the repo when no daemon runs (backend.go).

// connectJSON is connect --json's output: the daemon's reply with
// trust_events always present (an empty list rather than absent).
type connectJSON struct {
	Peer         string           `json:"peer"`
	Addr         string           `json:"addr"`
	SpeaksP2PKEX bool             `json:"p2pkex"`
	TrustEvents  []api.TrustEvent `json:"trust_events"`
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
			// The peers are printed as they are read (a daemon or the store
			// may know 100,000; docs/performance/store.md, "Listing the
			// known peers"), through one buffer: the JSON list as it comes;
			// the table once all are read, as its columns must be as wide as
			// their widest cell. A failure part-way through the JSON leaves
			// a list with no closing "]" and the command fails.
			w := bufio.NewWriterSize(c.Root().Writer, 64<<10)
			var out peerPrinter = &peerTable{w: w}
			if c.Bool("json") {
				out = &peerJSON{w: w}
			}
			_, err := viaDaemonOr(c, func(d *client.Client) (struct{}, error) {
				return struct{}{}, d.EachPeer(ctx, out.add)
			}, func(r *repo) (struct{}, error) {
				// No config is needed to read the store, but a broken one
				// is reported here as on every other path.
				if _, err := loadConfig(r.dir); err != nil {
					return struct{}{}, err
				}
				return struct{}{}, server.EachKnownPeer(r.store, out.add)
			})
			if err != nil {
				return err
			}
			return out.end()
		},
	}
}

// peerPrinter prints the lines of peers: add for each peer, in order,
// then end once.
type peerPrinter interface {
	add(api.Peer) error
	end() error
}

// peerJSON prints the peers as printJSON prints their list, byte for
// byte, one element at a time.
type peerJSON struct {
	w *bufio.Writer
	n int
}

func (j *peerJSON) add(p api.Peer) error {
	b, err := json.MarshalIndent(p, "  ", "  ")
	if err != nil {
		return err
	}
	if j.n == 0 {
		j.w.WriteString("[\n  ")
	} else {
		j.w.WriteString(",\n  ")
	}
	j.n++
	_, err = j.w.Write(b)
	return err
}

func (j *peerJSON) end() error {
	if j.n == 0 {
		j.w.WriteString("[]\n")
	} else {
		j.w.WriteString("\n]\n")
	}
	return j.w.Flush()
}

// peerTable prints the peers as a table, one line each, at end: as
// text/tabwriter did (columns as wide as their widest cell, padded by two
// spaces; the last column not padded), holding only the lines' text,
// where tabwriter held a record of every cell besides. The text is held
// in chunks: one slice grown to the size of 100,000 lines (14 MB) was
// copied at each doubling, in copies the garbage collector cannot
// interrupt (a third of the listing's CPU, with the collector's spinning
// while it waited on them).
type peerTable struct {
	w      *bufio.Writer
	chunks [][]byte // the lines, cells separated by tabs, each ended by a newline; no line split between chunks
	width  [6]int   // the widest cell of each column but the last, in runes
	rows   int      // lines held, with the heading
}

// peerCols is the table's heading.
var peerCols = [...]string{"PEER", "CONNECTED", "DISCOVERED", "TRUST", "EPOCH", "SUITE", "LAST EXCHANGE"}

// tablePadding is what separates the columns (tabwriter's padding).
const tablePadding = 2

// tableChunk is the size of a chunk of peerTable's text.
const tableChunk = 64 << 10

// row holds one line of len(peerCols) cells, none holding a tab or newline.
func (t *peerTable) row(cells ...string) {
	n := len(cells) // the separators and the newline
	for _, c := range cells {
		n += len(c)
	}
	if k := len(t.chunks); k == 0 || len(t.chunks[k-1])+n > cap(t.chunks[k-1]) {
		t.chunks = append(t.chunks, make([]byte, 0, max(tableChunk, n)))
	}
	b := t.chunks[len(t.chunks)-1]
	for i, c := range cells {
		if i > 0 {
			b = append(b, '\t')
		}
		b = append(b, c...)
		if i < len(t.width) {
			t.width[i] = max(t.width[i], utf8.RuneCountInString(c))
		}
	}
	t.chunks[len(t.chunks)-1] = append(b, '\n')
	t.rows++
}

func (t *peerTable) add(p api.Peer) error {
	if t.rows == 0 {
		t.row(peerCols[:]...)
	}
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
		epoch = strconv.FormatUint(p.Epoch, 10)
		last = p.LastExchange.Local().Format(time.RFC3339)
	}
	if p.Suite != "" {
		suite = suiteLabel(p.Suite)
	}
	t.row(p.Peer, conn, disc, p.Trust, epoch, suite, last)
	return nil
}

func (t *peerTable) end() error {
	if t.rows == 0 {
		fmt.Fprintln(t.w, "no peers")
		return t.w.Flush()
	}
	var spaces [64]byte
	for i := range spaces {
		spaces[i] = ' '
	}
	for _, rest := range t.chunks {
		for len(rest) > 0 {
			line, after, _ := bytes.Cut(rest, []byte{'\n'})
			rest = after
			for i := range t.width {
				cell, more, _ := bytes.Cut(line, []byte{'\t'})
				line = more
				t.w.Write(cell)
				for pad := t.width[i] + tablePadding - utf8.RuneCount(cell); pad > 0; pad -= len(spaces) {
					t.w.Write(spaces[:min(pad, len(spaces))])
				}
			}
			t.w.Write(line)
			if err := t.w.WriteByte('\n'); err != nil {
				return err
			}
		}
	}
	return t.w.Flush()
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
			pi, err := server.ParsePeerAddr(c.Args().First())
			if err != nil {
				return err
			}
			if len(pi.Addrs) == 0 {
				return usagef("connect: multiaddr %q needs an address before /p2p/<peer ID>", c.Args().First())
			}
			if err := notSelf(c, pi.ID); err != nil { // repo.go
				return err
			}
			d, err := needDaemon(c) // backend.go
			if err != nil {
				return err
			}
			defer d.Close()
			ctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
			defer cancel()
			rep, err := d.Connect(ctx, c.Args().First())
			if err != nil {
				printTrust(c.Root().ErrWriter, withNext(c, apiTrustEvents(err))) // trustevents.go
				return err
			}
			rep.TrustEvents = withNext(c, rep.TrustEvents)
			printTrust(c.Root().ErrWriter, rep.TrustEvents)
			if c.Bool("json") {
				if rep.TrustEvents == nil {
					rep.TrustEvents = []api.TrustEvent{}
				}
				return printJSON(c.Root().Writer, connectJSON(*rep))
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
			only, err := optionalPeer(c)
			if err != nil {
				return err
			}
			rep, err := viaDaemonOr(c, func(d *client.Client) (*api.Keys, error) {
				if only == "" {
					return d.Keys(ctx, "")
				}
				return d.Keys(ctx, only.String())
			}, func(r *repo) (*api.Keys, error) {
				if _, err := loadConfig(r.dir); err != nil {
					return nil, err
				}
				if _, _, err := r.store.ExchangeKeys(); errors.Is(err, peerstore.ErrNotFound) {
					// No node ever ran here: no exchange key, no exchange.
					if only != "" {
						return nil, fmt.Errorf("no keys with %s: no exchange with it yet", only)
					}
					return &api.Keys{Peers: []api.PeerKeys{}}, nil
				}
				return server.KeysOf(r.store, only)
			})
			if err != nil && strings.HasSuffix(err.Error(), "no exchange with it yet") {
				// The same words on both paths, and what to do, with the
				// user's --repo.
				return &lineError{fmt.Sprintf("%s: run \"p2pkex exchange%s %s\" first", err, repoArg(c), only), err}
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
			d, err := needDaemon(c) // backend.go
			if err != nil {
				return err
			}
			defer d.Close()
			st, err := d.Status(ctx)
			if err != nil {
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

// optionalPeer is the command's optional PEER argument (a peer ID or a
// multiaddr ending in /p2p/<peer ID>), or "".
func optionalPeer(c *cli.Command) (peer.ID, error) {
	if c.Args().Len() == 0 {
		return "", nil
	}
	return server.ParsePeerID(c.Args().First())
}
