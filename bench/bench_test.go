package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pkex/p2pkex/protocol"
)

// summaryFields decodes v's JSON form into a map: the field names are what
// tools/chart, tools/perf and docs/PERFORMANCE.md read.
func summaryFields(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRun runs a short load and checks the summary's fields and that no
// exchange failed. It asserts nothing about time: figures on a shared CI
// machine say little, and docs/PERFORMANCE.md records measured ones.
func TestRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Count, cfg.Concurrency = 50, 4
	var progress strings.Builder
	res, err := Run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	sum := summaryFields(t, res)
	for _, field := range []string{
		"exchanges", "failures", "exchanges_per_s", "p50_ms", "p99_ms",
		"cpu_s_per_exchange", "floor_cpu_s_per_exchange", "ratio_cpu_vs_floor",
		"noise_handshake_s", "ratio_vs_noise", "heap_bytes_per_inflight",
		"rtts_known_keys", "rtts_both_keys", "ratio_cpu_vs_floor_in_load", "ratio_rate_vs_floor_in_load",
		// what tools/chart reads
		"concurrency", "floor_rate_per_s", "gomaxprocs",
	} {
		if _, ok := sum[field].(float64); !ok {
			t.Errorf("summary lacks numeric field %q", field)
		}
	}
	if sum["failures"] != 0.0 {
		t.Errorf("failures: %v (%v)", sum["failures"], sum["failure_sample"])
	}
	for field, want := range map[string]string{"streams": "kept", "store": "bolt", "keys": "known", "suite": "MLKEM768X25519"} {
		if sum[field] != want {
			t.Errorf("%s: %v, want %s", field, sum[field], want)
		}
	}
	if sum["exchanges"] != 50.0 {
		t.Errorf("exchanges: %v, want 50", sum["exchanges"])
	}
	// The null exchanges replay the load's: six writes on kept streams.
	for field, want := range map[string]any{"null_streams": "kept", "null_writes_per_exchange": 6.0} {
		if sum[field] != want {
			t.Errorf("%s: %v, want %v", field, sum[field], want)
		}
	}
	if b, _ := sum["ratio_floor_plus_null_vs_floor_in_load"].(float64); b <= 1 {
		t.Errorf("ratio_floor_plus_null_vs_floor_in_load: %v, want above 1", sum["ratio_floor_plus_null_vs_floor_in_load"])
	}
	if _, ok := sum["ratio_own_vs_floor_in_load"].(float64); !ok {
		t.Errorf("no ratio_own_vs_floor_in_load")
	}
	// Admission's Lookup for every exchange; the machine's own only for
	// one that follows no commit in flight (node.serve).
	if r, _ := sum["store_reads_per_exchange"].(float64); r < 1 || r > 2 {
		t.Errorf("store_reads_per_exchange: %v, want 1 to 2", sum["store_reads_per_exchange"])
	}
	if !strings.Contains(progress.String(), "bench: load") {
		t.Errorf("no progress:\n%s", progress.String())
	}
}

func TestConfigErrors(t *testing.T) {
	for name, change := range map[string]func(*Config){
		"peers below concurrency": func(c *Config) { c.Peers, c.Concurrency = 2, 4 },
		"unknown suite":           func(c *Config) { c.Suite = protocol.Suite(99) },
		"small notice":            func(c *Config) { c.NoticeSize = 12 },
		"no concurrency":          func(c *Config) { c.Concurrency = 0 },
		"unknown store":           func(c *Config) { c.Store = "disk" },
		"no runs":                 func(c *Config) { c.Runs = 0 },
		"unknown security":        func(c *Config) { c.Security = "ssl" },
		"unknown transport":       func(c *Config) { c.Transport = "udp" },
		"no count":                func(c *Config) { c.Count = 0 },
		"negative duration":       func(c *Config) { c.Duration = -time.Second },
		"negative latency":        func(c *Config) { c.Latency = -time.Second },
		"unknown muxer":           func(c *Config) { c.Muxer = "mplex" },
		"muxer on quic":           func(c *Config) { c.Transport, c.Muxer = "quic", "yamux" },
		"noise on quic":           func(c *Config) { c.Setups = []string{"tcp/tls", "quic/noise"} },
		"empty setup":             func(c *Config) { c.Setups = []string{""} },
		"long setup":              func(c *Config) { c.Setups = []string{"tcp/tls/yamux/x"} },
		"exchange profiles without first contacts": func(c *Config) { c.CPUProfileExchanges = "x" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			change(&cfg)
			_, err := Run(context.Background(), cfg, io.Discard)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(ce.Msg, "--") {
				t.Fatalf("got %v, want a ConfigError naming the flag", err)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.Store = "both"
	if _, err := Run(context.Background(), cfg, io.Discard); err == nil {
		t.Errorf("Run with both stores: no error, want one pointing at RunSeries")
	}
	cfg = DefaultConfig()
	cfg.BothKeys, cfg.Peers, cfg.Concurrency, cfg.Count = true, 8, 4, 3
	if err := cfg.Validate(); err != nil || !cfg.Fresh() || cfg.Count != 8 {
		t.Errorf("first contacts: err %v, fresh %v, count %d; want nil, true, 8 (one per identity)", err, cfg.Fresh(), cfg.Count)
	}
}

// TestRunSeries runs the load on each store, alternating, and checks that
// the summary gives each run with its store, the medians and the ratio.
func TestRunSeries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Count, cfg.Concurrency, cfg.Latency, cfg.Store = 30, 4, 0, "both"
	res, err := RunSeries(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 || res.Runs[0].Store != "bolt" || res.Runs[1].Store != "memory" {
		t.Fatalf("runs: %+v, want bolt then memory", res.Runs)
	}
	for _, r := range res.Runs {
		if r.Exchanges != 30 || r.Failures != 0 || r.ExchangesPerS <= 0 {
			t.Errorf("run %+v: want 30 exchanges, no failure", r)
		}
	}
	if res.Medians["bolt"].Runs != 1 || res.Medians["memory"].Runs != 1 || res.RatioRateBoltVsMemory <= 0 {
		t.Errorf("medians %+v, ratio %v", res.Medians, res.RatioRateBoltVsMemory)
	}
	sum := summaryFields(t, res)
	for _, field := range []string{"runs", "medians", "ratio_rate_bolt_vs_memory"} {
		if _, ok := sum[field]; !ok {
			t.Errorf("summary lacks %q", field)
		}
	}
}

// TestRunFirstContacts runs first contacts from new identities against a
// responder on bbolt and checks that each stored a new peer.
func TestRunFirstContacts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BothKeys, cfg.Peers, cfg.Concurrency, cfg.Latency = true, 12, 4, 0
	cfg.CPUProfileExchanges = filepath.Join(t.TempDir(), "prof")
	res, err := Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// One profile per timed group of exchanges: identities 0-3, 4-7, 8-11.
	for _, name := range []string{"000000.prof", "000004.prof", "000008.prof"} {
		if fi, err := os.Stat(filepath.Join(cfg.CPUProfileExchanges, name)); err != nil || fi.Size() == 0 {
			t.Errorf("profile of the exchanges %s: %v", name, err)
		}
	}
	sum := summaryFields(t, res)
	for field, want := range map[string]float64{"fresh_identities": 12, "exchanges": 12, "known_peers": 12, "failures": 0} {
		if sum[field] != want {
			t.Errorf("%s: %v, want %v (%v)", field, sum[field], want, sum["failure_sample"])
		}
	}
	// The null first contacts replay a first contact's writes on a new
	// stream each; the scout that recorded them is forgotten (known_peers
	// above).
	for field, want := range map[string]any{"null_streams": "new", "null_exchanges": 12.0} {
		if sum[field] != want {
			t.Errorf("%s: %v, want %v", field, sum[field], want)
		}
	}
	if w, _ := sum["null_writes_per_exchange"].(float64); w < 8 {
		t.Errorf("null_writes_per_exchange: %v, want at least 8 (phase 2's flights)", sum["null_writes_per_exchange"])
	}
	if _, ok := sum["heap_bytes_per_known_peer"].(float64); !ok { // may be below zero with a dozen peers
		t.Errorf("no heap_bytes_per_known_peer")
	}
	for _, field := range []string{"store_bytes_per_known_peer", "peer_lookup_p99_us", "state_lookup_p99_us",
		"store_open_ms", "ratio_cpu_vs_floor_in_load", "cpu_s_per_first_contact_all"} {
		if v, ok := sum[field].(float64); !ok || v <= 0 {
			t.Errorf("%s: %v, want a positive number", field, sum[field])
		}
	}
}

// TestRunSeriesSetups compares connection setups in one series and checks
// that every run says which it is, ran on it, and measured its stream
// (the null exchanges).
func TestRunSeriesSetups(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Count, cfg.Concurrency, cfg.Latency, cfg.Store = 20, 2, 0, "memory"
	cfg.Setups = []string{"tcp/noise", "quic", "tcp/tls/yamux-readbuf"}
	res, err := RunSeries(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{"tcp/noise": {"tcp+/yamux/1.0.0", "/noise"}, "quic": {"quic-v1", "TLS 1.3 (QUIC)"},
		"tcp/tls/yamux-readbuf": {"tcp+/yamux/1.0.0", "/tls/1.0.0"}}
	if len(res.Runs) != len(want) {
		t.Fatalf("%d runs, want %d", len(res.Runs), len(want))
	}
	for _, r := range res.Runs {
		if w, ok := want[r.Setup]; !ok || r.Transport != w[0] || r.Security != w[1] {
			t.Errorf("run %q on %s with %s, want %v", r.Setup, r.Transport, r.Security, w)
		}
		if r.Exchanges != 20 || r.Failures != 0 || r.NullExchanges == 0 {
			t.Errorf("run %q: %d exchanges, %d failures, %d null exchanges", r.Setup, r.Exchanges, r.Failures, r.NullExchanges)
		}
		if m := res.Medians[r.Setup]; m == nil || m.Runs != 1 || m.NullCPUSPerExch[0] <= 0 {
			t.Errorf("medians of %q: %+v", r.Setup, m)
		}
	}
}

// TestRunSeriesFirstContacts runs first contacts twice in a series: each
// run's responder starts from a store of its own (they once shared one, and
// the second run failed on the first one's identity).
func TestRunSeriesFirstContacts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BothKeys, cfg.Peers, cfg.Concurrency, cfg.Latency, cfg.Runs = true, 6, 3, 0, 2
	res, err := RunSeries(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(res.Runs))
	}
	for i, r := range res.Runs {
		if r.KnownPeers != 6 || r.Failures != 0 {
			t.Errorf("run %d: %d known peers, %d failures; want 6, 0", i+1, r.KnownPeers, r.Failures)
		}
	}
}
