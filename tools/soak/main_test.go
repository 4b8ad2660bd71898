package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"262144": 262144, "256KiB": 256 << 10, "1MiB": 1 << 20, "1.5MB": 3 << 19, "64K": 64 << 10, "10B": 10} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "lots"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestSummariseAndJudge(t *testing.T) {
	var pts []point
	for i := range 5 {
		pts = append(pts, point{Pairs: 1000 * i, Receiver: stats{Goroutines: 29, OpenFiles: 12, StoreBytes: 65536}})
		pts[i].Receiver.Live = uint64(1<<20 + 500*1000*i) // 500 B per pair
	}
	tr := summarise(pts, func(p point) stats { return p.Receiver })
	if tr.HeapLiveGrowth != 2_000_000 || math.Abs(tr.HeapLiveSlope-500) > 1e-9 || tr.BaselinePairs != 0 || tr.FinalPairs != 4000 {
		t.Errorf("summary %+v", tr)
	}
	r := &report{Receiver: tr}
	r.judge(1 << 20)
	if r.Pass {
		t.Errorf("2 MB of growth passed a 1 MiB bound: %s", r.Verdict)
	}
	r = &report{Receiver: tr}
	r.judge(0)
	if !r.Pass {
		t.Errorf("no bound, no failure, yet: %s", r.Verdict)
	}
	r = &report{Receiver: tr, MessageFailures: 1, FirstError: "message: x"}
	r.judge(0)
	if r.Pass {
		t.Error("a failed message passed")
	}
	if slope([]float64{1, 1}, []float64{2, 3}) != 0 {
		t.Error("slope without spread in x")
	}
}

// TestReceiver runs the receiver side in this process, on pipes, and a
// sender node against it: the receiver answers stats and profile commands
// and counts the messages it received.
func TestReceiver(t *testing.T) {
	dir := t.TempDir()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runReceiver(context.Background(), filepath.Join(dir, "receiver"), inR, outW)
		outW.Close()
	}()
	out := bufio.NewScanner(outR)
	read := func(v any) {
		t.Helper()
		if !out.Scan() {
			t.Fatalf("receiver output ended: %v", out.Err())
		}
		if err := json.Unmarshal(out.Bytes(), v); err != nil {
			t.Fatalf("%q: %v", out.Text(), err)
		}
	}
	var hello struct{ Addrs []string }
	read(&hello)
	var addrs []ma.Multiaddr
	for _, a := range hello.Addrs {
		addrs = append(addrs, ma.StringCast(a))
	}
	ai, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil || len(ai) != 1 {
		t.Fatalf("addresses %v: %v", hello.Addrs, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, store, err := openNode(ctx, filepath.Join(dir, "sender"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	defer n.Close()
	if err := n.Connect(ctx, ai[0]); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := n.Exchange(ctx, ai[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := n.Send(ctx, ai[0].ID, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}

	fmt.Fprintln(inW, "stats")
	var s stats
	read(&s)
	if s.Received != 3 || s.Live == 0 || s.Goroutines == 0 || s.StoreBytes <= 0 {
		t.Errorf("stats %+v", s)
	}
	prof := filepath.Join(dir, "heap.pb.gz")
	fmt.Fprintln(inW, "profile "+prof)
	var ok string
	read(&ok)
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 || ok != "ok" {
		t.Errorf("profile: %q, %v", ok, err)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Errorf("receiver: %v", err)
	}
}
