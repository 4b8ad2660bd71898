package bench

// "p2pkex bench": runs on each store in turn (--store both, --runs), and
// first contacts from many new identities (--keys both --peers N).

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"

	"github.com/p2pkex/p2pkex/internal/procstat"
	"github.com/p2pkex/p2pkex/internal/toolio"
	"github.com/p2pkex/p2pkex/node"
	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// newFloorWork returns the crypto floor of one exchange as a function to
// run repeatedly: protocol.Floor (seal, sign, verify, open, both sides),
// and for first contacts (cfg.fresh) also what each side must do with the
// record the other sent in phase 2: check its envelope's signature and
// parse it (protocol.ParsePeerRecord).
func newFloorWork(cfg *Config) (func() error, error) {
	f, err := protocol.NewFloor(cfg.Suite)
	if err != nil {
		return nil, err
	}
	if !cfg.fresh {
		return f.Exchange, nil
	}
	type side struct {
		id  peer.ID
		env []byte
	}
	var sides [2]side
	for i := range sides {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		xk, err := protocol.NewExchangeKey(sk, []protocol.Suite{cfg.Suite}, 1, time.Now(), protocol.DefaultRecordLifetime)
		if err != nil {
			return nil, err
		}
		if sides[i].id, err = peer.IDFromPrivateKey(sk); err != nil {
			return nil, err
		}
		sides[i].env = xk.Envelope
	}
	return func() error {
		if err := f.Exchange(); err != nil {
			return err
		}
		now := time.Now()
		for _, s := range sides {
			if _, err := protocol.ParsePeerRecord(s.env, s.id, now); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// Series is the summary of --store both or --runs above 1.
type Series struct {
	Runs    []*Summary          `json:"runs"`
	Medians map[string]*Medians `json:"medians"` // by store, or by setup (and store)
	Setups  []string            `json:"setups,omitempty"`
	// The bbolt run's rate over the in-memory run's: of the medians, and
	// of each round's pair (the two stores run back to back).
	RatioRateBoltVsMemory      float64   `json:"ratio_rate_bolt_vs_memory,omitempty"`
	RatioRateBoltVsMemoryPairs []float64 `json:"ratio_rate_bolt_vs_memory_pairs,omitempty"`
	RatioCPUBoltVsMemory       float64   `json:"ratio_cpu_bolt_vs_memory,omitempty"`
	LoadAvgAfter               string    `json:"loadavg_after,omitempty"`
}

// Medians: the median of the runs of one store, then the lowest and
// the highest run.
type Medians struct {
	Runs                   int        `json:"runs"`
	Failures               int        `json:"failures"`
	ExchangesPerS          [3]float64 `json:"exchanges_per_s"`
	CPUSPerExch            [3]float64 `json:"cpu_s_per_exchange"`
	RatioCPUVsFloorInLoad  [3]float64 `json:"ratio_cpu_vs_floor_in_load"`
	RatioRateVsFloorInLoad [3]float64 `json:"ratio_rate_vs_floor_in_load"`
	RatioCPUVsFloor        [3]float64 `json:"ratio_cpu_vs_floor"`
	RatioRateVsFloor       [3]float64 `json:"ratio_rate_vs_floor"`
	P50Ms                  [3]float64 `json:"p50_ms"`
	P99Ms                  [3]float64 `json:"p99_ms"`
	// The null exchanges of every run: their CPU, the floor plus them,
	// and the exchanges' own share beyond that.
	NullCPUSPerExch        [3]float64 `json:"null_cpu_s_per_exchange"`
	RatioNullVsFloorInLoad [3]float64 `json:"ratio_null_vs_floor_in_load"`
	RatioFloorNullInLoad   [3]float64 `json:"ratio_floor_plus_null_vs_floor_in_load"`
	RatioOwnVsFloorInLoad  [3]float64 `json:"ratio_own_vs_floor_in_load"`
}

func spread(xs []float64) [3]float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return [3]float64{s[len(s)/2], s[0], s[len(s)-1]}
}

// runSeries runs the bench cfg.Runs times per case (store, and connection
// setup if cfg.Setups are given), turning the order of the cases round by
// one each round (bolt, memory; then memory, bolt; ...) so that the
// machine's drift falls on all alike and shows as the spread. The mocknet
// round trips are measured in the first run only; every run measures its
// null exchanges.
func runSeries(ctx context.Context, cfg *Config, progress io.Writer) (*Series, error) {
	stores := []string{cfg.Store}
	if cfg.Store == "both" {
		stores = []string{"bolt", "memory"}
	}
	type benchCase struct{ label, store, setup string }
	var cases []benchCase
	for _, st := range stores {
		if len(cfg.Setups) == 0 {
			cases = append(cases, benchCase{st, st, ""})
		}
		for _, su := range cfg.Setups {
			label := su
			if len(stores) > 1 {
				label = st + " " + su
			}
			cases = append(cases, benchCase{label, st, su})
		}
	}
	out := &Series{Medians: map[string]*Medians{}, Setups: cfg.Setups}
	byStore := map[string][]*Summary{}
	for r := range cfg.Runs {
		order := slices.Clone(cases)
		k := r % len(order)
		order = append(order[k:], order[:k]...)
		rates := map[string]float64{}
		for _, cs := range order {
			c := *cfg
			c.Store, c.Setups, c.setupName = cs.store, nil, cs.setup
			if cs.setup != "" {
				if err := c.setup(cs.setup); err != nil {
					return nil, err
				}
			}
			c.noRTTs = len(out.Runs) > 0
			if cfg.CPUProfile != "" {
				// One profile a run: FILE.1, FILE.2, ... in the order run.
				c.CPUProfile = fmt.Sprintf("%s.%d", cfg.CPUProfile, len(out.Runs)+1)
			}
			if cfg.CPUProfileExchanges != "" {
				c.CPUProfileExchanges = fmt.Sprintf("%s.%d", cfg.CPUProfileExchanges, len(out.Runs)+1)
			}
			fmt.Fprintf(progress, "bench: run %d of %d, %s\n", r+1, cfg.Runs, cs.label)
			sum, err := runOne(ctx, &c, progress)
			if err != nil {
				return nil, fmt.Errorf("run %d, %s: %w", r+1, cs.label, err)
			}
			out.Runs = append(out.Runs, sum)
			byStore[cs.label] = append(byStore[cs.label], sum)
			rates[cs.label] = sum.ExchangesPerS
		}
		if rates["memory"] > 0 && rates["bolt"] > 0 {
			out.RatioRateBoltVsMemoryPairs = append(out.RatioRateBoltVsMemoryPairs, rates["bolt"]/rates["memory"])
		}
	}
	for st, runs := range byStore {
		m := &Medians{Runs: len(runs)}
		pick := func(f func(*Summary) float64) [3]float64 {
			var xs []float64
			for _, s := range runs {
				xs = append(xs, f(s))
			}
			return spread(xs)
		}
		for _, s := range runs {
			m.Failures += s.Failures
		}
		m.ExchangesPerS = pick(func(s *Summary) float64 { return s.ExchangesPerS })
		m.CPUSPerExch = pick(func(s *Summary) float64 { return s.CPUSPerExch })
		m.RatioCPUVsFloorInLoad = pick(func(s *Summary) float64 { return s.RatioCPUVsFloorInLoad })
		m.RatioRateVsFloorInLoad = pick(func(s *Summary) float64 { return s.RatioRateVsFloorInLoad })
		m.RatioCPUVsFloor = pick(func(s *Summary) float64 { return s.RatioCPUVsFloor })
		m.RatioRateVsFloor = pick(func(s *Summary) float64 { return s.RatioRateVsFloor })
		m.P50Ms = pick(func(s *Summary) float64 { return s.P50Ms })
		m.P99Ms = pick(func(s *Summary) float64 { return s.P99Ms })
		m.NullCPUSPerExch = pick(func(s *Summary) float64 { return s.NullCPUSPerExch })
		m.RatioNullVsFloorInLoad = pick(func(s *Summary) float64 { return s.RatioNullVsFloorInLoad })
		m.RatioFloorNullInLoad = pick(func(s *Summary) float64 { return s.RatioFloorNullInLoad })
		m.RatioOwnVsFloorInLoad = pick(func(s *Summary) float64 { return s.RatioOwnVsFloorInLoad })
		out.Medians[st] = m
	}
	if b, m := out.Medians["bolt"], out.Medians["memory"]; b != nil && m != nil {
		out.RatioRateBoltVsMemory = b.ExchangesPerS[0] / m.ExchangesPerS[0]
		out.RatioCPUBoltVsMemory = b.CPUSPerExch[0] / m.CPUSPerExch[0]
		fmt.Fprintf(progress, "bench: bolt/memory rate %.3f (median of %d runs each; pairs %.3f)\n",
			out.RatioRateBoltVsMemory, cfg.Runs, out.RatioRateBoltVsMemoryPairs)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		out.LoadAvgAfter = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return out, nil
}

// freshIdentity is one first contact's initiator, made before the timed
// part: its identity and its exchange key, in a store of its own.
type freshIdentity struct {
	sk    crypto.PrivKey
	store ps.Store
}

func makeFreshIdentity(cfg *Config) (freshIdentity, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return freshIdentity{}, err
	}
	xk, err := protocol.NewExchangeKey(sk, []protocol.Suite{cfg.Suite}, 1, time.Now(), protocol.DefaultRecordLifetime)
	if err != nil {
		return freshIdentity{}, err
	}
	priv, err := xk.PrivateKeys()
	if err != nil {
		return freshIdentity{}, err
	}
	rec := ps.ExchangeKey{Seq: xk.Seq, Record: xk.Envelope, Created: xk.Created}
	for _, s := range xk.Suites() {
		rec.Keys = append(rec.Keys, ps.SuiteKey{Suite: uint16(s), Private: priv[s]})
	}
	st := ps.NewMemory() // the initiators' stores are not what is measured
	if err := errors.Join(st.SetIdentity(sk), st.RotateExchangeKey(rec, time.Now(), 0)); err != nil {
		return freshIdentity{}, err
	}
	return freshIdentity{sk: sk, store: st}, nil
}

// runFresh is the load of first contacts: cfg.Peers new identities, each
// making one exchange with the responder, which stores every one of them
// (both records are sent: neither side knows the other). The identities
// and their exchange keys are made first. Then, cfg.Concurrency at a time:
// their hosts are made and connected to the responder (libp2p's
// handshake), outside the timing; the exchanges run, all of the group at
// once, timed; the initiators are closed, outside the timing. Afterwards
// the responder's store is measured: its size, the heap the responder
// holds per peer it now knows, and, reopened, its open time and lookups.
func runFresh(ctx context.Context, cfg *Config, sum *Summary, say func(string, ...any), progress io.Writer) error {
	sum.FreshIdentities = cfg.Peers
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits), rcmgr.WithMetricsDisabled())
	if err != nil {
		return err
	}
	cm, err := connmgr.NewConnManager(cfg.Concurrency*4+16, cfg.Concurrency*8+32)
	if err != nil {
		return err
	}
	listen, security := connOptions(cfg)
	common := []node.Option{node.WithSuites(cfg.Suite), node.WithNoticeSize(cfg.NoticeSize)}
	respDir := ""
	var respStore ps.Store
	if cfg.Store == "bolt" {
		// A directory of its own: the runs of a series share storeRoot.
		if respDir, err = os.MkdirTemp(cfg.storeRoot, "responder-"); err == nil {
			respStore, err = ps.OpenBolt(respDir)
		}
	} else {
		respStore = ps.NewMemory()
	}
	if err != nil {
		rm.Close()
		return err
	}
	storeClosed := false
	defer func() {
		if !storeClosed {
			respStore.Close()
		}
	}()
	respOpts := slices.Concat(common, []node.Option{node.WithListenAddrs(listen),
		node.WithInboundLimits(max(node.DefaultMaxInbound, 2*cfg.Concurrency), node.DefaultMaxInboundPerPeer),
		// Every initiator comes from 127.0.0.1: one origin.
		node.WithOriginLimit(max(node.DefaultMaxInboundPerOrigin, 2*cfg.Concurrency), node.DefaultOriginPrefixV4, node.DefaultOriginPrefixV6),
		node.WithLibp2pOptions(slices.Concat(security, []libp2p.Option{libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm)})...)})
	hostOpts, err := node.HostOptions(respOpts...)
	if err != nil {
		rm.Close()
		return err
	}
	rh, err := libp2p.New(hostOpts...)
	if err != nil {
		rm.Close()
		return err
	}
	defer rh.Close()
	resp, err := node.New(ctx, slices.Concat(respOpts, []node.Option{node.WithHost(rh), node.WithStore(respStore)})...)
	if err != nil {
		return fmt.Errorf("responder: %w", err)
	}
	respClosed := false
	defer func() {
		if !respClosed {
			resp.Close()
		}
	}()
	target := peer.AddrInfo{ID: resp.ID(), Addrs: rh.Addrs()}

	runtime.GC()
	var heap0 runtime.MemStats
	runtime.ReadMemStats(&heap0)

	say("making %d identities and their exchange keys (not timed)", cfg.Peers)
	ids := make([]freshIdentity, cfg.Peers)
	{
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, runtime.GOMAXPROCS(0))
		for w := range errs {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(len(ids)) && errs[w] == nil; i = next.Add(1) - 1 {
					ids[i], errs[w] = makeFreshIdentity(cfg)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}

	say("load: %d first contacts, %d at a time", cfg.Peers, cfg.Concurrency)
	// The profile covers the untimed parts of the load too (the hosts,
	// libp2p's handshakes, the initiators' Close): they run between the
	// timed groups.
	stopProfile, err := toolio.StartCPUProfile(cfg.CPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if cfg.CPUProfileExchanges != "" {
		if err := os.MkdirAll(cfg.CPUProfileExchanges, 0o755); err != nil {
			return err
		}
	}
	probe := startFloorProbe(cfg)
	var (
		latencies      = make([]time.Duration, 0, cfg.Peers)
		failures       []string
		failed         int
		timedCPU       time.Duration
		timedWall      time.Duration
		mu             sync.Mutex
		lastProgress   = time.Now()
		start, cpuAll0 = time.Now(), procstat.CPU()
	)
	for lo := 0; lo < len(ids) && ctx.Err() == nil; lo += cfg.Concurrency {
		group := ids[lo:min(lo+cfg.Concurrency, len(ids))]
		nodes := make([]*node.Node, len(group))
		errs := make([]error, len(group))
		var wg sync.WaitGroup
		// Not timed: the hosts, and libp2p's connection to the responder.
		for i, id := range group {
			wg.Go(func() { nodes[i], errs[i] = startFresh(ctx, common, security, id, target) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			for _, n := range nodes {
				if n != nil {
					n.Close()
					n.Host().Close()
				}
			}
			probe.finish()
			return fmt.Errorf("first-contact initiators: %w", err)
		}
		// Not timed: the responder's identify of the new connections
		// (the initiators' ran in Connect), and a collection of the
		// garbage of making the group's hosts. Both belong to the
		// connections, counted in cpu_s_per_first_contact_all; left to run
		// on into the timed part they were charged to the exchanges.
		settle(ctx, rh, nodes)
		// Timed: the exchanges (and their own profile, if asked for).
		stopGroupProfile := func() {}
		if cfg.CPUProfileExchanges != "" {
			if stopGroupProfile, err = toolio.StartCPUProfile(filepath.Join(cfg.CPUProfileExchanges, fmt.Sprintf("%06d.prof", lo))); err != nil {
				probe.finish()
				return err
			}
		}
		t0, c0 := time.Now(), procstat.CPU()
		for _, n := range nodes {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, benchExchangeWait)
				defer cancel()
				t := time.Now()
				info, err := n.Exchange(ctx, resp.ID())
				d := time.Since(t)
				if err == nil && (!info.SentOwnKey || !info.ReceivedPeerKey) {
					err = errors.New("a first contact without both records sent")
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					if len(failures) < 5 {
						failures = append(failures, err.Error())
					}
					return
				}
				latencies = append(latencies, d)
			})
		}
		wg.Wait()
		timedCPU += procstat.CPU() - c0
		timedWall += time.Since(t0)
		stopGroupProfile()
		// Not timed: the initiators go, as a visitor does.
		for i, n := range nodes {
			wg.Go(func() {
				n.Close()
				n.Host().Close()
				group[i].store.Close()
				group[i] = freshIdentity{}
			})
		}
		wg.Wait()
		if time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			done := lo + len(group)
			fmt.Fprintf(progress, "bench: %6.1fs  %d done, %d failed, %.0f/s timed\n",
				time.Since(start).Seconds(), done, failed, float64(len(latencies))/timedWall.Seconds())
		}
	}
	wallAll, cpuAll := time.Since(start), procstat.CPU()-cpuAll0
	stopProfile()
	probe.finish()
	if err := ctx.Err(); err != nil {
		return err
	}
	if probe.err != nil {
		return fmt.Errorf("crypto floor beside the load: %w", probe.err)
	}
	// The probe ran throughout: take out its share of the timed part.
	probeTimed := time.Duration(float64(probe.cpu) * timedWall.Seconds() / wallAll.Seconds())
	if probe.n > 0 {
		sum.FloorInLoadCPUS = (probe.cpu / time.Duration(probe.n)).Seconds()
		sum.FloorInLoadSamples = probe.n
	}
	slices.Sort(latencies)
	sum.Exchanges = len(latencies)
	sum.Failures = failed
	sum.FailureSample = failures
	sum.WallS = timedWall.Seconds()
	if len(latencies) > 0 {
		sum.ExchangesPerS = float64(len(latencies)) / timedWall.Seconds()
		sum.P50Ms = ms(percentile(latencies, 0.50))
		sum.P90Ms = ms(percentile(latencies, 0.90))
		sum.P99Ms = ms(percentile(latencies, 0.99))
		sum.MaxMs = ms(latencies[len(latencies)-1])
		sum.CPUSPerExch = (timedCPU - probeTimed).Seconds() / float64(len(latencies))
		sum.CoresUsed = timedCPU.Seconds() / timedWall.Seconds()
		sum.CPUSPerContactAll = (cpuAll - probe.cpu).Seconds() / float64(len(latencies))
		sum.ContactsPerSAll = float64(len(latencies)) / wallAll.Seconds()
	}
	say("load done: %d first contacts, %d failed, %.0f/s timed (%.0f/s with the connections), p50 %.2f ms, p99 %.2f ms",
		sum.Exchanges, sum.Failures, sum.ExchangesPerS, sum.ContactsPerSAll, sum.P50Ms, sum.P99Ms)

	if err := nullFirstContacts(ctx, cfg, rh, resp, target, common, security, sum, say); err != nil {
		return fmt.Errorf("null first contacts: %w", err)
	}

	// What the responder holds per peer it knows.
	ids = nil
	peers, err := respStore.Peers()
	if err != nil {
		return err
	}
	sum.KnownPeers = len(peers)
	waitForRest(5 * time.Second)
	runtime.GC()
	var heap1 runtime.MemStats
	runtime.ReadMemStats(&heap1)
	if sum.KnownPeers > 0 {
		sum.HeapPerKnownPeer = (float64(heap1.HeapInuse) - float64(heap0.HeapInuse)) / float64(sum.KnownPeers)
	}
	respClosed = true
	if err := resp.Close(); err != nil {
		return err
	}
	storeClosed = true
	if err := respStore.Close(); err != nil {
		return err
	}
	if respDir == "" {
		return nil
	}
	for _, name := range []string{ps.BoltFileName, ps.KeysFileName} {
		fi, err := os.Stat(filepath.Join(respDir, name))
		if err != nil {
			return err
		}
		sum.StoreBytes += fi.Size()
	}
	if sum.KnownPeers > 0 {
		sum.StoreBytesPerPeer = float64(sum.StoreBytes) / float64(sum.KnownPeers)
	}
	return measureStore(respDir, peers, sum)
}

// startFresh starts the node of a fresh identity and connects it to the
// responder at target (libp2p's handshake, identify).
func startFresh(ctx context.Context, common []node.Option, security []libp2p.Option, id freshIdentity, target peer.AddrInfo) (*node.Node, error) {
	opts := slices.Concat(common, []node.Option{node.WithLibp2pOptions(slices.Concat(security,
		[]libp2p.Option{libp2p.NoListenAddrs, libp2p.Identity(id.sk)})...)})
	ho, err := node.HostOptions(opts...)
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(ho...)
	if err != nil {
		return nil, err
	}
	n, err := node.New(ctx, slices.Concat(opts, []node.Option{node.WithHost(h), node.WithStore(id.store)})...)
	if err != nil {
		h.Close()
		return nil, err
	}
	if err := n.Connect(ctx, target); err != nil {
		n.Close()
		h.Close()
		return nil, err
	}
	return n, nil
}

// nullFirstContacts runs the null exchanges of first contacts, after the
// load: one more fresh identity (the scout) makes a first contact with the
// responder, recorded as the null exchanges' script and then forgotten by
// the responder, which so holds only the load's peers; cfg.Concurrency
// hosts connect to the responder and run that script on a new stream each
// time, as a first contact opens one.
func nullFirstContacts(ctx context.Context, cfg *Config, rh host.Host, resp *node.Node, target peer.AddrInfo,
	common []node.Option, security []libp2p.Option, sum *Summary, say func(string, ...any)) error {
	id, err := makeFreshIdentity(cfg)
	if err != nil {
		return err
	}
	defer id.store.Close()
	scout, err := startFresh(ctx, common, security, id, target)
	if err != nil {
		return err
	}
	defer func() {
		scout.Close()
		scout.Host().Close()
	}()
	settle(ctx, rh, []*node.Node{scout})
	steps := recordSteps(scout, resp)
	info, err := scout.Exchange(ctx, resp.ID())
	if err == nil && (!info.SentOwnKey || !info.ReceivedPeerKey) {
		err = errors.New("a first contact without both records sent")
	}
	if err != nil {
		steps()
		return err
	}
	b := benchNodes{responder: resp, initiators: []*node.Node{scout}}
	if err := b.waitInstalled(ctx); err != nil {
		steps()
		return err
	}
	ini, res := steps()
	null, err := newNullExchange(ini, res, cfg.NoticeSize, false)
	if err != nil {
		return err
	}
	if _, err := resp.Forget(scout.ID()); err != nil {
		return err
	}

	hosts := make([]host.Host, cfg.Concurrency)
	defer func() {
		for _, h := range hosts {
			if h != nil {
				h.Close()
			}
		}
	}()
	// The hosts of initiators, as startFresh makes them.
	ho, err := node.HostOptions(slices.Concat(common, []node.Option{node.WithLibp2pOptions(
		slices.Concat(security, []libp2p.Option{libp2p.NoListenAddrs})...)})...)
	if err != nil {
		return err
	}
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Go(func() {
			if hosts[i], errs[i] = libp2p.New(ho...); errs[i] == nil {
				errs[i] = hosts[i].Connect(ctx, target)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	n := min(max(sum.Exchanges, cfg.Concurrency), benchNullMax)
	say("null first contacts: %d, %d in flight (the stream of a first contact, %d writes, without the exchange)", n, cfg.Concurrency, null.writes())
	return runNull(ctx, rh, hosts, null, n, cfg.Concurrency, sum)
}

// settle waits for h's identify of its connections to the nodes, then
// collects the garbage.
func settle(ctx context.Context, h host.Host, nodes []*node.Node) {
	if ids, ok := h.(interface{ IDService() identify.IDService }); ok {
		for _, n := range nodes {
			for _, c := range h.Network().ConnsToPeer(n.ID()) {
				select {
				case <-ids.IDService().IdentifyWait(c):
				case <-ctx.Done():
					return
				}
			}
		}
	}
	runtime.GC()
}

// measureStore reopens the store the load left and times the open and
// lookups of random known peers: the record's state and the active epoch
// (Store.Lookup, what an exchange reads), then the record and the active
// session copied and opened (what the API's keys and a message read).
func measureStore(dir string, peers []ps.PeerKey, sum *Summary) error {
	const lookups = 2000
	t := time.Now()
	st, err := ps.OpenBolt(dir)
	if err != nil {
		return err
	}
	sum.StoreOpenMs = ms(time.Since(t))
	defer st.Close()
	var state, rec, sess []time.Duration
	var b [8]byte
	for range lookups {
		rand.Read(b[:])
		p := peers[int(uint64(b[0])|uint64(b[1])<<8|uint64(b[2])<<16|uint64(b[3])<<24)%len(peers)].Peer
		t := time.Now()
		if s, err := st.Lookup(p); err != nil || !s.Record {
			return fmt.Errorf("lookup of known peer %s after the run: record %v, %v", p, s.Record, err)
		}
		state = append(state, time.Since(t))
		t = time.Now()
		if _, err := st.Peer(p); err != nil {
			return err
		}
		rec = append(rec, time.Since(t))
		t = time.Now()
		if _, err := st.ActiveSession(p); err != nil {
			return err
		}
		sess = append(sess, time.Since(t))
	}
	slices.Sort(state)
	slices.Sort(rec)
	slices.Sort(sess)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	sum.StateLookupP50Us, sum.StateLookupP99Us = us(percentile(state, 0.5)), us(percentile(state, 0.99))
	sum.LookupP50Us, sum.LookupP99Us = us(percentile(rec, 0.5)), us(percentile(rec, 0.99))
	sum.SessionLookupP99Us = us(percentile(sess, 0.99))
	return nil
}
