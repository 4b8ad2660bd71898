package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Slow and silent peers (issue 3, item 3). A peer that stops sending in any
// phase, after any of its notices, or that drips its notices one byte at a
// time from the start of any phase, is cut off by the honest node's
// per-phase deadline (WithPhaseTimeout; default protocol.DefaultPhaseTimeout,
// 10 s; here 300 ms). Each phase gets one deadline, set when the phase
// begins: a byte now and then does not extend it. The honest node then
// installs nothing and frees everything: its resource scopes hold no stream
// and no memory, no goroutine is left, its counts and the peer's slot are
// released, and a following exchange with the same peer completes.
//
// The slow peer is an honest node on a fault host whose writes stall (are
// swallowed) or drip after its k-th notice. Both exchange-key records
// travel in every case, so that every phase has notices to withhold.

const (
	slowPhaseTimeout = 300 * time.Millisecond
	slowDripEvery    = 5 * time.Millisecond
)

// slowPair is an honest node and a peer that misbehaves through a fault
// host: a slow one here, one that lies about sizes in sizes_test.go.
type slowPair struct {
	honest, slow *Node
	h            *faultHost
}

// newSlowPair starts an honest node with opts and a peer on a fault host.
func newSlowPair(t *testing.T, opts ...Option) *slowPair {
	t.Helper()
	// A new stream for every exchange, so that the fault host sees each.
	sp := &slowPair{honest: newNode(t, append([]Option{WithStreamIdleTimeout(0)}, opts...)...)}
	sp.slow, sp.h = newFaultNode(t, protocol.DefaultNoticeSize)
	introduce(sp.honest, sp.slow)
	introduce(sp.slow, sp.honest)
	require.NoError(t, sp.slow.Connect(context.Background(), peer.AddrInfo{ID: sp.honest.ID(), Addrs: sp.honest.Host().Addrs()}))
	return sp
}

// rotate makes both records travel in the next exchange.
func (sp *slowPair) rotate(t *testing.T) {
	t.Helper()
	require.NoError(t, sp.honest.RotateExchangeKey())
	require.NoError(t, sp.slow.RotateExchangeKey())
}

// run runs one exchange, the honest node initiating or not, and returns the
// honest side's error.
func (sp *slowPair) run(t *testing.T, honestInitiates bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if honestInitiates {
		_, err := sp.honest.Exchange(ctx, sp.slow.ID())
		return err
	}
	events, stop := sp.honest.Subscribe(0)
	defer stop()
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		_, _ = sp.slow.Exchange(ctx, sp.honest.ID())
	}()
	defer func() { <-slowDone }()
	for {
		select {
		case e := <-events:
			if e.Peer != sp.slow.ID() {
				continue
			}
			switch e.Kind {
			case EventFailed:
				return e.Err
			case EventDone:
				return nil
			}
		case <-ctx.Done():
			require.FailNow(t, "the honest responder reported no burstOutcome")
		}
	}
}

// runHonest runs an exchange in which both sides behave, after prepare
// (if set). The honest node's phase timeout is short: on a loaded machine a
// phase of an honest exchange may outlast it, so a timeout is retried
// (twice).
func (sp *slowPair) runHonest(t *testing.T, honestInitiates bool, prepare func()) error {
	t.Helper()
	var err error
	for range 3 {
		if prepare != nil {
			prepare()
		}
		if err = sp.run(t, honestInitiates); !errors.Is(err, protocol.ErrTimeout) {
			return err
		}
		t.Logf("an honest exchange timed out (machine under load?); again: %v", err)
		sp.requireFreed(t)
		sp.h.take()
	}
	return err
}

// sentBy returns the notices the slow node sends in a clean exchange in
// which both records travel.
func (sp *slowPair) sentBy(t *testing.T, honestInitiates bool) []pb.Notice_Type {
	t.Helper()
	require.NoError(t, sp.runHonest(t, honestInitiates, func() { sp.rotate(t) }))
	sp.requireFreed(t)
	sent, _ := sp.h.take().types()
	return sent
}

// requireFreed waits until the honest node and its host hold nothing of
// an exchange with the slow node, and the slow node runs none.
func (sp *slowPair) requireFreed(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		return nodeIdle(sp.honest) && nodeIdle(sp.slow) &&
			scopesIdle(t, sp.honest.Host(), sp.slow.ID()) && noExchangeStreams(sp.honest.Host(), sp.slow.ID())
	}, 10*time.Second, 5*time.Millisecond, "not freed: honest idle %v, scopes %+v", nodeIdle(sp.honest), readScopes(t, sp.honest.Host(), sp.slow.ID()))
}

func TestSlowPeerCutOffByPhaseDeadline(t *testing.T) {
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { requireNoLeak(t, running, "goroutines left after the test") })
	sp := newSlowPair(t, WithPhaseTimeout(slowPhaseTimeout))
	require.NoError(t, sp.runHonest(t, true, nil)) // first contact

	for _, honestInitiates := range []bool{true, false} {
		role := "honest-responder"
		if honestInitiates {
			role = "honest-initiator"
		}
		sent := sp.sentBy(t, honestInitiates)
		var plans []faultPlan
		for k := range sent {
			plans = append(plans, stallAfter(k))
		}
		// Drip from the first notice of each phase.
		plans = append(plans, dripAfter(0, slowDripEvery))
		for _, first := range []pb.Notice_Type{pb.Notice_KEY, pb.Notice_PART} {
			for k, typ := range sent {
				if typ == first {
					plans = append(plans, dripAfter(k, slowDripEvery))
					break
				}
			}
		}
		phases := map[string]bool{}
		for _, plan := range plans {
			what := "stalls"
			if plan.drip > 0 {
				what = "drips"
			}
			name := fmt.Sprintf("%s/slow-peer-%s-after-%d-notices", role, what, plan.k)
			if plan.k < len(sent) {
				name += "-before-" + sent[plan.k].String()
			}
			sp.rotate(t)
			baseline := goleak.IgnoreCurrent()
			was := activeOf(t, sp.honest, sp.slow.ID())
			sp.h.arm(plan)
			err := sp.run(t, honestInitiates)
			require.ErrorIs(t, err, protocol.ErrTimeout, name)
			phase := err.Error()[strings.LastIndex(err.Error(), ": ")+2:]
			phases[what+" "+phase] = true
			t.Logf("%s: %v", name, err)

			sp.requireFreed(t)
			fs := sp.h.take()
			require.True(t, fs.faulted(), "%s: the plan never applied", name)
			if plan.drip > 0 {
				// Bytes kept coming, and the deadline still held.
				require.Greater(t, fs.dripCount(), 1, "%s", name)
				t.Logf("%s: %d bytes dripped before the cut", name, fs.dripCount())
			}
			now := activeOf(t, sp.honest, sp.slow.ID())
			require.Equal(t, epochOf(was), epochOf(now), "%s: the honest node installed a key", name)
			requireNoLeak(t, baseline, "%s: goroutines left behind", name)

			// The same peer, behaving, completes the next exchange.
			require.NoError(t, sp.runHonest(t, honestInitiates, nil), "%s: next exchange", name)
			now = activeOf(t, sp.honest, sp.slow.ID())
			requireSameKey(t, sp.honest, sp.slow, now.Epoch)
			sp.requireFreed(t)
			sp.h.take()
		}
		for _, want := range []string{"stalls phase 1", "stalls phase 2", "stalls phase 3", "drips phase 1", "drips phase 2", "drips phase 3"} {
			require.True(t, phases[want], "%s: no case where the slow peer %s", role, want)
		}
	}
}
