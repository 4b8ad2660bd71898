// Command soak runs a pair of p2pkex nodes for a long stretch, exchanges and
// messages interleaved, and reports at intervals what each node holds: its
// heap after a forced collection, goroutines, open files, resident memory
// and the size of its store. It answers the question "does a daemon grow
// with use?" (issue 15, item 6).
//
//	go run ./tools/soak -duration 5m -interval 15s -json soak.json
//
// The pair is two processes, as two daemons are: the sender (this process)
// and the receiver (this program again, started with -role receiver), each
// a node on a bbolt store in its own repo under a temporary directory
// (peerstore.OpenBolt, as the daemon opens it), listening on 127.0.0.1 with
// the node's defaults. The sender runs, one after another, an exchange with
// the receiver (a new epoch) and then one message under it (so every
// message travels in a new epoch); the receiver is the responder of every
// exchange and the recipient of every message. Samples are taken between
// two pairs, when nothing is in flight; the heap figure is the live heap
// after two forced collections (procstat.HeapAfterGC).
//
// The receiver's live heap is compared between the first sample after
// -warmup (the baseline: libp2p's and the node's caches filled) and the
// last; with -max-growth the soak fails (exit 1) when it grew by more.
// It also fails on any failed exchange or message. -profiles DIR writes
// both nodes' heap profiles at the baseline and at the end, to compare with
// "go tool pprof -base DIR/receiver-baseline.pb.gz DIR/receiver-final.pb.gz".
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/internal/procstat"
	"github.com/p2pkex/p2pkex/internal/toolio"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
)

type options struct {
	duration  time.Duration
	interval  time.Duration
	warmup    time.Duration
	msgSize   int
	maxGrowth int64 // bytes; 0: no check
	jsonOut   string
	profiles  string
	dir       string
	quiet     bool
}

func main() {
	var o options
	role := flag.String("role", "sender", "`sender` (runs the soak) or receiver (started by the sender)")
	repo := flag.String("repo", "", "the receiver's repo (with -role receiver)")
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "how long to run exchanges and messages")
	flag.DurationVar(&o.interval, "interval", 15*time.Second, "time between two samples")
	flag.DurationVar(&o.warmup, "warmup", 10*time.Second, "the baseline is the first sample at or after this time")
	flag.IntVar(&o.msgSize, "msg-size", 256, "message size in bytes")
	growth := flag.String("max-growth", "", "fail if the receiver's live heap grows by more than `SIZE` (e.g. 256KiB) from the baseline to the end")
	flag.StringVar(&o.jsonOut, "json", "", "write the report to `FILE` (default stdout)")
	flag.StringVar(&o.profiles, "profiles", "", "write heap profiles of both nodes at the baseline and the end into `DIR`")
	flag.StringVar(&o.dir, "dir", "", "put the repos under `DIR` and keep them (default: a temporary directory, removed)")
	flag.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: soak [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		usage("unexpected argument %q", flag.Arg(0))
	}
	if *growth != "" {
		n, err := parseSize(*growth)
		if err != nil {
			usage("-max-growth: %v", err)
		}
		o.maxGrowth = n
	}
	if o.duration <= 0 || o.interval <= 0 || o.warmup < 0 || o.msgSize < 1 || o.msgSize > node.DefaultMaxMessageSize {
		usage("need -duration > 0, -interval > 0, -warmup >= 0 and 1 <= -msg-size <= %d", node.DefaultMaxMessageSize)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "receiver":
		if *repo == "" {
			usage("-role receiver needs -repo")
		}
		err = runReceiver(ctx, *repo, os.Stdin, os.Stdout)
	case "sender":
		var r *report
		r, err = runSoak(ctx, o)
		if r != nil {
			if werr := toolio.WriteJSON(o.jsonOut, r); werr != nil && err == nil {
				err = werr
			}
			if err == nil && !r.Pass {
				err = errors.New(r.Verdict)
			}
		}
	default:
		usage("-role must be sender or receiver")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
	os.Exit(2)
}

// parseSize reads "262144", "256KiB", "1MiB" or "1.5MB" (MB = MiB here: a
// heap bound, not a disk size).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	var f float64
	if _, err := fmt.Sscanf(t, "%g", &f); err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return int64(f * float64(mult)), nil
}

// stats is one node's sample.
type stats struct {
	procstat.Heap
	Goroutines int   `json:"goroutines"`
	OpenFiles  int   `json:"open_files"`
	RSS        int64 `json:"rss_bytes"`
	StoreBytes int64 `json:"store_bytes"`
	// Received counts the messages the receiver's subscriber took.
	Received int64 `json:"received,omitempty"`
}

func sample(storeDir string) stats {
	return stats{Heap: procstat.HeapAfterGC(), Goroutines: runtime.NumGoroutine(),
		OpenFiles: procstat.OpenFiles(), RSS: procstat.RSS(), StoreBytes: procstat.DirSize(storeDir)}
}

// openNode opens a node on a bbolt store in dir, listening on loopback.
func openNode(ctx context.Context, dir string) (*node.Node, peerstore.Store, error) {
	store, err := peerstore.OpenBolt(dir)
	if err != nil {
		return nil, nil, err
	}
	n, err := node.New(ctx, node.WithStore(store), node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return n, store, nil
}

// runReceiver is the receiver process: it prints its address, then answers
// the sender's commands on in, one line each, until in ends:
//
//	stats            -> one JSON line of stats
//	profile PATH     -> writes a heap profile to PATH, answers "ok"
func runReceiver(ctx context.Context, dir string, in io.Reader, out io.Writer) error {
	n, store, err := openNode(ctx, dir)
	if err != nil {
		return err
	}
	defer store.Close()
	defer n.Close()
	msgs, stopMsgs := n.Messages(0)
	defer stopMsgs()
	var received atomic.Int64
	go func() {
		for range msgs {
			received.Add(1)
		}
	}()
	enc := json.NewEncoder(out)
	var addrs []string
	for _, a := range n.Addrs() {
		addrs = append(addrs, a.String())
	}
	if err := enc.Encode(map[string]any{"addrs": addrs}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "stats":
			s := sample(dir)
			s.Received = received.Load()
			err = enc.Encode(s)
		case "profile":
			err = writeHeapProfile(arg)
			if err == nil {
				_, err = fmt.Fprintln(out, `"ok"`)
			}
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		if err != nil {
			return err
		}
	}
	return sc.Err()
}

// writeHeapProfile writes a heap profile of the live heap now (two
// collections first, so that the profile's last collection is current).
func writeHeapProfile(path string) error {
	runtime.GC()
	runtime.GC()
	return toolio.WriteProfile("heap", path)
}

// receiver is the sender's handle on the receiver process.
type receiver struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startReceiver(dir string) (*receiver, []ma.Multiaddr, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe, "-role", "receiver", "-repo", dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the receiver: %w", err)
	}
	r := &receiver{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	var hello struct {
		Addrs []string `json:"addrs"`
	}
	if err := r.read(&hello); err != nil {
		r.stop()
		return nil, nil, fmt.Errorf("the receiver did not start: %w", err)
	}
	var addrs []ma.Multiaddr
	for _, a := range hello.Addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			r.stop()
			return nil, nil, err
		}
		addrs = append(addrs, m)
	}
	return r, addrs, nil
}

func (r *receiver) read(v any) error {
	if !r.out.Scan() {
		if err := r.out.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(r.out.Bytes(), v)
}

func (r *receiver) call(line string, v any) error {
	if _, err := fmt.Fprintln(r.in, line); err != nil {
		return err
	}
	return r.read(v)
}

// stop ends the receiver: closing its input makes it close its node.
func (r *receiver) stop() error {
	r.in.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		return errors.New("the receiver did not stop; killed")
	}
}

// point is one sample of both nodes.
type point struct {
	T        float64 `json:"t_s"`
	Pairs    int     `json:"pairs"`
	Receiver stats   `json:"receiver"`
	Sender   stats   `json:"sender"`
}

// trend summarises one node's samples from the baseline to the end.
type trend struct {
	HeapLiveBaseline int64 `json:"heap_live_baseline_bytes"`
	HeapLiveFinal    int64 `json:"heap_live_final_bytes"`
	HeapLiveMax      int64 `json:"heap_live_max_bytes"`
	HeapLiveGrowth   int64 `json:"heap_live_growth_bytes"`
	// HeapLiveSlope is the least-squares slope of the live heap against the
	// pairs run, over the samples from the baseline on.
	HeapLiveSlope   float64 `json:"heap_live_slope_bytes_per_pair"`
	HeapInuseGrowth int64   `json:"heap_inuse_growth_bytes"`
	GoroutinesFirst int     `json:"goroutines_baseline"`
	GoroutinesLast  int     `json:"goroutines_final"`
	OpenFilesFirst  int     `json:"open_files_baseline"`
	OpenFilesLast   int     `json:"open_files_final"`
	StoreBytesFirst int64   `json:"store_bytes_baseline"`
	StoreBytesLast  int64   `json:"store_bytes_final"`
	RSSFirst        int64   `json:"rss_bytes_baseline"`
	RSSLast         int64   `json:"rss_bytes_final"`
	BaselinePairs   int     `json:"baseline_pairs"`
	FinalPairs      int     `json:"final_pairs"`
}

type report struct {
	Tool             string    `json:"tool"`
	Start            time.Time `json:"start"`
	GoVersion        string    `json:"go_version"`
	GOMAXPROCS       int       `json:"gomaxprocs"`
	DurationS        float64   `json:"duration_s"`
	IntervalS        float64   `json:"interval_s"`
	WarmupS          float64   `json:"warmup_s"`
	MessageSize      int       `json:"message_size"`
	Pairs            int       `json:"pairs"`
	PairsPerS        float64   `json:"pairs_per_s"`
	ExchangeFailures int       `json:"exchange_failures"`
	MessageFailures  int       `json:"message_failures"`
	FirstError       string    `json:"first_error,omitempty"`
	MessagesReceived int64     `json:"messages_received"`
	Samples          []point   `json:"samples"`
	Receiver         trend     `json:"receiver"`
	Sender           trend     `json:"sender"`
	MaxGrowth        int64     `json:"max_growth_bytes,omitempty"`
	Pass             bool      `json:"pass"`
	Verdict          string    `json:"verdict"`
}

func runSoak(ctx context.Context, o options) (*report, error) {
	dir := o.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "p2pkex-soak-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	recvDir, sendDir := filepath.Join(dir, "receiver"), filepath.Join(dir, "sender")
	if o.profiles != "" {
		if err := os.MkdirAll(o.profiles, 0o755); err != nil {
			return nil, err
		}
	}
	recv, addrs, err := startReceiver(recvDir)
	if err != nil {
		return nil, err
	}
	defer recv.stop()
	ai, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil || len(ai) != 1 {
		return nil, fmt.Errorf("the receiver's addresses %v: %v", addrs, err)
	}
	n, store, err := openNode(ctx, sendDir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	defer n.Close()
	if err := n.Connect(ctx, ai[0]); err != nil {
		return nil, err
	}
	peerID := ai[0].ID

	r := &report{Tool: "soak", Start: time.Now().UTC(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		IntervalS: o.interval.Seconds(), WarmupS: o.warmup.Seconds(), MessageSize: o.msgSize, MaxGrowth: o.maxGrowth}
	msg := make([]byte, o.msgSize)
	start := time.Now()
	baseline := -1
	take := func() error {
		p := point{T: time.Since(start).Seconds(), Pairs: r.Pairs}
		if err := recv.call("stats", &p.Receiver); err != nil {
			return fmt.Errorf("the receiver's stats: %w", err)
		}
		p.Sender = sample(sendDir)
		r.Samples = append(r.Samples, p)
		if !o.quiet {
			fmt.Fprintf(os.Stderr, "t=%5.0fs pairs=%6d  receiver: live %7.0f KiB inuse %7.0f KiB gor %3d files %3d store %5.0f KiB rss %6.1f MiB | sender: live %7.0f KiB gor %3d\n",
				p.T, p.Pairs, kib(p.Receiver.Live), kib(p.Receiver.Inuse), p.Receiver.Goroutines, p.Receiver.OpenFiles,
				float64(p.Receiver.StoreBytes)/1024, float64(p.Receiver.RSS)/(1<<20), kib(p.Sender.Live), p.Sender.Goroutines)
		}
		if baseline < 0 && time.Since(start) >= o.warmup {
			baseline = len(r.Samples) - 1
			return profiles(o.profiles, "baseline", recv)
		}
		return nil
	}
	if err := take(); err != nil {
		return nil, err
	}
	next := start.Add(o.interval)
	deadline := start.Add(o.duration)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if _, err := n.Exchange(ctx, peerID); err != nil {
			r.ExchangeFailures++
			if r.FirstError == "" {
				r.FirstError = "exchange: " + err.Error()
			}
		} else if err := n.Send(ctx, peerID, msg); err != nil {
			r.MessageFailures++
			if r.FirstError == "" {
				r.FirstError = "message: " + err.Error()
			}
		}
		r.Pairs++
		if now := time.Now(); !now.Before(next) {
			for !next.After(now) {
				next = next.Add(o.interval)
			}
			if err := take(); err != nil {
				return nil, err
			}
		}
	}
	elapsed := time.Since(start)
	if err := take(); err != nil {
		return nil, err
	}
	if baseline < 0 || baseline == len(r.Samples)-1 {
		// The run ended before the warm-up: compare with the first sample
		// after the start instead, and say so.
		baseline = min(1, len(r.Samples)-1)
		r.Verdict = "run shorter than the warm-up; baseline is the first sample after the start. "
	}
	if err := profiles(o.profiles, "final", recv); err != nil {
		return nil, err
	}
	r.DurationS = elapsed.Seconds()
	r.PairsPerS = float64(r.Pairs) / elapsed.Seconds()
	last := r.Samples[len(r.Samples)-1]
	r.MessagesReceived = last.Receiver.Received
	r.Receiver = summarise(r.Samples[baseline:], func(p point) stats { return p.Receiver })
	r.Sender = summarise(r.Samples[baseline:], func(p point) stats { return p.Sender })

	r.judge(o.maxGrowth)
	if !o.quiet && r.Pass { // a failure is printed by main
		fmt.Fprintln(os.Stderr, r.Verdict)
	}
	return r, nil
}

// judge sets Pass and the verdict: the soak fails on any failed exchange
// or message, and when the receiver's live heap grew by more than
// maxGrowth bytes (0: no bound) from the baseline to the end.
func (r *report) judge(maxGrowth int64) {
	var problems []string
	if f := r.ExchangeFailures + r.MessageFailures; f > 0 {
		problems = append(problems, fmt.Sprintf("%d failed (%d exchanges, %d messages; first: %s)", f, r.ExchangeFailures, r.MessageFailures, r.FirstError))
	}
	if maxGrowth > 0 && r.Receiver.HeapLiveGrowth > maxGrowth {
		problems = append(problems, fmt.Sprintf("the receiver's live heap grew by %d bytes from the baseline (pair %d) to the end (pair %d), more than the bound %d",
			r.Receiver.HeapLiveGrowth, r.Receiver.BaselinePairs, r.Receiver.FinalPairs, maxGrowth))
	}
	r.Pass = len(problems) == 0
	r.Verdict += fmt.Sprintf("%d pairs in %.0f s (%.0f/s); receiver live heap %+d bytes (%.1f B/pair), goroutines %d -> %d, files %d -> %d, store %d -> %d bytes",
		r.Pairs, r.DurationS, r.PairsPerS, r.Receiver.HeapLiveGrowth, r.Receiver.HeapLiveSlope,
		r.Receiver.GoroutinesFirst, r.Receiver.GoroutinesLast, r.Receiver.OpenFilesFirst, r.Receiver.OpenFilesLast,
		r.Receiver.StoreBytesFirst, r.Receiver.StoreBytesLast)
	if !r.Pass {
		r.Verdict = "FAIL: " + strings.Join(problems, "; ") + ". " + r.Verdict
	}
}

func kib(b uint64) float64 { return float64(b) / 1024 }

// profiles writes the heap profiles of both nodes as DIR/<node>-<tag>.pb.gz.
func profiles(dir, tag string, recv *receiver) error {
	if dir == "" {
		return nil
	}
	var ok string
	if err := recv.call("profile "+filepath.Join(dir, "receiver-"+tag+".pb.gz"), &ok); err != nil {
		return fmt.Errorf("the receiver's heap profile: %w", err)
	}
	return writeHeapProfile(filepath.Join(dir, "sender-"+tag+".pb.gz"))
}

// summarise compares the first and last of pts (from the baseline on).
func summarise(pts []point, of func(point) stats) trend {
	first, last := of(pts[0]), of(pts[len(pts)-1])
	t := trend{
		HeapLiveBaseline: int64(first.Live), HeapLiveFinal: int64(last.Live),
		HeapLiveGrowth:  int64(last.Live) - int64(first.Live),
		HeapInuseGrowth: int64(last.Inuse) - int64(first.Inuse),
		GoroutinesFirst: first.Goroutines, GoroutinesLast: last.Goroutines,
		OpenFilesFirst: first.OpenFiles, OpenFilesLast: last.OpenFiles,
		StoreBytesFirst: first.StoreBytes, StoreBytesLast: last.StoreBytes,
		RSSFirst: first.RSS, RSSLast: last.RSS,
		BaselinePairs: pts[0].Pairs, FinalPairs: pts[len(pts)-1].Pairs,
	}
	xs := make([]float64, len(pts))
	ys := make([]float64, len(pts))
	for i, p := range pts {
		s := of(p)
		xs[i], ys[i] = float64(p.Pairs), float64(s.Live)
		t.HeapLiveMax = max(t.HeapLiveMax, int64(s.Live))
	}
	t.HeapLiveSlope = slope(xs, ys)
	return t
}

// slope is the least-squares slope of ys against xs; 0 with fewer than two
// distinct xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}
