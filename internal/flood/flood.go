// Package flood floods a p2pkex node with fresh identities, inside network
// namespaces of its own, while a known peer runs honest exchanges and
// messages against it, and reports what the honest peer saw and what the
// node spent (issue 12, item 4).
//
// Three processes, each the test binary run again in a role (Role):
//
//   - server: a node built as the daemon builds it (a bbolt store, default
//     options and limits), in namespace A at netnstest.AddrA;
//   - honest: a node in namespace B at netnstest.AddrB, which makes itself
//     known to the server with one exchange and one message before the
//     flood, and during it runs exchanges and messages in a loop, timing
//     each exchange;
//   - flood: in namespace B, Identities fresh Ed25519 identities, each a
//     libp2p host of its own bound to one of Addrs source addresses spread
//     over Subnets /24s (10.78.1.0/24, 10.78.2.0/24, ...; routed to the
//     server over the namespaces' veth, never outside). Each identity
//     connects, then keeps Streams half-open exchanges (a valid START, then
//     silence) and MsgStreams message streams (a header under epoch 1 that
//     announces a full-size body, then silence) open, opening a new one
//     Retry after each ends; a refused connection is retried after Retry.
//
// Run builds the namespaces, starts the processes and returns a Report:
// the honest peer's success rate and exchange times during the flood, the
// server's RSS and Go heap before, during and after, the server's own
// admission counts (node.AdmissionStats) and the refusals the flood saw, by
// reason. It measures; only a failure of the honest peer is an error.
package flood

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-varint"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/internal/netnstest"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Config is a flood's size.
type Config struct {
	Identities int           // fresh identities (default 1000)
	Addrs      int           // their source addresses (default 128)
	Subnets    int           // the /24s the addresses are spread over (default 8)
	Streams    int           // half-open exchanges each identity keeps open (default 3)
	MsgStreams int           // message streams each identity keeps open (default 1)
	Retry      time.Duration // pause before an identity opens again (default 500 ms)
	Warmup     time.Duration // flood before the honest peer starts (default 3 s)
	Duration   time.Duration // the honest peer's run under the flood (default 10 s)
	// Interval is the honest peer's pause between two rounds of one
	// exchange and one message (default 100 ms).
	Interval time.Duration
	// Reconnect: the honest peer closes its connection to the server when
	// its run begins, so that its first exchange under the flood needs a
	// new connection (which libp2p's connection limits, full of the
	// flood's, must let in).
	Reconnect bool
	// ServerConns, if positive, raises the server's inbound connection
	// limit (libp2p's, scaled from the machine's memory: 252 on 24 GB) to
	// this, so that more of the identities connect at all. The server then
	// runs a resource manager built here with the node's service limits
	// (node.SetServiceLimits, SetMessageServiceLimits) instead of its own,
	// which it leaves alone: no allowlist for known peers.
	ServerConns int
}

func (c *Config) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Identities, 1000)
	def(&c.Addrs, 128)
	def(&c.Subnets, 8)
	def(&c.Streams, 3)
	def(&c.MsgStreams, 1)
	defD(&c.Retry, 500*time.Millisecond)
	defD(&c.Warmup, 3*time.Second)
	defD(&c.Duration, 10*time.Second)
	defD(&c.Interval, 100*time.Millisecond)
}

// MemSample is the server's memory at one moment.
type MemSample struct {
	RSS        int64 // bytes, from /proc/self/status VmRSS
	HeapInuse  int64 // runtime.MemStats.HeapInuse
	Goroutines int
	Conns      int // connections of the server's host
	ConnsIn    int // of which inbound
	Admission  node.AdmissionStats
}

// HonestResult is what the honest peer saw during the flood.
type HonestResult struct {
	Exchanges, ExchangesOK int
	Messages, MessagesOK   int
	Errors                 []string        // the first few failures
	Times                  []time.Duration // each successful exchange, sorted
}

// Percentile returns the p-th percentile (0..100) of the exchange times.
func (h *HonestResult) Percentile(p float64) time.Duration {
	if len(h.Times) == 0 {
		return 0
	}
	i := int(float64(len(h.Times))*p/100+0.999999) - 1
	return h.Times[min(max(i, 0), len(h.Times)-1)]
}

// Report is a flood's outcome.
type Report struct {
	Config      Config
	Sources     []string // the flood's source addresses
	Before      MemSample
	DuringPeak  MemSample // the largest RSS sampled during the flood (with its other figures)
	DuringLast  MemSample // the last sample during the flood
	After       MemSample // 3 s after the flood's identities went away
	AfterGC     MemSample // then after runtime.GC and debug.FreeOSMemory
	Honest      HonestResult
	Refusals    map[string]int64 // what the flood's identities saw, by reason
	Setup       time.Duration    // making the flood's hosts
	FloodLasted time.Duration
}

// Failed says why the honest peer failed, or "" if every exchange and
// message succeeded.
func (r *Report) Failed() string {
	h := r.Honest
	if h.Exchanges == 0 {
		return "the honest peer ran no exchange"
	}
	if h.ExchangesOK != h.Exchanges || h.MessagesOK != h.Messages {
		return fmt.Sprintf("honest peer: %d/%d exchanges, %d/%d messages succeeded; first errors: %s",
			h.ExchangesOK, h.Exchanges, h.MessagesOK, h.Messages, strings.Join(h.Errors, "; "))
	}
	return ""
}

// Print writes the report as text.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	h := r.Honest
	fmt.Fprintf(w, "flood: %d identities from %d addresses in %d /24s (10.78.1.0/24..), %d half-open exchanges and %d message streams each, retry %v; setup %v, flood %v (warm-up %v, honest run %v)\n",
		c.Identities, c.Addrs, c.Subnets, c.Streams, c.MsgStreams, c.Retry, r.Setup.Round(time.Millisecond),
		r.FloodLasted.Round(time.Millisecond), c.Warmup, c.Duration)
	if c.ServerConns > 0 {
		fmt.Fprintf(w, "server's inbound connection limit raised to %d (its resource manager built by the harness: no allowlist)\n", c.ServerConns)
	}
	if c.Reconnect {
		fmt.Fprintf(w, "honest peer closed its connection as its run began and waited 2 s: its first exchange under the flood needed a new one\n")
	}
	fmt.Fprintf(w, "honest (known) peer: exchanges %d/%d ok (%.1f %%), messages %d/%d ok; exchange time p50 %v, p99 %v, max %v\n",
		h.ExchangesOK, h.Exchanges, 100*float64(h.ExchangesOK)/float64(max(h.Exchanges, 1)), h.MessagesOK, h.Messages,
		h.Percentile(50).Round(time.Microsecond), h.Percentile(99).Round(time.Microsecond), h.Percentile(100).Round(time.Microsecond))
	for _, e := range h.Errors {
		fmt.Fprintf(w, "  honest failure: %s\n", e)
	}
	fmt.Fprintf(w, "server memory      %12s %12s %10s %12s\n", "RSS", "Go heap", "goroutines", "conns (in)")
	for _, s := range []struct {
		name string
		m    MemSample
	}{{"before", r.Before}, {"during (peak)", r.DuringPeak}, {"during (end)", r.DuringLast}, {"after", r.After}, {"after GC", r.AfterGC}} {
		fmt.Fprintf(w, "  %-16s %12s %12s %10d %12s\n", s.name, mb(s.m.RSS), mb(s.m.HeapInuse), s.m.Goroutines,
			fmt.Sprintf("%d (%d)", s.m.Conns, s.m.ConnsIn))
	}
	a := r.AfterGC.Admission
	fmt.Fprintf(w, "server admission: admitted %d (unknown %d); refused BUSY: over total %d, over peer %d, over unknown share %d, over origin %d, slot wait %d; timed out %d (unknown %d); message streams reset: no session %d, malformed %d, refused header %d\n",
		a.Admitted, a.AdmittedUnknown, a.OverTotal, a.OverPeer, a.OverUnknown, a.OverOrigin, a.SlotWait,
		a.TimedOut, a.TimedOutUnknown, a.MsgNoSession, a.MsgMalformed, a.MsgRefusedHeader)
	keys := make([]string, 0, len(r.Refusals))
	for k := range r.Refusals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "flood outcomes, as the identities saw them:\n")
	for _, k := range keys {
		fmt.Fprintf(w, "  %-60s %8d\n", k, r.Refusals[k])
	}
}

// RoleEnv names the role a re-run test binary plays (see Role).
const RoleEnv = "P2PKEX_FLOOD_ROLE"

// Role runs the role named in RoleEnv, if any, and reports whether it did;
// a test binary's TestMain calls it first and exits when it returns true.
func Role() (bool, error) {
	switch os.Getenv(RoleEnv) {
	case "":
		return false, nil
	case "server":
		return true, server()
	case "honest":
		return true, honest()
	case "flood":
		return true, flood()
	default:
		return true, fmt.Errorf("unknown role %q", os.Getenv(RoleEnv))
	}
}

// Run floods a server as c says and returns the report. It skips t
// (netnstest) unless it runs as root with ip.
func Run(t testing.TB, c Config) *Report {
	t.Helper()
	c.fill()
	r := &Report{Config: c}
	nsA, nsB := netnstest.Pair(t)
	ip := netnstest.IP(t)
	vethA, vethB := vethIn(t, ip, nsA), vethIn(t, ip, nsB)
	// The flood's addresses, on namespace B's veth; namespace A reaches
	// them through its own.
	var batch strings.Builder
	perSubnet := (c.Addrs + c.Subnets - 1) / c.Subnets
	for i := range c.Addrs {
		a := fmt.Sprintf("10.78.%d.%d", 1+i/perSubnet, 1+i%perSubnet)
		r.Sources = append(r.Sources, a)
		fmt.Fprintf(&batch, "addr add %s/16 dev %s\n", a, vethB)
	}
	runIP(t, ip, strings.NewReader(batch.String()), "-n", nsB, "-batch", "-")
	runIP(t, ip, nil, "-n", nsA, "route", "add", "10.78.0.0/16", "dev", vethA)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := func(ns, role string, env ...string) *netnstest.Proc {
		cmd := netnstest.Command(t, ns, self, "-test.run=^$")
		cmd.Env = append(append(os.Environ(), RoleEnv+"="+role), env...)
		return netnstest.Start(t, role, cmd)
	}
	srv := start(nsA, "server", fmt.Sprintf("FLOOD_SERVER_CONNS=%d", c.ServerConns))
	addr := srv.Await(t, 30*time.Second, "listen ", "")
	stats := func() MemSample {
		mark := srv.Mark()
		srv.Send(t, "stats")
		var m MemSample
		if err := json.Unmarshal([]byte(srv.AwaitFrom(t, mark, 30*time.Second, "stats ", "")), &m); err != nil {
			t.Fatalf("server stats: %v", err)
		}
		return m
	}

	hon := start(nsB, "honest", "FLOOD_SERVER="+addr, fmt.Sprintf("FLOOD_INTERVAL=%d", c.Interval))
	hon.Await(t, 60*time.Second, "ready", "")
	r.Before = stats()

	setup := time.Now()
	fl := start(nsB, "flood", "FLOOD_SERVER="+addr, "FLOOD_SOURCES="+strings.Join(r.Sources, ","),
		fmt.Sprintf("FLOOD_IDENTITIES=%d", c.Identities), fmt.Sprintf("FLOOD_STREAMS=%d", c.Streams),
		fmt.Sprintf("FLOOD_MSG_STREAMS=%d", c.MsgStreams), fmt.Sprintf("FLOOD_RETRY=%d", c.Retry))
	fl.Await(t, 5*time.Minute, "ready", "")
	r.Setup = time.Since(setup)
	flooding := time.Now()
	fl.Send(t, "go")

	sample := func() {
		m := stats()
		r.DuringLast = m
		if m.RSS > r.DuringPeak.RSS {
			r.DuringPeak = m
		}
	}
	for end := time.Now().Add(c.Warmup); time.Now().Before(end); time.Sleep(time.Second) {
		sample()
	}
	mark := hon.Mark()
	hon.Send(t, "run %d %t", c.Duration, c.Reconnect)
	for end := time.Now().Add(c.Duration); time.Now().Before(end); time.Sleep(time.Second) {
		sample()
	}
	res := hon.AwaitFrom(t, mark, c.Duration+2*time.Minute, "result ", "")
	if err := json.Unmarshal([]byte(res), &r.Honest); err != nil {
		t.Fatalf("honest result: %v", err)
	}
	sample()
	mark = fl.Mark()
	fl.Send(t, "stop")
	counts := fl.AwaitFrom(t, mark, 2*time.Minute, "counts ", "")
	r.FloodLasted = time.Since(flooding)
	if err := json.Unmarshal([]byte(counts), &r.Refusals); err != nil {
		t.Fatalf("flood counts: %v", err)
	}
	fl.Send(t, "exit")
	fl.Await(t, time.Minute, "bye", "")
	time.Sleep(3 * time.Second)
	r.After = stats()
	srv.Send(t, "gc")
	r.AfterGC = stats()
	return r
}

// vethIn returns the name of the veth interface in namespace ns.
func vethIn(t testing.TB, ip, ns string) string {
	t.Helper()
	out, err := exec.Command(ip, "-n", ns, "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		t.Fatalf("list veth in %s: %v", ns, err)
	}
	// "7: pk123ab@if6: <BROADCAST,..."
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("no veth in %s: %q", ns, out)
	}
	name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
	return name
}

func runIP(t testing.TB, ip string, stdin io.Reader, args ...string) {
	t.Helper()
	cmd := exec.Command(ip, args...)
	cmd.Stdin = stdin
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// lines reads commands from stdin, one a line.
func lines() <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- strings.TrimSpace(sc.Text())
		}
	}()
	return ch
}

func envInt(name string) int {
	v, _ := strconv.Atoi(os.Getenv(name))
	return v
}

// server runs the node under attack: the daemon's store and defaults.
func server() error {
	dir, err := os.MkdirTemp("", "p2pkex-flood-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := peerstore.OpenBolt(dir)
	if err != nil {
		return err
	}
	defer store.Close()
	opts := []node.Option{node.WithStore(store), node.WithListenAddrs("/ip4/" + netnstest.AddrA + "/tcp/0")}
	if conns := envInt("FLOOD_SERVER_CONNS"); conns > 0 {
		limits := rcmgr.DefaultLimits
		libp2p.SetDefaultServiceLimits(&limits)
		node.SetServiceLimits(&limits, node.DefaultMaxInbound, node.DefaultMaxInboundPerPeer, protocol.DefaultNoticeSize)
		node.SetMessageServiceLimits(&limits, node.DefaultMaxMessageStreams, node.DefaultMaxMessageStreamsPerPeer, node.DefaultMaxMessageSize)
		raised := rcmgr.PartialLimitConfig{System: rcmgr.ResourceLimits{
			ConnsInbound: rcmgr.LimitVal(conns), Conns: rcmgr.LimitVal(2 * conns),
		}}.Build(limits.AutoScale())
		mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(raised), rcmgr.WithMetricsDisabled())
		if err != nil {
			return err
		}
		opts = append(opts, node.WithLibp2pOptions(libp2p.ResourceManager(mgr)))
	}
	n, err := node.New(context.Background(), opts...)
	if err != nil {
		return err
	}
	defer n.Close()
	msgs, stop := n.Messages(0)
	defer stop()
	go func() {
		for range msgs {
		}
	}()
	fmt.Println("listen " + n.Addrs()[0].String())
	for cmd := range lines() {
		switch cmd {
		case "stats":
			b, _ := json.Marshal(memSample(n))
			fmt.Println("stats " + string(b))
		case "gc":
			runtime.GC()
			debug.FreeOSMemory()
		}
	}
	return nil
}

func memSample(n *node.Node) MemSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := MemSample{HeapInuse: int64(ms.HeapInuse), Goroutines: runtime.NumGoroutine(),
		Conns: len(n.Host().Network().Conns()), Admission: n.AdmissionStats()}
	for _, c := range n.Host().Network().Conns() {
		if c.Stat().Direction == network.DirInbound {
			m.ConnsIn++
		}
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.RSS = kb << 10
			}
		}
	}
	return m
}

// honest is the known peer: one exchange and one message to become known,
// then rounds of both while told to run.
func honest() error {
	srv, err := peer.AddrInfoFromString(os.Getenv("FLOOD_SERVER"))
	if err != nil {
		return err
	}
	interval := time.Duration(envInt("FLOOD_INTERVAL"))
	n, err := node.New(context.Background(), node.WithListenAddrs("/ip4/"+netnstest.AddrB+"/tcp/0"))
	if err != nil {
		return err
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Connect(ctx, *srv); err != nil {
		return err
	}
	if _, err := n.Exchange(ctx, srv.ID); err != nil {
		return fmt.Errorf("first exchange: %w", err)
	}
	if err := n.Send(ctx, srv.ID, []byte("hello")); err != nil {
		return fmt.Errorf("first message: %w", err)
	}
	fmt.Println("ready")
	for cmd := range lines() {
		var ns int64
		var reconnect bool
		if _, err := fmt.Sscanf(cmd, "run %d %t", &ns, &reconnect); err != nil {
			continue
		}
		var res HonestResult
		if reconnect {
			// Long enough for the flood to take the connection slot it frees.
			_ = n.Host().Network().ClosePeer(srv.ID)
			time.Sleep(2 * time.Second)
		}
		fail := func(what string, err error) {
			if len(res.Errors) < 10 {
				res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
			}
		}
		for end := time.Now().Add(time.Duration(ns)); time.Now().Before(end); time.Sleep(interval) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t0 := time.Now()
			_, err := n.Exchange(ctx, srv.ID)
			took := time.Since(t0)
			res.Exchanges++
			if err != nil {
				fail("exchange", err)
			} else {
				res.ExchangesOK++
				res.Times = append(res.Times, took)
			}
			res.Messages++
			if err := n.Send(ctx, srv.ID, []byte("during the flood")); err != nil {
				fail("message", err)
			} else {
				res.MessagesOK++
			}
			cancel()
		}
		slices.Sort(res.Times)
		b, _ := json.Marshal(res)
		fmt.Println("result " + string(b))
	}
	return nil
}

// counter counts outcomes by reason.
type counter struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

func (c *counter) add(reason string) {
	c.mu.Lock()
	v := c.m[reason]
	if v == nil {
		v = new(atomic.Int64)
		c.m[reason] = v
	}
	c.mu.Unlock()
	v.Add(1)
}

func (c *counter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

// floodPeer is one fresh identity of the flood.
type floodPeer struct {
	h   host.Host
	sk  crypto.PrivKey
	key *protocol.ExchangeKey
}

// flood runs the fresh identities.
func flood() error {
	srv, err := peer.AddrInfoFromString(os.Getenv("FLOOD_SERVER"))
	if err != nil {
		return err
	}
	sources := strings.Split(os.Getenv("FLOOD_SOURCES"), ",")
	ids, streams, msgStreams := envInt("FLOOD_IDENTITIES"), envInt("FLOOD_STREAMS"), envInt("FLOOD_MSG_STREAMS")
	retry := time.Duration(envInt("FLOOD_RETRY"))
	peers := make([]*floodPeer, ids)
	var wg sync.WaitGroup
	var mkErr atomic.Value
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range peers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fp, err := newFloodPeer(net.ParseIP(sources[i%len(sources)]))
			if err != nil {
				mkErr.Store(err)
				return
			}
			peers[i] = fp
		}()
	}
	wg.Wait()
	if err, _ := mkErr.Load().(error); err != nil {
		return err
	}
	fmt.Println("ready")
	cmds := lines()
	for cmd := range cmds {
		if cmd == "go" {
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &counter{m: map[string]*atomic.Int64{}}
	for _, fp := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fp.run(ctx, srv, streams, msgStreams, retry, c)
		}()
	}
	for cmd := range cmds {
		if cmd == "stop" {
			break
		}
	}
	cancel()
	wg.Wait()
	b, _ := json.Marshal(c.snapshot())
	fmt.Println("counts " + string(b))
	for cmd := range cmds {
		if cmd == "exit" {
			break
		}
	}
	for _, fp := range peers {
		fp.h.Close()
	}
	fmt.Println("bye")
	return nil
}

func newFloodPeer(src net.IP) (*floodPeer, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(1, 10, connmgr.WithGracePeriod(time.Hour))
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.Identity(sk),
		libp2p.NoListenAddrs,
		// Each identity dials from its own source address.
		libp2p.Transport(tcp.NewTCPTransport, tcp.WithDialerForAddr(func(ma.Multiaddr) (tcp.ContextDialer, error) {
			return &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}, nil
		})),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.ConnectionManager(cm),
		libp2p.DisableMetrics(),
		libp2p.DisableRelay(),
	)
	if err != nil {
		return nil, err
	}
	key, err := protocol.NewExchangeKey(sk, protocol.DefaultSuites(), 1, time.Now(), protocol.DefaultRecordLifetime)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &floodPeer{h: h, sk: sk, key: key}, nil
}

// run connects (again, while refused) and keeps the streams open until ctx
// ends.
func (fp *floodPeer) run(ctx context.Context, srv *peer.AddrInfo, streams, msgStreams int, retry time.Duration, c *counter) {
	var wg sync.WaitGroup
	defer wg.Wait()
	started := false
	for ctx.Err() == nil {
		if fp.h.Network().Connectedness(srv.ID) != network.Connected {
			// Past libp2p's dial backoff: an attacker would not wait.
			cctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "flood"), 10*time.Second)
			err := fp.h.Connect(cctx, *srv)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					c.add("connection refused or failed: " + classifyConnErr(err))
				}
				pause(ctx, retry)
				continue
			}
			c.add("connection established")
		}
		if !started {
			started = true
			for range streams {
				wg.Add(1)
				go func() { defer wg.Done(); fp.loop(ctx, srv.ID, retry, c, fp.halfOpenExchange) }()
			}
			for range msgStreams {
				wg.Add(1)
				go func() { defer wg.Done(); fp.loop(ctx, srv.ID, retry, c, fp.messageStream) }()
			}
		}
		pause(ctx, retry)
	}
}

// loop runs one kind of attempt again and again while connected.
func (fp *floodPeer) loop(ctx context.Context, srv peer.ID, retry time.Duration, c *counter, attempt func(context.Context, peer.ID) string) {
	for ctx.Err() == nil {
		if fp.h.Network().Connectedness(srv) != network.Connected {
			pause(ctx, retry)
			continue
		}
		if r := attempt(ctx, srv); ctx.Err() == nil {
			c.add(r)
		}
		pause(ctx, retry)
	}
}

// pause waits about d (±25 %, so that the identities drift apart).
func pause(ctx context.Context, d time.Duration) {
	var b [1]byte
	_, _ = rand.Read(b[:])
	d = d*3/4 + d*time.Duration(b[0])/(2*255)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// halfOpenExchange sends a valid START and then nothing; it returns how the
// attempt ended.
func (fp *floodPeer) halfOpenExchange(ctx context.Context, srv peer.ID) string {
	s, err := fp.h.NewStream(network.WithNoDial(ctx, "flood"), srv, protocol.ID)
	if err != nil {
		return "exchange: stream refused: " + classifyStreamErr(err)
	}
	defer s.Reset()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	m, err := protocol.NewMachine(protocol.Config{Role: protocol.Initiator, Identity: fp.sk, Remote: srv, Own: fp.key, Epoch: 1})
	if err != nil {
		return "exchange: machine: " + err.Error()
	}
	defer m.Wipe()
	start, err := m.Start()
	if err != nil {
		return "exchange: start: " + err.Error()
	}
	if err := protocol.WriteFrames(s, [][]byte{start[0].Bytes}); err != nil {
		return "exchange: START not written: " + classifyStreamErr(err)
	}
	fr := protocol.NewFrameReader(s)
	_ = s.SetReadDeadline(time.Now().Add(time.Minute))
	f, err := fr.ReadFrame(protocol.MaxNoticeSize)
	if err != nil {
		return "exchange: reset before an answer: " + classifyStreamErr(err)
	}
	var n pb.Notice
	if err := proto.Unmarshal(f, &n); err != nil {
		return "exchange: unreadable answer"
	}
	if n.Type == pb.Notice_ABORT {
		return "exchange: refused, ABORT " + n.Abort.GetStatus().String()
	}
	if n.Type != pb.Notice_CONTINUE {
		return "exchange: answered " + n.Type.String()
	}
	// Admitted: hold it, silent, until the server ends it.
	held := time.Now()
	_, err = fr.ReadFrame(protocol.MaxNoticeSize)
	took := time.Since(held)
	bucket := "<1s"
	switch {
	case took >= 5*time.Second:
		bucket = ">=5s"
	case took >= 2500*time.Millisecond:
		bucket = "2.5-5s"
	case took >= time.Second:
		bucket = "1-2.5s"
	}
	return fmt.Sprintf("exchange: admitted (CONTINUE), held %s, then %s", bucket, classifyStreamErr(err))
}

// messageStream sends a message header under epoch 1 announcing a full
// body, and then nothing.
func (fp *floodPeer) messageStream(ctx context.Context, srv peer.ID) string {
	s, err := fp.h.NewStream(network.WithNoDial(ctx, "flood"), srv, node.MessageProtocolID)
	if err != nil {
		return "message: stream refused: " + classifyStreamErr(err)
	}
	defer s.Reset()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	hdr := make([]byte, node.MessageHeaderSize)
	hdr[0] = 1
	hdr[8] = 1 // epoch 1, big-endian
	_, _ = rand.Read(hdr[9:])
	frame := append(varint.ToUvarint(uint64(node.MessageHeaderSize+node.DefaultMaxMessageSize+16)), hdr...)
	if _, err := s.Write(frame); err != nil {
		return "message: header not written: " + classifyStreamErr(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(time.Minute))
	var b [8]byte
	_, err = s.Read(b[:])
	return "message: " + classifyStreamErr(err)
}

// msgStatusNames are the message statuses (node/messaging.go), by number.
var msgStatusNames = []string{"OK", "MALFORMED", "TOO_LARGE", "UNKNOWN_EPOCH", "EPOCH_EXPIRED", "KEY_MISMATCH",
	"AUTH", "REPLAY", "TOO_MANY_STREAMS", "NOT_DELIVERED", "INTERNAL"}

var debugOnce sync.Once

func classifyConnErr(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "resource limit exceeded"), strings.Contains(s, "rcmgr"):
		return "resource limit"
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(s, "timeout"):
		return "timeout"
	case strings.Contains(s, "connection refused"):
		return "TCP refused"
	case strings.Contains(s, "reset"), strings.Contains(s, "EOF"):
		return "closed during handshake (resource limit)"
	}
	debugOnce.Do(func() { fmt.Fprintln(os.Stderr, "first unclassified connection error:", s) })
	return "other"
}

// classifyStreamErr names how a stream ended.
func classifyStreamErr(err error) string {
	var se *network.StreamError
	switch {
	case err == nil:
		return "data"
	case errors.As(err, &se) && se.Remote:
		c := se.ErrorCode
		switch {
		case c == network.StreamResourceLimitExceeded:
			return "reset by libp2p (resource limit)"
		case c > protocol.AbortCodeBase && c <= protocol.AbortCodeBase+0xff:
			return "reset " + pb.Status(c-protocol.AbortCodeBase).String()
		case c >= node.MessageResetCodeBase && c <= node.MessageResetCodeBase+0xff:
			st := int(c - node.MessageResetCodeBase)
			if st < len(msgStatusNames) {
				return "reset, status " + msgStatusNames[st]
			}
			return fmt.Sprintf("reset, message status %d", st)
		}
		return fmt.Sprintf("reset, code %#x", uint32(c))
	case errors.Is(err, network.ErrReset):
		return "reset"
	case errors.Is(err, io.EOF):
		return "closed"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "our read deadline (1 min)"
	case strings.Contains(err.Error(), "connection closed"), strings.Contains(err.Error(), "no connection"),
		errors.Is(err, network.ErrNoConn):
		return "connection gone"
	case strings.Contains(err.Error(), "protocols not supported"), strings.Contains(err.Error(), "protocol not supported"):
		return "protocol negotiation failed"
	}
	return "other: " + err.Error()
}
