package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/bench"
	"github.com/p2pkex/p2pkex/internal/procs"
	"github.com/p2pkex/p2pkex/protocol"
)

// benchCommand is "p2pkex bench": flags to a bench.Config, bench.Run (or
// RunSeries), the summary as JSON on stdout. The load generator itself is
// package bench.
func benchCommand() *cli.Command {
	def := bench.DefaultConfig()
	return &cli.Command{
		Name:  "bench",
		Usage: "measure exchanges under load against the crypto floor and a Noise handshake",
		Description: `One responder node and --peers initiator nodes run in this process on
127.0.0.1, with --concurrency exchanges in flight, for --count exchanges or
for --duration. The same run also measures, in this process:
  - the crypto floor of one exchange (seal, sign, verify and open, both
    sides), before and after the load, and again beside it;
  - libp2p Noise XX handshakes over loopback TCP, before and after the load;
  - exchanges one at a time on an existing connection, each followed by a
    Noise XX handshake, and libp2p pings;
  - null exchanges under the same load: the writes and reads of one of
    the load's exchanges replayed with frames of the same sizes, on kept
    streams or new ones as the exchanges use (first contacts and
    --new-streams open one each), without the exchange: what the stream
    costs. The floor plus them is the least an exchange can cost over
    libp2p here (ratio_floor_plus_null_vs_floor_in_load), and the rest is
    the exchange's own (ratio_own_vs_floor_in_load);
  - the heap per exchange in flight, with the exchanges brought to rest;
  - on a go-libp2p mocknet with --latency per direction, the round trips of
    an exchange with both records known and with both sent.
A progress line goes to stderr every second; a JSON summary goes to stdout.
docs/PERFORMANCE.md explains every field.

The responder stores on bbolt, as the daemon does (peerstore.OpenBolt with
the daemon's settings, in a temporary directory removed at the end), unless
--store memory (the initiators, standing for daemons on other machines with
disks of their own, store in memory); --store both runs the load on each in turn, alternating,
--runs times each, and prints the medians and the ratio of the two rates.
With --keys both and --peers above --concurrency, every exchange is a first
contact from a new identity: --peers identities, made before the timed part,
one exchange each against the one responder.
Every node listens on 127.0.0.1 only. The hosts are
built with the options node.New uses for its own (node.HostOptions: libp2p's
defaults, libp2p's metrics off); --transport, --security and --muxer choose
what the connections run on (default TCP with yamux, and TLS 1.3, libp2p's
first choice); --compare runs several such setups in turn, alternating, and
prints the medians of each. The responder runs with the resource manager's limits lifted and
its inbound-exchange limits (total, and per origin: every initiator is on
127.0.0.1) raised to twice the concurrency, so that the load
measures the exchange, not the limits.

Examples:
  p2pkex bench
  p2pkex bench --concurrency 64 --count 10000
  p2pkex bench --concurrency 64 --count 6000 --store both --runs 3
  p2pkex bench --concurrency 64 --count 3000 --store memory --runs 3 --compare tcp/tls,tcp/noise,quic
  p2pkex bench --keys both --peers 10000 --concurrency 64
  p2pkex bench --peers 1000 --concurrency 1000 --count 10000 --latency 0
  p2pkex bench --duration 30s --suite X25519 --cpuprofile cpu.out`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "peers", Usage: "initiator nodes (default: the concurrency; at least the concurrency)"},
			&cli.IntFlag{Name: "concurrency", Aliases: []string{"c"}, Value: def.Concurrency, Usage: "exchanges in flight"},
			&cli.IntFlag{Name: "count", Value: def.Count, Usage: "exchanges to run (not with --duration)"},
			&cli.DurationFlag{Name: "duration", Usage: "run for this long instead of --count"},
			&cli.StringFlag{Name: "suite", Value: def.Suite.String(), Usage: "suite: MLKEM768X25519 or X25519"},
			&cli.IntFlag{Name: "notice-size", Value: def.NoticeSize, Usage: "largest notice in bytes (128 to 65536)"},
			&cli.StringFlag{Name: "keys", Value: "known", Usage: "under load, `MODE`: known (records known, phase 2 empty) or both (both sides send their records: first contacts with --peers above --concurrency)"},
			&cli.StringFlag{Name: "security", Usage: "secure channel of the load's connections: `tls` or noise (default: libp2p's choice, TLS 1.3 then Noise)"},
			&cli.StringFlag{Name: "transport", Value: def.Transport, Usage: "transport of the load's connections: `tcp` (with yamux) or quic"},
			&cli.StringFlag{Name: "muxer", Usage: "with tcp: `yamux` (libp2p's) or yamux-readbuf (yamux reading through a 4 KiB buffer)"},
			&cli.StringSliceFlag{Name: "compare", Usage: "connection setups to run in turn, --runs times each, as `TRANSPORT[/SECURITY[/MUXER]]`, comma-separated (tcp/tls,tcp/noise,quic); instead of --transport, --security and --muxer"},
			&cli.BoolFlag{Name: "new-streams", Usage: "open a new stream for every exchange instead of keeping the stream of the last exchange with the peer (node.WithStreamIdleTimeout(0))"},
			&cli.DurationFlag{Name: "latency", Value: def.Latency, Usage: "mocknet link latency per direction for the round-trip count; 0 skips it"},
			&cli.IntFlag{Name: "rtt-samples", Value: def.RTTSamples, Usage: "exchanges timed on mocknet, per case"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the load phase to `FILE` (FILE.1, FILE.2, ... with several runs)"},
			&cli.StringFlag{Name: "cpuprofile-exchanges", Usage: "first contacts: write a CPU profile of each timed group of exchanges to `DIR` (no hosts, connections or closes; merge with go tool pprof -proto)"},
			&cli.StringFlag{Name: "memprofile", Usage: "write heap profiles of the exchanges in flight to `FILE` and of the baseline to FILE.base"},
			&cli.StringFlag{Name: "store", Value: def.Store, Usage: "store of every node: `bolt` (as the daemon's, in a temporary directory), memory, or both (alternating runs)"},
			&cli.IntFlag{Name: "runs", Value: def.Runs, Usage: "runs of the load per store, alternating stores; the summary gives each run and the medians"},
			&cli.BoolFlag{Name: "quiet", Usage: "no progress line"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			procs.Raise() // as the daemon runs (internal/procs)
			cfg, err := benchConfigFrom(c)
			if err != nil {
				return err
			}
			var progress io.Writer = c.Root().ErrWriter
			if c.Bool("quiet") {
				progress = io.Discard
			}
			var out any
			if cfg.Series() {
				out, err = bench.RunSeries(ctx, cfg, progress)
			} else {
				out, err = bench.Run(ctx, cfg, progress)
			}
			if err != nil {
				return benchError(err)
			}
			enc := json.NewEncoder(c.Root().Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}

// benchConfigFrom reads the flags into a validated bench.Config. The rules
// that are about which flags were given live here; the rest in
// bench.Config.Validate.
func benchConfigFrom(c *cli.Command) (bench.Config, error) {
	cfg := bench.Config{
		Peers:               c.Int("peers"),
		Concurrency:         c.Int("concurrency"),
		Count:               c.Int("count"),
		Duration:            c.Duration("duration"),
		NoticeSize:          c.Int("notice-size"),
		Security:            c.String("security"),
		Transport:           c.String("transport"),
		Muxer:               c.String("muxer"),
		Setups:              c.StringSlice("compare"),
		NewStreams:          c.Bool("new-streams"),
		Latency:             c.Duration("latency"),
		RTTSamples:          c.Int("rtt-samples"),
		CPUProfile:          c.String("cpuprofile"),
		CPUProfileExchanges: c.String("cpuprofile-exchanges"),
		MemProfile:          c.String("memprofile"),
		Store:               c.String("store"),
		Runs:                c.Int("runs"),
	}
	var err error
	if cfg.Suite, err = protocol.ParseSuite(c.String("suite")); err != nil {
		return cfg, usageError{err.Error()}
	}
	switch c.String("keys") {
	case "known":
	case "both":
		cfg.BothKeys = true
	default:
		return cfg, usagef("--keys %q: want known or both", c.String("keys"))
	}
	if c.IsSet("duration") && cfg.Duration <= 0 {
		return cfg, usagef("--duration must be positive")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, benchError(err)
	}
	if cfg.Fresh() && (c.IsSet("count") || c.IsSet("duration")) {
		return cfg, usagef("with --keys both and --peers above --concurrency every identity makes one exchange: give no --count or --duration")
	}
	if c.IsSet("compare") && (c.IsSet("transport") || c.IsSet("security") || c.IsSet("muxer")) {
		return cfg, usagef("--compare names the transport, security and muxer of each run: not with --transport, --security or --muxer")
	}
	if c.IsSet("duration") && c.IsSet("count") {
		return cfg, usagef("give --count or --duration, not both")
	}
	return cfg, nil
}

// benchError makes a bench.ConfigError a usage error (exit 2).
func benchError(err error) error {
	if ce, ok := errors.AsType[*bench.ConfigError](err); ok {
		return usageError{ce.Msg}
	}
	return err
}
