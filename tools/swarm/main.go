// Command swarm runs a network of p2pkex nodes in one process on 127.0.0.1
// and reports how discovery, exchanges and messages fare while nodes leave
// and come back (issue 15, item 4).
//
//	go run ./tools/swarm -nodes 200 -duration 5m -json swarm.json
//	go run ./tools/chart -swarm -o swarm.svg swarm.json
//
// Every node is a node as the daemon runs it: its own libp2p host and its
// own bbolt store in its own repo directory (peerstore.OpenBolt), with the
// node's defaults for everything else: by default it listens as the daemon
// does (TCP and QUIC on 127.0.0.1) and the process runs Go's default GOGC.
// Two settings lighten a process that cannot keep up (a loaded machine):
//
//   - -transport quic: the nodes listen on QUIC only. A dial to a peer with
//     both addresses on a private network tries QUIC first and TCP 30 ms
//     later (go-libp2p's dial ranker). In a process where 200 nodes share
//     two busy cores a QUIC handshake takes longer than that, so TCP is
//     dialled too and its TLS handshake runs as well: on a loaded machine a
//     fifth to a quarter of the connections were TCP ones, and TLS
//     handshakes took a tenth of the CPU (on a quiet one, 1–4 %).
//   - -gogc 400 ($GOGC wins over -gogc): a daemon's few MiB of heap are
//     collected on an otherwise idle core; 200 nodes in one process on a
//     loaded machine have none, and with the Go default (100) the collector
//     took a fifth to a third of the CPU (its mark assists stalling the
//     nodes' goroutines). 400 trades memory for that CPU: the process's
//     heap peaks at up to five times the live heap.
//
// On two quiet cores the defaults pass: 200 nodes, 3 minutes, 3,460 of
// 3,460 exchanges between live peers at 0.41 cores (docs/PERFORMANCE.md).
//
// Peers find each other only through the DHT rendezvous (node.WithDHT): the
// first -bootstrap nodes start with no bootstrap peers, and every other node
// is given them, and nothing else, as its bootstrap list; mDNS is off. The
// bootstrap nodes are DHT servers (the daemon's --dht-server, as whoever
// runs a bootstrap node runs it); the others run the daemon's default,
// node.DHTModeAuto, which on loopback, where AutoNAT never finds a node
// publicly reachable, keeps them DHT clients: they query the bootstrap
// nodes and advertise there, and serve no DHT queries. -dht-mode server
// makes every node a DHT server instead (the daemon's --dht-server, or a
// network of publicly reachable nodes): a DHT of 200 servers, where each
// node that joins connects to nearly every other (its routing-table
// refresh, the others' checks of it); at 30 nodes that took 2.6 times the
// CPU per node, and 200 servers starved the process on two cores
// (docs/performance/swarm.md).
//
// Each node runs, every -op-interval (jittered by ±50 %), an exchange with a
// peer picked at random among those it has discovered, and, if the exchange
// succeeded, sends it one message under the new key. Every -churn-period,
// -churn of the nodes (never a bootstrap node) leave: they stop their work,
// close their node and store, and -down later come back on the same repo
// (same identity, same sessions) and the same ports.
//
// An exchange or message is counted "between live peers" when neither its
// initiator nor its peer was away at any moment from its start to its end;
// a failure of one that was not is counted as "peer gone" whatever its
// error. A failure between live peers is classified by its error (in this
// order): dial_backoff (libp2p refused to dial because dials to the peer
// failed in the last seconds, usually while it was away), timeout_at_peer
// (the peer gave up on a deadline of its own: ABORT or reset with status
// TIMEOUT), dial_timeout (no connection could be made before the
// initiator's deadline), timeout (a deadline of the initiator's), refused
// (the peer answered no: ABORT, a refused message, a resource limit), dial
// (no connection could be made) or other; the report keeps the first
// errors of each. The run fails (exit 1) on any failure between live peers.
//
// The report (JSON) gives the time from a node's start to its first and to
// its k-th discovered peer, p50 and p99, for first starts and for returns
// after churn; the exchanges and messages attempted and succeeded, in all
// and between live peers, and their failures by cause; the messages the
// subscribers received; the process's CPU, live heap, resident memory,
// goroutines, open files, connections and store size divided by the nodes
// (all nodes share the process); and a timeline, one bucket per -sample,
// which tools/chart -swarm draws. Each bucket also says whether the process
// was starved: how long a goroutine that was ready waited to run (p50 and
// p99 of the runtime's /sched/latencies) and the collector's share of the
// CPU. The exchanges between live peers are split by the age of the younger
// of the two nodes (do failures cluster while nodes join?) and by whether
// the pair had completed an exchange before (a first contact).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/internal/procs"
	"github.com/p2pkex/p2pkex/internal/procstat"
	"github.com/p2pkex/p2pkex/internal/toolio"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
)

type config struct {
	Nodes             int     `json:"nodes"`
	Bootstrap         int     `json:"bootstrap"`
	DurationS         float64 `json:"duration_s"`
	ChurnPeriodS      float64 `json:"churn_period_s"`
	ChurnFraction     float64 `json:"churn_fraction"`
	DownS             float64 `json:"down_s"`
	OpIntervalS       float64 `json:"op_interval_s"`
	OpTimeoutS        float64 `json:"op_timeout_s"`
	K                 int     `json:"k"`
	DiscoveryInterval float64 `json:"discovery_interval_s"`
	DHTMode           string  `json:"dht_mode"`
	MsgSize           int     `json:"message_size"`
	StartParallel     int     `json:"start_parallel"`
	SampleS           float64 `json:"sample_s"`
	Seed              uint64  `json:"seed"`
	Transport         string  `json:"transport"`
	GOGC              int     `json:"gogc"`

	duration, churnPeriod, down, opInterval, opTimeout, discoveryInterval, sample time.Duration
	dhtMode                                                                       node.DHTMode
	jsonOut, dir, cpuProfile, heapProfile, goroutineProfile                       string
	quiet                                                                         bool
}

func main() {
	var c config
	flag.IntVar(&c.Nodes, "nodes", 200, "nodes in the swarm, bootstrap nodes included")
	flag.IntVar(&c.Bootstrap, "bootstrap", 3, "bootstrap nodes (never leave)")
	flag.DurationVar(&c.duration, "duration", 5*time.Minute, "how long the swarm runs after all nodes started")
	flag.DurationVar(&c.churnPeriod, "churn-period", time.Minute, "time between two churn rounds (0: no churn)")
	flag.Float64Var(&c.ChurnFraction, "churn", 0.10, "fraction of the nodes that leave in each churn round")
	flag.DurationVar(&c.down, "down", 10*time.Second, "how long a leaving node stays away")
	flag.DurationVar(&c.opInterval, "op-interval", 10*time.Second, "mean time between two exchanges a node starts")
	flag.DurationVar(&c.opTimeout, "op-timeout", 30*time.Second, "time limit of one exchange and its message")
	flag.IntVar(&c.K, "k", 10, "report the time to discover this many peers")
	flag.DurationVar(&c.discoveryInterval, "discovery-interval", node.DefaultDiscoveryInterval, "longest wait between two DHT lookups of the rendezvous (node.WithDiscoveryInterval)")
	mode := flag.String("dht-mode", "auto", "DHT mode of the nodes other than the bootstrap nodes: auto (the daemon's default), server (the daemon's --dht-server) or client")
	flag.IntVar(&c.MsgSize, "msg-size", 256, "message size in bytes")
	flag.IntVar(&c.StartParallel, "start-parallel", 8, "nodes starting at once")
	flag.DurationVar(&c.sample, "sample", 10*time.Second, "time between two samples of the timeline")
	flag.Uint64Var(&c.Seed, "seed", 1, "seed of the random choices (peers, churn); timing is not reproducible")
	flag.StringVar(&c.jsonOut, "json", "", "write the report to `FILE` (default stdout)")
	flag.StringVar(&c.dir, "dir", "", "put the repos under `DIR` and keep them (default: a temporary directory, removed)")
	flag.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the run (after all nodes started) to `FILE`")
	flag.StringVar(&c.heapProfile, "heapprofile", "", "write a heap profile at the end of the run, every node still up, to `FILE`")
	flag.StringVar(&c.goroutineProfile, "goroutineprofile", "", "write the goroutines' stacks, counted, at the end of the run to `FILE`")
	flag.StringVar(&c.Transport, "transport", "both", "what the nodes listen on: both (TCP and QUIC, as the daemon), quic or tcp")
	flag.IntVar(&c.GOGC, "gogc", 100, "the garbage collector's GOGC for the process (Go's default; 400 spares a loaded machine CPU for memory; the environment's GOGC wins)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: swarm [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	procs.Raise() // as the daemon runs (internal/procs)
	if flag.NArg() > 0 {
		usage("unexpected argument %q", flag.Arg(0))
	}
	switch *mode {
	case "server":
		c.dhtMode = node.DHTModeServer
	case "auto":
		c.dhtMode = node.DHTModeAuto
	case "client":
		c.dhtMode = node.DHTModeClient
	default:
		usage("-dht-mode must be server, auto or client")
	}
	c.DHTMode = *mode
	if _, ok := transports[c.Transport]; !ok {
		usage("-transport must be both, quic or tcp")
	}
	if env := os.Getenv("GOGC"); env != "" {
		c.GOGC = debug.SetGCPercent(-1) // the runtime read $GOGC; keep it
		debug.SetGCPercent(c.GOGC)
	} else {
		debug.SetGCPercent(c.GOGC)
	}
	switch {
	case c.Bootstrap < 1 || c.Nodes < c.Bootstrap+2:
		usage("need -bootstrap >= 1 and -nodes >= bootstrap + 2")
	case c.duration <= 0 || c.opInterval <= 0 || c.opTimeout <= 0 || c.discoveryInterval <= 0 || c.sample <= 0:
		usage("durations must be positive (-churn-period may be 0)")
	case c.churnPeriod < 0 || c.ChurnFraction < 0 || c.ChurnFraction > 1:
		usage("need -churn-period >= 0 and 0 <= -churn <= 1")
	case c.churnPeriod > 0 && c.down >= c.churnPeriod:
		usage("-down must be shorter than -churn-period")
	case c.K < 1 || c.K > c.Nodes-1:
		usage("need 1 <= -k <= nodes - 1")
	case c.MsgSize < 1 || c.MsgSize > node.DefaultMaxMessageSize:
		usage("need 1 <= -msg-size <= %d", node.DefaultMaxMessageSize)
	case c.StartParallel < 1:
		usage("need -start-parallel >= 1")
	}
	c.DurationS, c.ChurnPeriodS, c.DownS = c.duration.Seconds(), c.churnPeriod.Seconds(), c.down.Seconds()
	c.OpIntervalS, c.OpTimeoutS = c.opInterval.Seconds(), c.opTimeout.Seconds()
	c.DiscoveryInterval, c.SampleS = c.discoveryInterval.Seconds(), c.sample.Seconds()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := run(ctx, &c)
	if r != nil && !c.quiet {
		if r.Pass {
			fmt.Fprintln(os.Stderr, r.Verdict)
		} else {
			for what, ex := range r.FailureExamples {
				fmt.Fprintf(os.Stderr, "%s:\n\t%s\n", what, strings.Join(ex, "\n\t"))
			}
		}
	}
	if r != nil {
		if werr := toolio.WriteJSON(c.jsonOut, r); werr != nil && err == nil {
			err = werr
		}
		if err == nil && !r.Pass {
			err = errors.New(r.Verdict)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarm:", err)
		os.Exit(1)
	}
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "swarm: "+format+"\n", args...)
	os.Exit(2)
}

// span is a time a member was away; to is zero while it still is.
type span struct{ from, to time.Time }

// member is one node of the swarm across its incarnations.
type member struct {
	idx  int
	boot bool
	dir  string
	id   peer.ID

	mu      sync.Mutex
	listen  []string // the ports of the first incarnation, kept across restarts
	inc     *incarnation
	away    []span
	gens    int
	portsNo int // restarts that could not take the same ports
}

// incarnation is one life of a member: from New to Close.
type incarnation struct {
	n        *node.Node
	store    peerstore.Store
	gen      int
	start    time.Time
	cancel   context.CancelFunc
	done     sync.WaitGroup
	stopMsgs func()
}

// up says whether m was present the whole time from t0 to t1.
func (m *member) up(t0, t1 time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inc == nil && len(m.away) == 0 {
		return false // not started
	}
	for _, s := range m.away {
		if !s.from.After(t1) && (s.to.IsZero() || !s.to.Before(t0)) {
			return false
		}
	}
	return true
}

// Failure causes between live peers.
const (
	causeTimeout = "timeout"
	causePeerTO  = "timeout_at_peer"
	causeRefused = "refused"
	causeDial    = "dial"
	causeBackoff = "dial_backoff"
	causeDialTO  = "dial_timeout"
	causeOther   = "other"
)

// tally counts one kind of operation.
type tally struct {
	Attempted     int64            `json:"attempted"`
	Succeeded     int64            `json:"succeeded"`
	AttemptedLive int64            `json:"attempted_between_live_peers"`
	SucceededLive int64            `json:"succeeded_between_live_peers"`
	FailedLive    map[string]int64 `json:"failed_between_live_peers"`
	PeerGone      int64            `json:"failed_peer_gone"`
	// SucceededGone counts those that succeeded although a peer left or
	// came back during them.
	SucceededGone int64 `json:"succeeded_peer_gone"`
}

// bucket is one interval of the timeline.
type bucket struct {
	T              float64 `json:"t_s"`
	DurS           float64 `json:"dur_s"` // the bucket ends at T
	LiveNodes      int     `json:"live_nodes"`
	Exchanges      int64   `json:"exchanges"`
	ExchangesOK    int64   `json:"exchanges_ok"`
	FailedGone     int64   `json:"failed_peer_gone"`
	FailedLive     int64   `json:"failed_between_live_peers"`
	MessagesOK     int64   `json:"messages_ok"`
	CPUCores       float64 `json:"cpu_cores"`
	HeapLive       uint64  `json:"heap_live_bytes"` // at the last collection
	RSS            int64   `json:"rss_bytes"`
	Goroutines     int     `json:"goroutines"`
	OpenFiles      int     `json:"open_files"`
	DiscoveredMean float64 `json:"discovered_mean"`
	// ConnsMean is the open connections per live node (each end counts at
	// its node), QUICShare the share of them over QUIC.
	ConnsMean float64 `json:"conns_mean"`
	QUICShare float64 `json:"quic_share"`
	// SchedP50Ms and SchedP99Ms: how long a goroutine that was ready
	// waited to run, GCShare the collector's share of the CPU
	// (schedSampler).
	SchedP50Ms float64 `json:"sched_latency_p50_ms"`
	SchedP99Ms float64 `json:"sched_latency_p99_ms"`
	GCShare    float64 `json:"gc_cpu_share"`
}

// discovery is what one incarnation discovered: seconds from its start to
// its first and k-th discovered peer (-1: not reached), and how many.
type discovery struct {
	Node       int     `json:"node"`
	Gen        int     `json:"gen"`
	FirstS     float64 `json:"first_s"`
	KS         float64 `json:"k_s"`
	Discovered int     `json:"discovered"`
	LivedS     float64 `json:"lived_s"`
}

type swarm struct {
	cfg      *config
	members  []*member
	byID     map[peer.ID]*member
	bootInfo []peer.AddrInfo
	msg      []byte
	t0       time.Time

	mu          sync.Mutex
	exchanges   tally
	messages    tally
	examples    map[string][]string
	discoveries []discovery
	timeline    []bucket
	cur         bucket // counts since the last sample
	lastSample  time.Time
	churnRounds []float64
	leaves      int
	returns     int
	startErrs   []string
	received    atomic.Int64
	sched       *schedSampler
	// pairs holds the pairs of members (lower index first) that completed
	// an exchange; byAge and byContact split the exchanges between live
	// peers (splits).
	pairs     map[[2]int]bool
	byAge     map[string]*split
	byContact map[string]*split
}

// split counts the exchanges between live peers of one class and their
// failures by cause.
type split struct {
	Attempted int64            `json:"attempted"`
	Failed    map[string]int64 `json:"failed"`
}

// ageClass is the class of an exchange by the age of the younger of its two
// nodes' incarnations when it started: whether failures cluster while nodes
// join (the swarm's start, the returns after churn).
func ageClass(age time.Duration) string {
	switch {
	case age < 30*time.Second:
		return "0-30s"
	case age < 60*time.Second:
		return "30-60s"
	case age < 120*time.Second:
		return "60-120s"
	}
	return "120s+"
}

// incStart is when m's current incarnation started (zero if away).
func (m *member) incStart() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inc == nil {
		return time.Time{}
	}
	return m.inc.start
}

type report struct {
	Tool       string    `json:"tool"`
	Start      time.Time `json:"start"`
	GoVersion  string    `json:"go_version"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	Config     *config   `json:"config"`
	StartAllS  float64   `json:"start_all_s"`
	RunS       float64   `json:"run_s"`

	Discovery struct {
		Initial discoveryStats `json:"initial"`
		Rejoin  discoveryStats `json:"rejoin"`
	} `json:"discovery"`
	Exchanges tally `json:"exchanges"`
	// ExchangesByAge splits the exchanges between live peers by the age of
	// the younger node (ageClass); ExchangesByContact by whether the two
	// had completed an exchange before ("first" or "repeat").
	ExchangesByAge     map[string]*split   `json:"exchanges_between_live_peers_by_age"`
	ExchangesByContact map[string]*split   `json:"exchanges_between_live_peers_by_contact"`
	Messages           tally               `json:"messages"`
	MessagesReceived   int64               `json:"messages_received"`
	FailureExamples    map[string][]string `json:"failure_examples,omitempty"`
	Churn              struct {
		Rounds       []float64 `json:"rounds_t_s"`
		Leaves       int       `json:"leaves"`
		Returns      int       `json:"returns"`
		PortsChanged int       `json:"restarts_on_new_ports"`
	} `json:"churn"`
	Resources struct {
		CPUSeconds        float64 `json:"cpu_s"`
		CPUCoresUsed      float64 `json:"cpu_cores_used"`
		CPUMsPerNodePerS  float64 `json:"cpu_ms_per_node_per_s"`
		HeapLivePerNode   float64 `json:"heap_live_bytes_per_node"`
		HeapInusePerNode  float64 `json:"heap_inuse_bytes_per_node"`
		RSSPerNode        float64 `json:"rss_bytes_per_node"`
		GoroutinesPerNode float64 `json:"goroutines_per_node"`
		ConnsPerNode      float64 `json:"conns_per_node"`
		OpenFilesPerNode  float64 `json:"open_files_per_node"`
		StoreBytesPerNode float64 `json:"store_bytes_per_node"`
		Note              string  `json:"note"`
	} `json:"resources"`
	Timeline    []bucket    `json:"timeline"`
	Discoveries []discovery `json:"discoveries"`
	Pass        bool        `json:"pass"`
	Verdict     string      `json:"verdict"`
}

type discoveryStats struct {
	Incarnations int     `json:"incarnations"`
	FirstFound   int     `json:"found_first"`
	FirstP50S    float64 `json:"first_p50_s"`
	FirstP99S    float64 `json:"first_p99_s"`
	K            int     `json:"k"`
	KFound       int     `json:"found_k"`
	KP50S        float64 `json:"k_p50_s"`
	KP99S        float64 `json:"k_p99_s"`
}

func (s *swarm) logf(format string, args ...any) {
	if !s.cfg.quiet {
		fmt.Fprintf(os.Stderr, "%6.1fs  "+format+"\n", append([]any{time.Since(s.t0).Seconds()}, args...)...)
	}
}

func run(ctx context.Context, c *config) (*report, error) {
	if _, ok := transports[c.Transport]; !ok {
		return nil, fmt.Errorf("unknown transport %q", c.Transport)
	}
	dir := c.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "p2pkex-swarm-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	s := &swarm{cfg: c, byID: map[peer.ID]*member{}, msg: make([]byte, c.MsgSize), examples: map[string][]string{}, t0: time.Now(),
		pairs: map[[2]int]bool{}, byAge: map[string]*split{}, byContact: map[string]*split{}}
	s.lastSample = s.t0
	s.exchanges.FailedLive, s.messages.FailedLive = map[string]int64{}, map[string]int64{}
	for i := range c.Nodes {
		s.members = append(s.members, &member{idx: i, boot: i < c.Bootstrap, dir: filepath.Join(dir, fmt.Sprintf("node%03d", i))})
	}
	defer s.stopAll()

	// Bootstrap nodes first: the others need their addresses.
	for _, m := range s.members[:c.Bootstrap] {
		if err := s.start(m); err != nil {
			return nil, err
		}
		m.mu.Lock()
		ai := peer.AddrInfo{ID: m.id, Addrs: m.inc.n.Host().Addrs()}
		m.mu.Unlock()
		s.bootInfo = append(s.bootInfo, ai)
	}
	sem := make(chan struct{}, c.StartParallel)
	var wg sync.WaitGroup
	var startErr atomic.Pointer[error]
	for _, m := range s.members[c.Bootstrap:] {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.start(m); err != nil {
				startErr.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if e := startErr.Load(); e != nil {
		return nil, *e
	}
	startAll := time.Since(s.t0)
	s.logf("%d nodes started (%d bootstrap)", c.Nodes, c.Bootstrap)

	stopProfile, err := toolio.StartCPUProfile(c.cpuProfile)
	if err != nil {
		return nil, err
	}
	defer stopProfile()
	runStart := time.Now()
	cpu0 := procstat.CPU()
	end := runStart.Add(c.duration)
	var churnWG sync.WaitGroup
	if c.churnPeriod > 0 && c.ChurnFraction > 0 {
		churnWG.Add(1)
		go func() {
			defer churnWG.Done()
			s.churn(ctx, end)
		}()
	}
	s.sched = newSchedSampler()
	lastCPU, lastT := cpu0, runStart
	tick := time.NewTicker(c.sample)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-time.After(time.Until(end)):
			done = true
		case <-tick.C:
		}
		now, cpu := time.Now(), procstat.CPU()
		s.sample(now, float64(cpu-lastCPU)/float64(now.Sub(lastT)))
		lastCPU, lastT = cpu, now
	}
	tick.Stop()
	churnWG.Wait() // the last round's nodes are back
	runFor := time.Since(runStart)
	cpu := procstat.CPU() - cpu0

	r := &report{Tool: "swarm", Start: s.t0.UTC(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), Config: c,
		StartAllS: startAll.Seconds(), RunS: runFor.Seconds()}
	// Resources with every node up, before stopping them.
	heap := procstat.HeapAfterGC()
	nodes := float64(c.Nodes)
	res := &r.Resources
	res.CPUSeconds = cpu.Seconds()
	res.CPUCoresUsed = cpu.Seconds() / runFor.Seconds()
	res.CPUMsPerNodePerS = 1000 * res.CPUCoresUsed / nodes
	res.HeapLivePerNode = float64(heap.Live) / nodes
	res.HeapInusePerNode = float64(heap.Inuse) / nodes
	res.RSSPerNode = float64(procstat.RSS()) / nodes
	res.GoroutinesPerNode = float64(runtime.NumGoroutine()) / nodes
	conns, _ := s.conns()
	res.ConnsPerNode = float64(conns) / nodes
	if err := writeProfile("heap", c.heapProfile); err != nil {
		return nil, err
	}
	if err := writeProfile("goroutine", c.goroutineProfile); err != nil {
		return nil, err
	}
	res.OpenFilesPerNode = float64(procstat.OpenFiles()) / nodes
	res.StoreBytesPerNode = float64(procstat.DirSize(dir)) / nodes
	res.Note = "process totals divided by the nodes: every node runs in this one process; the harness's own share is included"

	s.stopAll()
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Exchanges, r.Messages = s.exchanges, s.messages
	r.ExchangesByAge, r.ExchangesByContact = s.byAge, s.byContact
	r.MessagesReceived = s.received.Load()
	r.FailureExamples = s.examples
	r.Churn.Rounds, r.Churn.Leaves, r.Churn.Returns = s.churnRounds, s.leaves, s.returns
	for _, m := range s.members {
		r.Churn.PortsChanged += m.portsNo
	}
	r.Timeline = s.timeline
	r.Discoveries = s.discoveries
	r.Discovery.Initial = discoveryOf(s.discoveries, c.K, func(d discovery) bool { return d.Gen == 0 })
	r.Discovery.Rejoin = discoveryOf(s.discoveries, c.K, func(d discovery) bool { return d.Gen > 0 })
	r.verdict(ctx)
	return r, nil
}

func (r *report) verdict(ctx context.Context) {
	var problems []string
	failed := func(what string, t tally) {
		var n int64
		var causes []string
		for c, k := range t.FailedLive {
			n += k
			causes = append(causes, fmt.Sprintf("%s %d", c, k))
		}
		sort.Strings(causes)
		if n > 0 {
			problems = append(problems, fmt.Sprintf("%d %s failed between live peers (%s)", n, what, strings.Join(causes, ", ")))
		}
	}
	failed("exchanges", r.Exchanges)
	failed("messages", r.Messages)
	if r.Exchanges.AttemptedLive == 0 {
		problems = append(problems, "no exchange between live peers was attempted")
	}
	if ctx.Err() != nil {
		problems = append(problems, "interrupted")
	}
	d := r.Discovery.Initial
	r.Pass = len(problems) == 0
	r.Verdict = fmt.Sprintf("%d nodes, %.0f s, %d churn rounds (%d leaves): exchanges between live peers %d/%d, messages %d/%d, peer gone %d+%d; "+
		"first discovery p50 %.1f s p99 %.1f s, %d peers p50 %.1f s p99 %.1f s (%d/%d nodes); %.2f cores, %.1f ms CPU/s and %.1f MiB RSS per node",
		r.Config.Nodes, r.RunS, len(r.Churn.Rounds), r.Churn.Leaves,
		r.Exchanges.SucceededLive, r.Exchanges.AttemptedLive, r.Messages.SucceededLive, r.Messages.AttemptedLive,
		r.Exchanges.PeerGone, r.Messages.PeerGone,
		d.FirstP50S, d.FirstP99S, d.K, d.KP50S, d.KP99S, d.KFound, d.Incarnations,
		r.Resources.CPUCoresUsed, r.Resources.CPUMsPerNodePerS, r.Resources.RSSPerNode/(1<<20))
	if !r.Pass {
		r.Verdict = "FAIL: " + strings.Join(problems, "; ") + ". " + r.Verdict
	}
}

// discoveryOf summarises the incarnations keep selects.
func discoveryOf(all []discovery, k int, keep func(discovery) bool) discoveryStats {
	st := discoveryStats{K: k}
	var first, kth []float64
	for _, d := range all {
		if !keep(d) {
			continue
		}
		st.Incarnations++
		if d.FirstS >= 0 {
			first = append(first, d.FirstS)
		}
		if d.KS >= 0 {
			kth = append(kth, d.KS)
		}
	}
	st.FirstFound, st.KFound = len(first), len(kth)
	st.FirstP50S, st.FirstP99S = percentile(first, 50), percentile(first, 99)
	st.KP50S, st.KP99S = percentile(kth, 50), percentile(kth, 99)
	return st
}

// percentile is the nearest-rank percentile of xs; -1 for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// transports are the listen addresses of -transport: the daemon's default
// ones (node.DefaultListenAddrs) on loopback, or one of them.
var transports = map[string][]string{
	"both": {"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
	"quic": {"/ip4/127.0.0.1/udp/0/quic-v1"},
	"tcp":  {"/ip4/127.0.0.1/tcp/0"},
}

// listenAddrs are the -transport's listen addresses, or the ports a
// member's first incarnation got.
func (m *member) listenAddrs(transport string) []string {
	if m.listen != nil {
		return m.listen
	}
	return transports[transport]
}

// start opens m's store and node and starts its work.
func (s *swarm) start(m *member) error {
	c := s.cfg
	store, err := peerstore.OpenBolt(m.dir)
	if err != nil {
		return fmt.Errorf("node %d: %w", m.idx, err)
	}
	dhtOpts := []node.DHTOption{node.WithDiscoveryInterval(c.discoveryInterval)}
	if m.boot {
		dhtOpts = append(dhtOpts, node.WithDHTMode(node.DHTModeServer))
	} else {
		dhtOpts = append(dhtOpts, node.WithDHTMode(c.dhtMode))
	}
	opts := func(listen []string) []node.Option {
		return []node.Option{node.WithStore(store), node.WithListenAddrs(listen...), node.WithDHT(s.bootInfo, dhtOpts...)}
	}
	m.mu.Lock()
	listen := m.listenAddrs(c.Transport)
	m.mu.Unlock()
	started := time.Now()
	n, err := node.New(context.Background(), opts(listen)...)
	if err != nil && m.listen != nil {
		// The ports were taken while the node was away: come back on new
		// ones (peers then need the DHT to find it again).
		m.mu.Lock()
		m.portsNo++
		m.mu.Unlock()
		s.logf("node %d: ports taken (%v), new ones", m.idx, err)
		started = time.Now()
		n, err = node.New(context.Background(), opts(transports[c.Transport])...)
	}
	if err != nil {
		store.Close()
		return fmt.Errorf("node %d: %w", m.idx, err)
	}
	inc := &incarnation{n: n, store: store, start: started}
	ctx, cancel := context.WithCancel(context.Background())
	inc.cancel = cancel
	msgs, stopMsgs := n.Messages(0)
	inc.stopMsgs = stopMsgs
	inc.done.Add(2)
	go func() {
		defer inc.done.Done()
		for range msgs {
			s.received.Add(1)
		}
	}()

	m.mu.Lock()
	if m.listen == nil {
		for _, a := range n.Host().Network().ListenAddresses() {
			m.listen = append(m.listen, a.String())
		}
	}
	inc.gen = m.gens
	m.gens++
	if m.id == "" {
		m.id = n.ID()
		s.mu.Lock()
		s.byID[m.id] = m
		s.mu.Unlock()
	}
	if k := len(m.away); k > 0 {
		m.away[k-1].to = time.Now()
	}
	m.inc = inc
	m.mu.Unlock()

	go func() {
		defer inc.done.Done()
		s.work(ctx, m, inc)
	}()
	return nil
}

// stop makes m leave: it is away from now on, its work stops, and its
// node and store close. It records what the incarnation discovered.
func (s *swarm) stop(m *member) {
	m.mu.Lock()
	inc := m.inc
	if inc == nil {
		m.mu.Unlock()
		return
	}
	m.inc = nil
	m.away = append(m.away, span{from: time.Now()})
	m.mu.Unlock()
	inc.cancel()
	d := discovered(inc, s.cfg.K, m.idx)
	if err := inc.n.Close(); err != nil {
		s.logf("node %d: close: %v", m.idx, err)
	}
	if err := inc.store.Close(); err != nil {
		s.logf("node %d: close store: %v", m.idx, err)
	}
	inc.stopMsgs()
	inc.done.Wait()
	s.mu.Lock()
	s.discoveries = append(s.discoveries, d)
	s.mu.Unlock()
}

// stopAll stops every member still running.
func (s *swarm) stopAll() {
	var wg sync.WaitGroup
	// Many at once: a Close waits for the node's inbound exchanges, which
	// the closing of their initiators ends only at a phase timeout.
	sem := make(chan struct{}, 64)
	for _, m := range s.members {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.stop(m)
		}()
	}
	wg.Wait()
}

// discovered summarises what inc's node discovered since it started.
func discovered(inc *incarnation, k, idx int) discovery {
	d := discovery{Node: idx, Gen: inc.gen, FirstS: -1, KS: -1, LivedS: time.Since(inc.start).Seconds()}
	var firsts []float64
	for _, p := range inc.n.DiscoveredPeers() {
		firsts = append(firsts, p.First.Sub(inc.start).Seconds())
	}
	sort.Float64s(firsts)
	d.Discovered = len(firsts)
	if len(firsts) > 0 {
		d.FirstS = firsts[0]
	}
	if len(firsts) >= k {
		d.KS = firsts[k-1]
	}
	return d
}

// work runs inc's exchanges and messages until ctx ends.
func (s *swarm) work(ctx context.Context, m *member, inc *incarnation) {
	rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(m.idx)<<20|uint64(inc.gen)))
	iv := s.cfg.opInterval
	for {
		wait := iv/2 + time.Duration(rng.Int64N(int64(iv)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		peers := inc.n.DiscoveredPeers()
		if len(peers) == 0 {
			continue
		}
		s.mu.Lock()
		target := s.byID[peers[rng.IntN(len(peers))].ID]
		s.mu.Unlock()
		if target == nil {
			continue // not one of ours; cannot happen on loopback with our bootstrap list
		}
		s.op(ctx, m, inc, target)
	}
}

// op runs one exchange with p and, if it succeeded, one message, and
// counts them.
func (s *swarm) op(ctx context.Context, m *member, inc *incarnation, p *member) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.opTimeout)
	defer cancel()
	t0 := time.Now()
	age := min(t0.Sub(inc.start), t0.Sub(p.incStart())) // p away: peer gone, not split
	_, xerr := inc.n.Exchange(ctx, p.id)
	t1 := time.Now()
	s.count(&s.exchanges, m, p, t0, t1, xerr, "exchange")
	s.split(m, p, t0, t1, age, xerr)
	if xerr != nil {
		return
	}
	merr := inc.n.Send(ctx, p.id, s.msg)
	s.count(&s.messages, m, p, t1, time.Now(), merr, "message")
}

// split counts an exchange between live peers by its class (age, first
// contact) and records a pair's first success.
func (s *swarm) split(m, p *member, t0, t1 time.Time, age time.Duration, err error) {
	if !m.up(t0, t1) || !p.up(t0, t1) {
		return
	}
	pair := [2]int{min(m.idx, p.idx), max(m.idx, p.idx)}
	s.mu.Lock()
	defer s.mu.Unlock()
	contact := "repeat"
	if !s.pairs[pair] {
		contact = "first"
	}
	for _, c := range []struct {
		m   map[string]*split
		key string
	}{{s.byAge, ageClass(age)}, {s.byContact, contact}} {
		sp := c.m[c.key]
		if sp == nil {
			sp = &split{Failed: map[string]int64{}}
			c.m[c.key] = sp
		}
		sp.Attempted++
		if err != nil {
			sp.Failed[classify(err)]++
		}
	}
	if err == nil {
		s.pairs[pair] = true
	}
}

func (s *swarm) count(t *tally, m, p *member, t0, t1 time.Time, err error, what string) {
	live := m.up(t0, t1) && p.up(t0, t1)
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Attempted++
	if what == "exchange" {
		s.cur.Exchanges++
	}
	switch {
	case err == nil:
		t.Succeeded++
		if live {
			t.SucceededLive++
		} else {
			t.SucceededGone++
		}
		if what == "exchange" {
			s.cur.ExchangesOK++
		} else {
			s.cur.MessagesOK++
		}
	case !live:
		t.PeerGone++
		s.cur.FailedGone++
	default:
		c := classify(err)
		t.FailedLive[c]++
		s.cur.FailedLive++
		key := what + " " + c
		if len(s.examples[key]) < 5 {
			s.examples[key] = append(s.examples[key], fmt.Sprintf("node %d -> node %d at %.1f s after %.1f s: %v",
				m.idx, p.idx, t0.Sub(s.t0).Seconds(), t1.Sub(t0).Seconds(), err))
		}
	}
	if live {
		t.AttemptedLive++
	}
}

// classify names the cause of a failure between live peers.
func classify(err error) string {
	var abort *protocolAbort
	switch {
	case isBackoff(err):
		return causeBackoff
	case isPeerTimeout(err):
		return causePeerTO
	case isDial(err) && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)):
		return causeDialTO
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		return causeTimeout
	case errors.As(err, &abort) || isRefusal(err):
		return causeRefused
	case isDial(err):
		return causeDial
	}
	return causeOther
}

// churn makes a fraction of the nodes leave and come back every period
// until end.
func (s *swarm) churn(ctx context.Context, end time.Time) {
	c := s.cfg
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 1<<63))
	count := int(math.Round(c.ChurnFraction * float64(c.Nodes)))
	count = max(1, min(count, c.Nodes-c.Bootstrap))
	// Rounds at fixed times (one period after the start, two, ...), not a
	// period after the last round ended, which under load comes late.
	next := time.Now()
	for {
		next = next.Add(c.churnPeriod)
		if next.Add(c.down).After(end) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		idx := rng.Perm(c.Nodes - c.Bootstrap)[:count]
		leaving := make([]*member, 0, count)
		for _, i := range idx {
			leaving = append(leaving, s.members[c.Bootstrap+i])
		}
		s.mu.Lock()
		s.churnRounds = append(s.churnRounds, time.Since(s.t0).Seconds())
		s.leaves += len(leaving)
		s.mu.Unlock()
		s.logf("churn: %d nodes leave", len(leaving))
		var wg sync.WaitGroup
		for _, m := range leaving {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.stop(m)
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
		case <-time.After(c.down):
		}
		for _, m := range leaving {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.start(m); err != nil {
					s.logf("node %d did not come back: %v", m.idx, err)
					s.mu.Lock()
					s.startErrs = append(s.startErrs, err.Error())
					s.mu.Unlock()
					return
				}
				s.mu.Lock()
				s.returns++
				s.mu.Unlock()
			}()
		}
		wg.Wait()
		s.logf("churn: %d nodes back", len(leaving))
	}
}

// writeProfile writes the named runtime profile to file, if one is asked
// for.
func writeProfile(name, file string) error {
	if file == "" {
		return nil
	}
	return toolio.WriteProfile(name, file)
}

// conns counts the open connections of the live nodes (both ends of a
// connection between two of them count) and those over QUIC.
func (s *swarm) conns() (all, quic int) {
	for _, m := range s.members {
		m.mu.Lock()
		if inc := m.inc; inc != nil {
			for _, c := range inc.n.Host().Network().Conns() {
				all++
				if c.ConnState().Transport == "quic-v1" {
					quic++
				}
			}
		}
		m.mu.Unlock()
	}
	return all, quic
}

// sample closes the timeline's current bucket.
func (s *swarm) sample(now time.Time, cores float64) {
	live, disc := 0, 0
	for _, m := range s.members {
		m.mu.Lock()
		if inc := m.inc; inc != nil {
			live++
			disc += len(inc.n.DiscoveredPeers())
		}
		m.mu.Unlock()
	}
	conns, quic := s.conns()
	sf := s.sched.read()
	heapLive := procstat.LiveHeapAtLastGC() // no forced collection: its CPU would count as the nodes'
	s.mu.Lock()
	b := s.cur
	s.cur = bucket{}
	b.T = now.Sub(s.t0).Seconds()
	b.LiveNodes = live
	b.CPUCores = cores
	b.HeapLive = heapLive
	b.DurS = now.Sub(s.lastSample).Seconds()
	s.lastSample = now
	b.RSS = procstat.RSS()
	b.Goroutines = runtime.NumGoroutine()
	b.OpenFiles = procstat.OpenFiles()
	if live > 0 {
		b.DiscoveredMean = float64(disc) / float64(live)
		b.ConnsMean = float64(conns) / float64(live)
	}
	if conns > 0 {
		b.QUICShare = float64(quic) / float64(conns)
	}
	b.SchedP50Ms, b.SchedP99Ms, b.GCShare = sf.P50Ms, sf.P99Ms, sf.GCShare
	s.timeline = append(s.timeline, b)
	s.mu.Unlock()
	s.logf("live %d, discovered %.1f per node, exchanges %d ok %d, peer gone %d, failed between live peers %d, messages ok %d; %.2f cores (GC %.0f %%), ready goroutines waited p50 %.1f ms p99 %.0f ms; heap %.0f MiB, rss %.0f MiB, %d goroutines, %d files, %.1f conns per node (%.0f %% QUIC)",
		live, b.DiscoveredMean, b.Exchanges, b.ExchangesOK, b.FailedGone, b.FailedLive, b.MessagesOK, cores, 100*b.GCShare,
		b.SchedP50Ms, b.SchedP99Ms, float64(b.HeapLive)/(1<<20), float64(b.RSS)/(1<<20), b.Goroutines, b.OpenFiles, b.ConnsMean, 100*b.QUICShare)
}
