package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Faults (issue 3, item 2). Two honest nodes run exchanges over hosts that
// can cut the exchange's stream: one side resets it right after it sent, or
// right after it received, its k-th notice, for every k, for each side, in
// each of the four phase-2 combinations (both records travel, only the
// initiator's, only the responder's, none), with the smallest notice size
// so that every record and part travels in many notices. After every cut:
//
//   - no key is installed, except in the one case no protocol can rule out
//     (the two generals): a side that already verified the peer's
//     confirmation may install while the peer, whose own confirmation was
//     cut, does not. The test checks that a side installs only after it
//     sent its PART_RECEIVED and received the peer's, and so only a key the
//     peer derived (the peer had sent its PART_RECEIVED, whose MAC the
//     installing side verified), and that when both install, their keys
//     are equal;
//   - both hosts' resource scopes (service, transient, peer) hold no stream
//     and no memory, and neither node holds a slot or count;
//   - no goroutine is left behind;
//   - a retry completes, with equal keys on both sides, at the epoch after
//     the larger of the two sides' active ones.

// faultNoticeSize is the notice size of the fault tests.
const faultNoticeSize = protocol.MinNoticeSize

// faultCombo is one of the four phase-2 combinations: which exchange-key
// records travel. A side's record travels when it rotated its key since the
// last exchange.
type faultCombo struct {
	name             string
	rotateA, rotateB bool
}

var faultCombos = []faultCombo{
	{"both-records", true, true},
	{"initiator-record", true, false},
	{"responder-record", false, true},
	{"no-record", false, false},
}

// faultPair is two honest nodes on fault hosts; a initiates.
type faultPair struct {
	a, b   *Node
	ha, hb *faultHost
}

func newFaultPair(t *testing.T) *faultPair {
	fp := &faultPair{}
	fp.a, fp.ha = newFaultNode(t, faultNoticeSize)
	fp.b, fp.hb = newFaultNode(t, faultNoticeSize)
	introduce(fp.a, fp.b)
	require.NoError(t, fp.a.Connect(context.Background(), peer.AddrInfo{ID: fp.b.ID(), Addrs: fp.b.Host().Addrs()}))
	return fp
}

// prepare rotates the keys c asks for.
func (fp *faultPair) prepare(t *testing.T, c faultCombo) {
	t.Helper()
	if c.rotateA {
		require.NoError(t, fp.a.RotateExchangeKey())
	}
	if c.rotateB {
		require.NoError(t, fp.b.RotateExchangeKey())
	}
}

// settled reports whether both nodes and both hosts are idle: no exchange,
// no stream of the exchange, no memory in the service scope.
func (fp *faultPair) settled(t *testing.T) bool {
	return nodeIdle(fp.a) && nodeIdle(fp.b) &&
		scopesIdle(t, fp.a.Host(), fp.b.ID()) && scopesIdle(t, fp.b.Host(), fp.a.ID()) &&
		noExchangeStreams(fp.a.Host(), fp.b.ID()) && noExchangeStreams(fp.b.Host(), fp.a.ID())
}

// requireSettled waits until fp is settled. After a cut it waits until fp
// is settled twice in a row, a few milliseconds apart: a stream the cutting
// side reset may still be on its way to the other side's handler.
func (fp *faultPair) requireSettled(t *testing.T, afterCut bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		if !fp.settled(t) {
			return false
		}
		if !afterCut {
			return true
		}
		time.Sleep(10 * time.Millisecond)
		return fp.settled(t)
	}, 10*time.Second, 2*time.Millisecond, "not settled: a %v, b %v, scopes a %+v, b %+v",
		nodeIdle(fp.a), nodeIdle(fp.b), readScopes(t, fp.a.Host(), fp.b.ID()), readScopes(t, fp.b.Host(), fp.a.ID()))
}

// faultTally counts how the cut exchanges ended.
type faultTally struct {
	cases, neither, both, onlyInitiator, onlyResponder, notHit int
}

// faultCounts returns how many notices each side sends and receives in an
// exchange of combination c, from a clean exchange.
func (fp *faultPair) faultCounts(t *testing.T, c faultCombo) (aSent, aRecv, bSent, bRecv int) {
	t.Helper()
	fp.prepare(t, c)
	info := exchange(t, fp.a, fp.b)
	require.Equal(t, c.rotateA, info.InitiatorKeySent, "the initiator's record travels")
	require.Equal(t, c.rotateB, info.ResponderKeySent, "the responder's record travels")
	fp.requireSettled(t, false)
	sa, ra := fp.ha.take().types()
	sb, rb := fp.hb.take().types()
	require.Equal(t, sa, rb)
	require.Equal(t, sb, ra)
	return len(sa), len(ra), len(sb), len(rb)
}

func TestFaultResetAtEveryNotice(t *testing.T) {
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { requireNoLeak(t, running, "goroutines left after the test") })
	fp := newFaultPair(t)
	exchange(t, fp.a, fp.b) // first contact; from here on a combination is made by rotating
	var tally faultTally
	for _, c := range faultCombos {
		aSent, aRecv, bSent, bRecv := fp.faultCounts(t, c)
		type side struct {
			name       string
			h          *faultHost
			sent, recv int
		}
		for _, sd := range []side{{"initiator", fp.ha, aSent, aRecv}, {"responder", fp.hb, bSent, bRecv}} {
			var plans []faultPlan
			for k := 0; k <= sd.sent; k++ {
				plans = append(plans, faultPlan{send: true, k: k})
			}
			for k := 1; k <= sd.recv; k++ {
				plans = append(plans, faultPlan{k: k})
			}
			for _, plan := range plans {
				name := fmt.Sprintf("%s/%s-resets-%v", c.name, sd.name, plan)
				fp.prepare(t, c)
				fp.faultCase(t, name, sd.h, plan, &tally)
				if t.Failed() {
					t.FailNow()
				}
			}
		}
	}
	t.Logf("%d cuts: %d installed on neither side, %d on both, %d on the initiator only, %d on the responder only; %d plans never hit",
		tally.cases, tally.neither, tally.both, tally.onlyInitiator, tally.onlyResponder, tally.notHit)
	require.Zero(t, tally.notHit)
}

// faultCase runs one exchange that the side of host h cuts as plan says,
// checks what both sides installed and freed, and retries.
func (fp *faultPair) faultCase(t *testing.T, name string, h *faultHost, plan faultPlan, tally *faultTally) {
	t.Helper()
	baseline := goleak.IgnoreCurrent()
	wasA, wasB := activeOf(t, fp.a, fp.b.ID()), activeOf(t, fp.b, fp.a.ID())
	h.arm(plan)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	info, err := fp.a.Exchange(ctx, fp.b.ID())
	cancel()
	fp.requireSettled(t, true)

	fsA, fsB := fp.ha.take(), fp.hb.take()
	sa, ra := fsA.types()
	var sb, rb []pb.Notice_Type
	if fsB != nil {
		sb, rb = fsB.types()
	}
	cutter := fsA
	if h == fp.hb {
		cutter = fsB
	}
	require.NotNil(t, cutter, "%s: the cutting side never saw the stream", name)
	nowA, nowB := activeOf(t, fp.a, fp.b.ID()), activeOf(t, fp.b, fp.a.ID())
	instA, instB := epochOf(nowA) != epochOf(wasA), epochOf(nowB) != epochOf(wasB)
	tally.cases++
	if !cutter.faulted() {
		tally.notHit++
	}
	// The initiator's Exchange reports what it installed.
	require.Equal(t, instA, err == nil, "%s: Exchange returned %v, installed %v", name, err, instA)
	if err == nil {
		require.Equal(t, epochOf(nowA), info.Epoch, name)
	}
	// A side installs only after it sent its confirmation and verified the
	// peer's, and so only a key the peer derived and confirmed.
	if instA {
		require.True(t, noticeIn(sa, pb.Notice_PART_RECEIVED), "%s: the initiator installed before confirming", name)
		require.True(t, noticeIn(ra, pb.Notice_PART_RECEIVED), "%s: the initiator installed without the responder's confirmation", name)
		require.True(t, noticeIn(sb, pb.Notice_PART_RECEIVED), "%s: the initiator installed a key the responder never confirmed", name)
	}
	if instB {
		require.True(t, noticeIn(sb, pb.Notice_PART_RECEIVED), "%s: the responder installed before confirming", name)
		require.True(t, noticeIn(rb, pb.Notice_PART_RECEIVED), "%s: the responder installed without the initiator's confirmation", name)
		require.True(t, noticeIn(sa, pb.Notice_PART_RECEIVED), "%s: the responder installed a key the initiator never confirmed", name)
	}
	if instA || instB {
		t.Logf("%s: installed by the initiator %v, the responder %v", name, instA, instB)
	}
	switch {
	case instA && instB:
		tally.both++
		require.Equal(t, nowA.Epoch, nowB.Epoch, name)
		require.True(t, nowA.Key.Equal(&nowB.Key), "%s: both installed, different keys", name)
		require.Equal(t, nowA.ID, nowB.ID, name)
	case instA:
		tally.onlyInitiator++
	case instB:
		tally.onlyResponder++
	default:
		tally.neither++
	}
	// Nothing left behind.
	requireNoLeak(t, baseline, "%s: goroutines left behind", name)

	// The retry converges: the epoch after the larger of both sides'.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err = fp.a.Exchange(ctx, fp.b.ID())
	require.NoError(t, err, "%s: retry", name)
	require.Equal(t, max(epochOf(nowA), epochOf(nowB))+1, info.Epoch, "%s: retry epoch", name)
	requireSameKey(t, fp.a, fp.b, info.Epoch)
	fp.requireSettled(t, false)
	fp.ha.take()
	fp.hb.take()
}
