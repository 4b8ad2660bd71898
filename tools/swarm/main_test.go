package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	lswarm "github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

func TestUp(t *testing.T) {
	at := func(s float64) time.Time { return time.Unix(1000, 0).Add(time.Duration(s * float64(time.Second))) }
	m := &member{}
	if m.up(at(0), at(1)) {
		t.Error("a member never started is not up")
	}
	m.inc = &incarnation{}
	m.away = []span{{from: at(10), to: at(15)}, {from: at(30)}}
	for _, c := range []struct {
		t0, t1 float64
		want   bool
	}{
		{0, 9.9, true},
		{0, 10, false},  // left as the operation ended
		{12, 13, false}, // away the whole time
		{14, 20, false}, // came back during it
		{15, 20, false}, // came back as it started
		{15.1, 29.9, true},
		{29, 31, false}, // left during it, still away
		{40, 41, false},
	} {
		if got := m.up(at(c.t0), at(c.t1)); got != c.want {
			t.Errorf("up(%g, %g) = %v, want %v", c.t0, c.t1, got, c.want)
		}
	}
}

// TestCount: a failure is "peer gone" whenever either side was away at some
// moment of it, whatever its error; only the others count against the run.
func TestCount(t *testing.T) {
	t0 := time.Now()
	s := &swarm{t0: t0, examples: map[string][]string{}}
	s.exchanges.FailedLive = map[string]int64{}
	a := &member{idx: 1, inc: &incarnation{}}
	b := &member{idx: 2, inc: &incarnation{}}
	gone := &member{idx: 3, inc: &incarnation{}, away: []span{{from: t0.Add(time.Second)}}}
	timeout := fmt.Errorf("exchange: %w", context.DeadlineExceeded)

	s.count(&s.exchanges, a, b, t0, t0.Add(time.Second), nil, "exchange")
	s.count(&s.exchanges, a, gone, t0, t0.Add(2*time.Second), timeout, "exchange")
	s.count(&s.exchanges, gone, a, t0, t0.Add(2*time.Second), timeout, "exchange")
	s.count(&s.exchanges, a, gone, t0, t0.Add(2*time.Second), nil, "exchange")
	s.count(&s.exchanges, a, b, t0, t0.Add(2*time.Second), timeout, "exchange")

	x := s.exchanges
	if x.Attempted != 5 || x.Succeeded != 2 || x.AttemptedLive != 2 || x.SucceededLive != 1 ||
		x.PeerGone != 2 || x.SucceededGone != 1 || x.FailedLive[causeTimeout] != 1 || len(x.FailedLive) != 1 {
		t.Errorf("tally %+v", x)
	}
	if len(s.examples["exchange timeout"]) != 1 {
		t.Errorf("examples %v", s.examples)
	}
	r := &report{Config: &config{}, Exchanges: x, Messages: tally{FailedLive: map[string]int64{}}}
	r.verdict(context.Background())
	if r.Pass {
		t.Errorf("a failure between live peers passed: %s", r.Verdict)
	}
	x.FailedLive = map[string]int64{}
	r = &report{Config: &config{}, Exchanges: x, Messages: tally{FailedLive: map[string]int64{}}}
	r.verdict(context.Background())
	if !r.Pass {
		t.Errorf("failures only with gone peers failed the run: %s", r.Verdict)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("x: %w", context.DeadlineExceeded), causeTimeout},
		{fmt.Errorf("phase 1: %w", protocol.ErrTimeout), causeTimeout},
		{fmt.Errorf("x: %w", &protocol.AbortError{Status: pb.Status_BUSY}), causeRefused},
		{&protocol.AbortError{Status: pb.Status_TIMEOUT}, causePeerTO},
		{fmt.Errorf("failed to negotiate protocol: %w", &network.StreamError{Remote: true, ErrorCode: protocol.AbortCodeBase + network.StreamErrorCode(pb.Status_TIMEOUT)}), causePeerTO},
		{fmt.Errorf("failed to negotiate protocol: %w", &network.StreamError{Remote: true, ErrorCode: protocol.AbortCodeBase + network.StreamErrorCode(pb.Status_BUSY)}), causeRefused},
		{&node.RefusedError{Err: node.ErrNotDelivered}, causeRefused},
		{fmt.Errorf("open stream: %w", lswarm.ErrDialBackoff), causeBackoff},
		{fmt.Errorf("failed to dial: %w", &lswarm.DialError{}), causeDial},
		{fmt.Errorf("failed to dial: all dials failed: %w", context.DeadlineExceeded), causeDialTO},
		{errors.New("something else"), causeOther},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, c := range []struct{ p, want float64 }{{50, 3}, {99, 5}, {1, 1}, {100, 5}} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("percentile(%g) = %g, want %g", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != -1 {
		t.Error("percentile of nothing")
	}
	d := discoveryOf([]discovery{{Gen: 0, FirstS: 1, KS: 2}, {Gen: 0, FirstS: 3, KS: -1}, {Gen: 1, FirstS: 0.5, KS: 0.6}}, 2,
		func(d discovery) bool { return d.Gen == 0 })
	if d.Incarnations != 2 || d.FirstFound != 2 || d.KFound != 1 || d.FirstP99S != 3 || d.KP50S != 2 {
		t.Errorf("discoveryOf %+v", d)
	}
}

// TestSwarmSmall runs a swarm of six nodes for a few seconds with one churn
// round, and checks that the harness ran what it reports: nodes discovered
// each other through the bootstrap node, exchanged and messaged, left and
// came back.
func TestSwarmSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs six nodes for ten seconds")
	}
	c := &config{Nodes: 6, Bootstrap: 1, ChurnFraction: 0.34, K: 2, MsgSize: 64, StartParallel: 4, Seed: 1,
		duration: 9 * time.Second, churnPeriod: 4 * time.Second, down: time.Second, opInterval: 300 * time.Millisecond,
		opTimeout: 20 * time.Second, discoveryInterval: time.Second, sample: 2 * time.Second, dhtMode: node.DHTModeAuto,
		Transport: "quic", dir: t.TempDir(), quiet: true}
	r, err := run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Churn.Leaves != 2 || r.Churn.Returns != 2 || len(r.Churn.Rounds) != 1 {
		t.Errorf("churn %+v", r.Churn)
	}
	if len(r.Discoveries) != c.Nodes+r.Churn.Returns {
		t.Errorf("%d incarnations recorded, want %d", len(r.Discoveries), c.Nodes+r.Churn.Returns)
	}
	if r.Discovery.Initial.FirstFound == 0 || r.Exchanges.SucceededLive == 0 || r.Messages.SucceededLive == 0 {
		t.Errorf("nothing happened: %s", r.Verdict)
	}
	if r.MessagesReceived < r.Messages.Succeeded {
		t.Errorf("%d messages received, %d sends succeeded", r.MessagesReceived, r.Messages.Succeeded)
	}
	var byAge, byContact int64
	for _, sp := range r.ExchangesByAge {
		byAge += sp.Attempted
	}
	for _, sp := range r.ExchangesByContact {
		byContact += sp.Attempted
	}
	if byAge != r.Exchanges.AttemptedLive || byContact != r.Exchanges.AttemptedLive || r.ExchangesByContact["first"] == nil {
		t.Errorf("exchanges between live peers %d, split by age %d, by contact %d (%v)", r.Exchanges.AttemptedLive, byAge, byContact, r.ExchangesByContact)
	}
	if len(r.Timeline) == 0 || r.Resources.RSSPerNode <= 0 || r.Resources.ConnsPerNode <= 0 {
		t.Errorf("no timeline or resources: %+v", r.Resources)
	}
	t.Log(r.Verdict)
}

// TestSplit: exchanges between live peers are split by the younger node's
// age and by first contact; a pair is "repeat" only after a success.
func TestSplit(t *testing.T) {
	t0 := time.Now()
	s := &swarm{t0: t0, pairs: map[[2]int]bool{}, byAge: map[string]*split{}, byContact: map[string]*split{}}
	a, b := &member{idx: 1, inc: &incarnation{}}, &member{idx: 2, inc: &incarnation{}}
	gone := &member{idx: 3, inc: &incarnation{}, away: []span{{from: t0}}}
	fail := fmt.Errorf("x: %w", context.DeadlineExceeded)
	s.split(a, b, t0, t0, 10*time.Second, fail)   // first, fails
	s.split(b, a, t0, t0, 45*time.Second, nil)    // first (no success yet), succeeds
	s.split(a, b, t0, t0, 200*time.Second, fail)  // repeat
	s.split(a, gone, t0, t0, 10*time.Second, nil) // not between live peers
	if f := s.byContact["first"]; f == nil || f.Attempted != 2 || f.Failed[causeTimeout] != 1 {
		t.Errorf("first contacts %+v", f)
	}
	if r := s.byContact["repeat"]; r == nil || r.Attempted != 1 || r.Failed[causeTimeout] != 1 {
		t.Errorf("repeats %+v", r)
	}
	if s.byAge["0-30s"].Attempted != 1 || s.byAge["30-60s"].Attempted != 1 || s.byAge["120s+"].Attempted != 1 || s.byAge["60-120s"] != nil {
		t.Errorf("by age %v", s.byAge)
	}
}

func TestHistQuantile(t *testing.T) {
	buckets := []float64{0, 1, 2, 4, math.Inf(1)}
	counts := []uint64{50, 40, 9, 1}
	for _, c := range []struct{ q, want float64 }{{0.5, 1}, {0.9, 2}, {0.99, 4}, {1, 4}} {
		if got := histQuantile(buckets, counts, 100, c.q); got != c.want {
			t.Errorf("q %g = %g, want %g", c.q, got, c.want)
		}
	}
	if histQuantile(buckets, []uint64{0, 0, 0, 0}, 0, 0.5) != -1 {
		t.Error("quantile of nothing")
	}
	f := newSchedSampler().read()
	if f.P50Ms < -1 || f.GCShare < 0 || f.GCShare > 1 {
		t.Errorf("sampler %+v", f)
	}
}
