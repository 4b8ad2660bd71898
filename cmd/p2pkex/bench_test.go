package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestBench runs a short load and checks the summary's fields and that no
// exchange failed. It asserts nothing about time: figures on a shared CI
// machine say little, and docs/PERFORMANCE.md records measured ones.
func TestBench(t *testing.T) {
	var out, errOut strings.Builder
	args := []string{"p2pkex", "bench", "--count", "50", "--concurrency", "4"}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out.String())
	}
	for _, field := range []string{
		"exchanges", "failures", "exchanges_per_s", "p50_ms", "p99_ms",
		"cpu_s_per_exchange", "floor_cpu_s_per_exchange", "ratio_cpu_vs_floor",
		"noise_handshake_s", "ratio_vs_noise", "heap_bytes_per_inflight",
		"rtts_known_keys", "rtts_both_keys", "ratio_cpu_vs_floor_in_load", "ratio_rate_vs_floor_in_load",
	} {
		if _, ok := sum[field].(float64); !ok {
			t.Errorf("summary lacks numeric field %q", field)
		}
	}
	if sum["failures"] != 0.0 {
		t.Errorf("failures: %v (%v)", sum["failures"], sum["failure_sample"])
	}
	if sum["streams"] != "kept" {
		t.Errorf("streams: %v, want kept", sum["streams"])
	}
	if sum["store"] != "bolt" {
		t.Errorf("store: %v, want bolt (the default)", sum["store"])
	}
	if sum["exchanges"] != 50.0 {
		t.Errorf("exchanges: %v, want 50", sum["exchanges"])
	}
	if !strings.Contains(errOut.String(), "bench: load") {
		t.Errorf("no progress on stderr:\n%s", errOut.String())
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--peers", "2", "--concurrency", "4"},
		{"bench", "--count", "10", "--duration", "1s"},
		{"bench", "--keys", "some"},
		{"bench", "--suite", "RSA"},
		{"bench", "--notice-size", "12"},
		{"bench", "--concurrency", "0"},
		{"bench", "--store", "disk"},
		{"bench", "--runs", "0"},
		{"bench", "--keys", "both", "--peers", "8", "--concurrency", "4", "--count", "5"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), append([]string{"p2pkex"}, args...), &out, &errOut)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, errOut.String())
			}
			if msg := errOut.String(); strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "p2pkex: ") {
				t.Fatalf("want one line starting with \"p2pkex: \", got %q", msg)
			}
		})
	}
}

// TestBenchStores runs the load on each store, alternating, and checks that
// the summary gives each run with its store, the medians and the ratio.
func TestBenchStores(t *testing.T) {
	var out, errOut strings.Builder
	args := []string{"p2pkex", "bench", "--quiet", "--count", "30", "--concurrency", "4", "--latency", "0", "--store", "both"}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var sum struct {
		Runs []struct {
			Store     string  `json:"store"`
			Exchanges int     `json:"exchanges"`
			Failures  int     `json:"failures"`
			Rate      float64 `json:"exchanges_per_s"`
		} `json:"runs"`
		Medians map[string]struct {
			Runs int `json:"runs"`
		} `json:"medians"`
		Ratio float64 `json:"ratio_rate_bolt_vs_memory"`
	}
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, out.String())
	}
	if len(sum.Runs) != 2 || sum.Runs[0].Store != "bolt" || sum.Runs[1].Store != "memory" {
		t.Fatalf("runs: %+v, want bolt then memory", sum.Runs)
	}
	for _, r := range sum.Runs {
		if r.Exchanges != 30 || r.Failures != 0 || r.Rate <= 0 {
			t.Errorf("run %+v: want 30 exchanges, no failure", r)
		}
	}
	if sum.Medians["bolt"].Runs != 1 || sum.Medians["memory"].Runs != 1 || sum.Ratio <= 0 {
		t.Errorf("medians %+v, ratio %v", sum.Medians, sum.Ratio)
	}
}

// TestBenchFirstContacts runs first contacts from new identities against
// a responder on bbolt and checks that each stored a new peer.
func TestBenchFirstContacts(t *testing.T) {
	var out, errOut strings.Builder
	args := []string{"p2pkex", "bench", "--quiet", "--keys", "both", "--peers", "12", "--concurrency", "4", "--latency", "0"}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out.String())
	}
	for field, want := range map[string]float64{"fresh_identities": 12, "exchanges": 12, "known_peers": 12, "failures": 0} {
		if sum[field] != want {
			t.Errorf("%s: %v, want %v (%v)", field, sum[field], want, sum["failure_sample"])
		}
	}
	if _, ok := sum["heap_bytes_per_known_peer"].(float64); !ok { // may be below zero with a dozen peers
		t.Errorf("no heap_bytes_per_known_peer")
	}
	for _, field := range []string{"store_bytes_per_known_peer", "peer_lookup_p99_us",
		"store_open_ms", "ratio_cpu_vs_floor_in_load", "cpu_s_per_first_contact_all"} {
		if v, ok := sum[field].(float64); !ok || v <= 0 {
			t.Errorf("%s: %v, want a positive number", field, sum[field])
		}
	}
}
