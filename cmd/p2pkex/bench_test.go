package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestBench runs a short load through the command line: flags to
// bench.Config, the summary as JSON on stdout, progress on stderr. The
// load itself is tested in package bench.
func TestBench(t *testing.T) {
	var out, errOut strings.Builder
	args := []string{"p2pkex", "bench", "--count", "20", "--concurrency", "2", "--latency", "0",
		"--store", "memory", "--keys", "both", "--suite", "X25519", "--notice-size", "512"}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out.String())
	}
	for field, want := range map[string]any{"exchanges": 20.0, "failures": 0.0, "concurrency": 2.0, "peers": 2.0,
		"store": "memory", "keys": "both", "suite": "DHKEM(X25519)", "notice_size": 512.0, "streams": "kept"} {
		if sum[field] != want {
			t.Errorf("%s: %v, want %v (%v)", field, sum[field], want, sum["failure_sample"])
		}
	}
	if !strings.Contains(errOut.String(), "bench: load") {
		t.Errorf("no progress on stderr:\n%s", errOut.String())
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--peers", "2", "--concurrency", "4"},
		{"bench", "--count", "10", "--duration", "1s"},
		{"bench", "--duration", "0s"},
		{"bench", "--keys", "some"},
		{"bench", "--suite", "RSA"},
		{"bench", "--notice-size", "12"},
		{"bench", "--concurrency", "0"},
		{"bench", "--store", "disk"},
		{"bench", "--runs", "0"},
		{"bench", "--transport", "udp"},
		{"bench", "--compare", "tcp/noise,quic", "--security", "tls"},
		{"bench", "--compare", "quic/noise"},
		{"bench", "--muxer", "mplex"},
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
