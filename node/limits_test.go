package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Resource limits (issue 3, item 4): inbound exchanges run in the service
// scope protocol.ServiceName with a memory reservation each; the node's own
// host runs a resource manager that holds that scope to the node's inbound
// limits (resources.go); a burst of simultaneous attempts is cut down to
// exactly the limit's worth, and everything else is refused at once with
// BUSY, while the service scope stays within its configured memory.

// limitAttempts is the size of the burst.
const limitAttempts = 1024

// limitPeer is a libp2p host with one identity and no resource limits of
// its own, which opens exchanges with an honest node by hand.
type limitPeer struct {
	h   host.Host
	sk  crypto.PrivKey
	key *protocol.ExchangeKey
}

func newLimitPeer(t testing.TB) *limitPeer {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
	require.NoError(t, err)
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.NoListenAddrs, libp2p.ResourceManager(rm))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	key, err := protocol.NewExchangeKey(sk, protocol.DefaultSuites(), 1, time.Now(), protocol.DefaultRecordLifetime)
	require.NoError(t, err)
	return &limitPeer{h: h, sk: sk, key: key}
}

// burstOutcome is how one attempt ended, as its opener sees it.
type burstOutcome int

const (
	outcomeNone      burstOutcome = iota
	outcomeProceeded              // the honest node answered START with CONTINUE
	outcomeAbortBusy              // ABORT BUSY
	outcomeResetBusy              // a reset carrying protocol.ResetCode(protocol.ErrBusy)
	outcomeLibp2p                 // a reset by libp2p's resource manager, before the handler
	outcomeOther
)

func (o burstOutcome) String() string {
	return [...]string{"none", "proceeded", "ABORT BUSY", "reset BUSY", "reset by libp2p rcmgr", "other"}[o]
}

// burstAttempt is one exchange a limitPeer opens: START is sent at once, and the
// first answer classified.
type burstAttempt struct {
	p       *limitPeer
	s       network.Stream
	m       *protocol.Machine
	fr      *protocol.FrameReader
	out     []protocol.Frame // the machine's answer to the first frame
	outcome burstOutcome
	err     error
}

// open opens the stream and sends START.
func (lp *limitPeer) open(ctx context.Context, to peer.ID) *burstAttempt {
	a := &burstAttempt{p: lp}
	a.s, a.err = lp.h.NewStream(ctx, to, protocol.ID)
	if a.err != nil {
		a.outcome = classifyRefusal(a.err)
		return a
	}
	a.m, a.err = protocol.NewMachine(protocol.Config{Role: protocol.Initiator, Identity: lp.sk, Remote: to, Own: lp.key, Epoch: 1})
	if a.err != nil {
		a.outcome = outcomeOther
		return a
	}
	start, err := a.m.Start()
	if err != nil {
		a.err, a.outcome = err, outcomeOther
		return a
	}
	if err := protocol.WriteFrames(a.s, [][]byte{start[0].Bytes}); err != nil {
		a.err, a.outcome = err, classifyRefusal(err)
		return a
	}
	a.fr = protocol.NewFrameReader(a.s)
	return a
}

// answer reads and classifies the honest node's first answer.
func (a *burstAttempt) answer() {
	if a.outcome != outcomeNone {
		return
	}
	_ = a.s.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, err := a.fr.ReadFrame(protocol.MaxNoticeSize)
	if err != nil {
		a.err, a.outcome = err, classifyRefusal(err)
		return
	}
	var n pb.Notice
	if err := proto.Unmarshal(f, &n); err != nil {
		a.err, a.outcome = err, outcomeOther
		return
	}
	switch {
	case n.Type == pb.Notice_ABORT && n.Abort.GetStatus() == pb.Status_BUSY:
		a.outcome = outcomeAbortBusy
	case n.Type == pb.Notice_CONTINUE:
		a.outcome = outcomeProceeded
		a.out, a.err = a.m.Consume(f)
		if a.err != nil {
			a.outcome = outcomeOther
		}
	default:
		a.err, a.outcome = fmt.Errorf("first answer %v", n.Type), outcomeOther
	}
}

// classifyRefusal names a refusal the opener read as an error.
func classifyRefusal(err error) burstOutcome {
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote {
		switch se.ErrorCode {
		case protocol.ResetCode(protocol.ErrBusy):
			return outcomeResetBusy
		case network.StreamResourceLimitExceeded:
			return outcomeLibp2p
		}
	}
	return outcomeOther
}

// finish runs a proceeded attempt to its end, honestly.
func (a *burstAttempt) finish() (*protocol.Result, error) {
	out := a.out
	for {
		if len(out) > 0 {
			bufs := make([][]byte, len(out))
			for i, f := range out {
				bufs[i] = f.Bytes
			}
			if err := protocol.WriteFrames(a.s, bufs); err != nil {
				return nil, err
			}
		}
		if a.m.Done() {
			return a.m.Result(), a.s.Close()
		}
		f, err := a.fr.ReadFrame(a.m.MaxFrame())
		if err != nil {
			return nil, err
		}
		if out, err = a.m.Consume(f); err != nil {
			return nil, err
		}
	}
}

// burstResult is what a burst of attempts came to.
type burstResult struct {
	counts   map[burstOutcome]int
	admitted int   // the honest node's inbound count once the burst settled
	peakMem  int64 // the largest service-scope memory sampled during the burst
	peakIn   int   // the most inbound streams sampled in the service scope
	// peakTransient is the most inbound streams sampled in the transient
	// scope, where streams wait until their protocol is negotiated
	peakTransient int
	samples       int
	finished      int // admitted exchanges finished with equal keys
	// proceededAtOnce is how many were answered with CONTINUE before any
	// admitted exchange finished: the others waited.
	proceededAtOnce int
	memLimit        int64 // the service scope's configured memory
	// goroutines in the process before the burst, at its peak (the
	// attempts' own included) and once everything was released
	goroutinesBefore, goroutinesPeak, goroutinesAfter int
}

// refused counts the attempts refused with a status: BUSY, or libp2p's own
// resource-limit reset.
func (r burstResult) refused() int {
	return r.counts[outcomeAbortBusy] + r.counts[outcomeResetBusy] + r.counts[outcomeLibp2p]
}

// burst opens perPeer attempts from each of peers at once against honest,
// while sampling honest's service scope. It returns once every attempt
// proceeded or was refused, except those the honest node admitted to wait,
// and then finishes every admitted exchange honestly, checking that each
// installs the same key on both sides.
func burst(t *testing.T, honest *Node, peers []*limitPeer, perPeer int) burstResult {
	t.Helper()
	total := len(peers) * perPeer
	res := burstResult{counts: map[burstOutcome]int{}}
	res.memLimit = serviceLimit(t, honest.Host()).GetMemoryLimit()

	res.goroutinesBefore = runtime.NumGoroutine()
	// Sample the service scope until the burst is over.
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		rm := honest.Host().Network().ResourceManager()
		for {
			select {
			case <-stopSampling:
				return
			default:
			}
			_ = rm.ViewService(protocol.ServiceName, func(s network.ServiceScope) error {
				st := s.Stat()
				res.peakMem = max(res.peakMem, st.Memory)
				res.peakIn = max(res.peakIn, st.NumStreamsInbound)
				return nil
			})
			_ = rm.ViewTransient(func(s network.ResourceScope) error {
				res.peakTransient = max(res.peakTransient, s.Stat().NumStreamsInbound)
				return nil
			})
			res.goroutinesPeak = max(res.goroutinesPeak, runtime.NumGoroutine())
			res.samples++
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	answers := make(chan *burstAttempt, total)
	var ready sync.WaitGroup
	gate := make(chan struct{})
	for i := range total {
		ready.Add(1)
		go func() {
			lp := peers[i%len(peers)]
			ready.Done()
			<-gate
			a := lp.open(ctx, honest.ID())
			a.answer()
			answers <- a
		}()
	}
	ready.Wait()
	close(gate)

	// The burst has settled when every attempt was answered but those the
	// honest node admitted to wait for their peer's running exchange.
	var attempts []*burstAttempt
	counts := func() (admitted, running int) {
		honest.mu.Lock()
		defer honest.mu.Unlock()
		return honest.inbound, len(honest.slots)
	}
	require.Eventually(t, func() bool {
		for len(answers) > 0 {
			attempts = append(attempts, <-answers)
		}
		admitted, running := counts()
		return admitted > 0 && len(attempts)+admitted-running == total
	}, 60*time.Second, 5*time.Millisecond, "the burst did not settle")
	res.admitted, _ = counts()
	close(stopSampling)
	<-sampled

	// Finish the exchanges that run. The one that waited for each then
	// runs, and is finished in turn.
	answered := map[*limitPeer]int{}
	var queue []*burstAttempt
	for _, a := range attempts {
		answered[a.p]++
		if a.outcome == outcomeProceeded {
			queue = append(queue, a)
		}
	}
	res.proceededAtOnce = len(queue)
	for len(queue) > 0 {
		a := queue[0]
		queue = queue[1:]
		r, err := a.finish()
		require.NoError(t, err)
		var act *ps.SessionKey
		require.Eventually(t, func() bool {
			act, err = honest.ActiveKey(a.p.h.ID())
			return err == nil && act.Epoch == r.Epoch
		}, 10*time.Second, 5*time.Millisecond)
		want := ps.Key(r.Key)
		require.True(t, act.Key.Equal(&want), "the honest node and its peer hold different keys")
		res.finished++
		if answered[a.p] == perPeer {
			continue
		}
		select {
		case b := <-answers:
			require.Same(t, a.p, b.p, "an burstAttempt of another peer was answered")
			require.Equal(t, outcomeProceeded, b.outcome, "the waiting exchange: %v", b.err)
			answered[b.p]++
			attempts = append(attempts, b)
			queue = append(queue, b)
		case <-ctx.Done():
			require.FailNow(t, "the waiting exchange never ran")
		}
	}
	require.Len(t, attempts, total)
	for _, a := range attempts {
		res.counts[a.outcome]++
		if a.outcome == outcomeOther {
			t.Logf("burstAttempt failed otherwise: %v", a.err)
		}
		if a.s != nil {
			_ = a.s.Reset()
		}
	}
	ids := make([]peer.ID, len(peers))
	for i, lp := range peers {
		ids[i] = lp.h.ID()
	}
	requireScopesIdle(t, honest.Host(), ids...)
	require.Eventually(t, func() bool { return nodeIdle(honest) }, 10*time.Second, 5*time.Millisecond)
	// (Not require.Eventually: its condition runs in a goroutine of its own.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		res.goroutinesAfter = runtime.NumGoroutine()
		if res.goroutinesAfter <= res.goroutinesBefore || time.Now().After(deadline) {
			break
		}
	}
	require.LessOrEqual(t, res.goroutinesAfter, res.goroutinesBefore, "goroutines left after the burst")
	return res
}

// transientLimit returns the inbound stream limit of h's transient scope.
func transientLimit(t testing.TB, h host.Host) int {
	t.Helper()
	var n int
	require.NoError(t, h.Network().ResourceManager().ViewTransient(func(s network.ResourceScope) error {
		n = s.(rcmgr.ResourceScopeLimiter).Limit().GetStreamLimit(network.DirInbound)
		return nil
	}))
	return n
}

// serviceLimit returns the limit the resource manager of h applies to the
// exchange's service scope.
func serviceLimit(t testing.TB, h host.Host) rcmgr.Limit {
	t.Helper()
	var l rcmgr.Limit
	require.NoError(t, h.Network().ResourceManager().ViewService(protocol.ServiceName, func(s network.ServiceScope) error {
		sl, ok := s.(rcmgr.ResourceScopeLimiter)
		require.True(t, ok, "not go-libp2p's resource manager: %T", s)
		l = sl.Limit()
		return nil
	}))
	return l
}

func TestLimitsServiceScopeConfigured(t *testing.T) {
	res := int64(protocol.Reservation(protocol.DefaultNoticeSize))
	t.Run("defaults", func(t *testing.T) {
		n := newNode(t)
		l := serviceLimit(t, n.Host())
		// Streams running exchanges, and as many kept idle (streams.go).
		require.Equal(t, 2*DefaultMaxInbound, l.GetStreamLimit(network.DirInbound))
		require.Equal(t, 2*DefaultMaxInbound, l.GetStreamLimit(network.DirOutbound))
		require.Equal(t, 2*DefaultMaxInbound*res, l.GetMemoryLimit())
	})
	t.Run("options", func(t *testing.T) {
		n := newNode(t, WithInboundLimits(6, 3), WithNoticeSize(4096))
		l := serviceLimit(t, n.Host())
		require.Equal(t, 2*6, l.GetStreamLimit(network.DirInbound))
		require.Equal(t, 2*6*int64(protocol.Reservation(4096)), l.GetMemoryLimit())
	})
	t.Run("libp2p-option-keeps-its-own", func(t *testing.T) {
		rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
		require.NoError(t, err)
		n := newNode(t, WithLibp2pOptions(libp2p.ResourceManager(rm)))
		require.Same(t, rm, n.Host().Network().ResourceManager())
		require.Equal(t, int64(math.MaxInt64), serviceLimit(t, n.Host()).GetMemoryLimit())
	})
	t.Run("WithHost-keeps-its-own", func(t *testing.T) {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		require.NoError(t, err)
		defer h.Close()
		n, err := New(context.Background(), WithHost(h))
		require.NoError(t, err)
		defer n.Close()
		// libp2p's default for a service it does not know, not ours.
		require.NotEqual(t, 2*DefaultMaxInbound*res, serviceLimit(t, h).GetMemoryLimit())
	})
}

// TestLimitsBurstFromOnePeer: 1,024 simultaneous attempts from one peer,
// each a stream of /p2pkex/1.0.0 carrying a valid START. The honest node
// admits DefaultMaxInboundPerPeer of them (one runs, one waits for it) and
// refuses every other one at once with BUSY; its service scope never holds
// more than the admitted exchanges' reservations, far below its configured
// memory; afterwards both admitted exchanges complete with equal keys and
// everything is released.
func TestLimitsBurstFromOnePeer(t *testing.T) {
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { requireNoLeak(t, running, "goroutines left after the test") })
	// The admitted exchanges stay in phase 1 until the burst settled, and
	// the second waits for the first, which counts against its phase 1:
	// give the (unknown) peer a generous phase timeout, not the 2 s of
	// DefaultUnknownPhase1Timeout (admission_test.go tests that), so that
	// a loaded machine (-race, two cores) does not turn the count this
	// test is about into a timeout.
	const phase = 3 * protocol.DefaultPhaseTimeout
	honest := newNode(t, WithPhaseTimeout(phase), WithUnknownPhase1Timeout(phase))
	lp := newLimitPeer(t)
	require.NoError(t, lp.h.Connect(context.Background(), peer.AddrInfo{ID: honest.ID(), Addrs: honest.Host().Addrs()}))

	res := burst(t, honest, []*limitPeer{lp}, limitAttempts)
	reservation := int64(protocol.Reservation(protocol.DefaultNoticeSize))
	t.Logf("%d attempts from one peer: %d admitted (%d ran at once), %d ABORT BUSY, %d reset BUSY, %d reset by libp2p, %d other; "+
		"service scope peak %d B and %d inbound streams over %d samples, configured %d B; goroutines %d before, %d at the peak, %d after",
		limitAttempts, res.admitted, res.proceededAtOnce, res.counts[outcomeAbortBusy], res.counts[outcomeResetBusy],
		res.counts[outcomeLibp2p], res.counts[outcomeOther], res.peakMem, res.peakIn, res.samples, res.memLimit,
		res.goroutinesBefore, res.goroutinesPeak, res.goroutinesAfter)
	t.Logf("transient scope: at most %d inbound streams negotiating at once, limit %d", res.peakTransient, transientLimit(t, honest.Host()))

	require.Equal(t, DefaultMaxInboundPerPeer, res.admitted, "admitted")
	require.Equal(t, 1, res.proceededAtOnce, "exchanges of one peer never interleave")
	require.Equal(t, DefaultMaxInboundPerPeer, res.counts[outcomeProceeded])
	require.Equal(t, DefaultMaxInboundPerPeer, res.finished)
	require.Equal(t, limitAttempts-DefaultMaxInboundPerPeer, res.refused(), "%v", res.counts)
	require.Zero(t, res.counts[outcomeOther])
	require.Greater(t, res.samples, 0)
	require.LessOrEqual(t, res.peakMem, res.memLimit)
	require.LessOrEqual(t, res.peakMem, int64(DefaultMaxInboundPerPeer+1)*reservation, "the per-peer service limit")

	requireScopesIdle(t, honest.Host(), lp.h.ID())
	require.Eventually(t, func() bool { return nodeIdle(honest) }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, honest.Close())
	require.NoError(t, lp.h.Close())
}

// TestLimitsBurstFromManyPeers: the total limit. Eight peers open 128
// attempts each, at once, against a node that admits 6 inbound exchanges in
// total and 2 per peer: exactly 6 are admitted, the other 1,018 are refused
// with BUSY. The peers are unknown and share one origin (loopback): no
// slots are kept for known peers here, the origin may take them all, and
// phase 1 has the phase timeout, as in TestLimitsBurstFromOnePeer
// (admission_test.go tests those limits).
func TestLimitsBurstFromManyPeers(t *testing.T) {
	const total, perPeer, peers = 6, 2, 8
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { requireNoLeak(t, running, "goroutines left after the test") })
	honest := newNode(t, WithInboundLimits(total, perPeer), WithKnownReserve(0),
		WithUnknownPhase1Timeout(protocol.DefaultPhaseTimeout))
	lps := make([]*limitPeer, peers)
	ids := make([]peer.ID, peers)
	for i := range lps {
		lps[i] = newLimitPeer(t)
		ids[i] = lps[i].h.ID()
		require.NoError(t, lps[i].h.Connect(context.Background(), peer.AddrInfo{ID: honest.ID(), Addrs: honest.Host().Addrs()}))
	}

	res := burst(t, honest, lps, limitAttempts/peers)
	reservation := int64(protocol.Reservation(protocol.DefaultNoticeSize))
	t.Logf("%d attempts from %d peers: %d admitted (%d ran at once), %d ABORT BUSY, %d reset BUSY, %d reset by libp2p, %d other; "+
		"service scope peak %d B and %d inbound streams over %d samples, configured %d B; goroutines %d before, %d at the peak, %d after",
		limitAttempts, peers, res.admitted, res.proceededAtOnce, res.counts[outcomeAbortBusy], res.counts[outcomeResetBusy],
		res.counts[outcomeLibp2p], res.counts[outcomeOther], res.peakMem, res.peakIn, res.samples, res.memLimit,
		res.goroutinesBefore, res.goroutinesPeak, res.goroutinesAfter)
	t.Logf("transient scope: at most %d inbound streams negotiating at once, limit %d", res.peakTransient, transientLimit(t, honest.Host()))

	require.Equal(t, total, res.admitted, "admitted")
	require.Equal(t, total, res.counts[outcomeProceeded])
	require.Equal(t, total, res.finished)
	require.Equal(t, limitAttempts-total, res.refused(), "%v", res.counts)
	require.Zero(t, res.counts[outcomeOther])
	require.LessOrEqual(t, res.peakMem, res.memLimit)
	require.LessOrEqual(t, res.peakMem, total*reservation, "only admitted exchanges hold memory")

	requireScopesIdle(t, honest.Host(), ids...)
	require.Eventually(t, func() bool { return nodeIdle(honest) }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, honest.Close())
	for _, lp := range lps {
		require.NoError(t, lp.h.Close())
	}
}
