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
