package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// commitLog records the epochs committed to a store (behind the gate of
// gatedCommitStore: those the gate let through), in order, and
// fails the commit of the epoch fail points to (0: none).
type commitLog struct {
	ps.Store
	mu     sync.Mutex
	epochs []uint64
	fail   atomic.Uint64
}

var errCommitFailed = errors.New("commit failed (test)")

func (s *commitLog) CommitExchange(c ps.Commit) error {
	s.mu.Lock()
	s.epochs = append(s.epochs, c.Session.Epoch)
	s.mu.Unlock()
	if s.fail.Load() == c.Session.Epoch {
		return errCommitFailed
	}
	return s.Store.CommitExchange(c)
}

func (s *commitLog) committed() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.epochs...)
}

// pipelinePair returns an initiator a and a responder b whose commits wait
// at gate while it is set (released at cleanup), after two exchanges from
// a to b: the first brings the records, the second runs with both known,
// on the stream a kept.
func pipelinePair(t *testing.T) (a, b *Node, log *commitLog, gate *atomic.Pointer[chan struct{}]) {
	t.Helper()
	gate = new(atomic.Pointer[chan struct{}])
	mem := ps.NewMemory()
	t.Cleanup(func() { mem.Close() })
	log = &commitLog{Store: mem}
	b = newNode(t, WithStore(gatedCommitStore{Store: log, gate: gate}))
	a = newNode(t)
	// Never leave a commit held: the nodes' Close (cleanups registered
	// earlier run later) would wait for it.
	t.Cleanup(func() { openGate(gate) })
	introduce(a, b)
	for epoch := uint64(1); epoch <= 2; epoch++ {
		require.Equal(t, epoch, exchange(t, a, b).Epoch)
	}
	return a, b, log, gate
}

func openGate(gate *atomic.Pointer[chan struct{}]) {
	if g := gate.Swap(nil); g != nil {
		close(*g)
	}
}

// awaitStep reads events until one that match accepts.
func awaitStep(t *testing.T, events <-chan Event, match func(Event) bool, what string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if match(e) {
				return
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestPipelinedCommit: the responder's commit of an exchange is held; the
// peer's next exchange on the kept stream runs meanwhile (the responder
// reads its START and runs phases 1 and 3), but the responder holds its
// PART_RECEIVED, so the exchange is not completed on either side, reported
// or installed before the held commit returned; then both install it at
// the next epoch, and the responder's events of the two exchanges do not
// interleave. Without pipelining the responder reads the START only after
// the commit, and the initiator never sees the responder's PART while the
// commit is held.
func TestPipelinedCommit(t *testing.T) {
	a, b, log, gate := pipelinePair(t)
	bEvents, stopB := b.Subscribe(0)
	defer stopB()
	held := make(chan struct{})
	gate.Store(&held)
	// Epoch 3: a installs it; b's commit waits at the gate.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := a.Exchange(ctx, b.ID())
	require.NoError(t, err)
	require.EqualValues(t, 3, info.Epoch)

	aEvents, stopA := a.Subscribe(0)
	defer stopA()
	type result struct {
		info *KeyInfo
		err  error
	}
	next := make(chan result, 1)
	go func() {
		info, err := a.Exchange(ctx, b.ID())
		next <- result{info, err}
	}()
	awaitStep(t, aEvents, func(e Event) bool {
		return e.Kind == EventStep && e.Step.Kind == protocol.EventNoticeReceived && e.Step.Notice == pb.Notice_PART
	}, "the responder's PART of the next exchange while its previous commit is held")
	// The PART_RECEIVED that would let a complete is held with the commit.
	select {
	case r := <-next:
		t.Fatalf("the next exchange completed while the responder's previous commit was held: %+v, %v", r.info, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	k, err := b.ActiveKey(a.ID())
	require.NoError(t, err)
	require.EqualValues(t, 2, k.Epoch, "the responder's active epoch while its commit is held")
	require.Equal(t, []uint64{1, 2}, log.committed(), "commits past the gate")

	openGate(gate)
	r := <-next
	require.NoError(t, r.err)
	require.EqualValues(t, 4, r.info.Epoch)
	requireSameKey(t, a, b, 4)
	require.Equal(t, []uint64{1, 2, 3, 4}, log.committed())

	// b's events: exchange 3's result before any step of exchange 4.
	var order []string
	for done := 0; done < 2; {
		select {
		case e := <-bEvents:
			switch {
			case e.Kind == EventStep && e.Step.Kind == protocol.EventPhaseEntered && e.Step.Phase == protocol.Phase1:
				order = append(order, "start")
			case e.Kind == EventDone:
				order = append(order, "done")
				done++
			case e.Kind == EventFailed:
				t.Fatal(e.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("responder's events so far: %v", order)
		}
	}
	require.Equal(t, []string{"start", "done", "start", "done"}, order)
}

// TestPipelinedCommitFails: the responder's held commit of an exchange
// fails. The peer's next exchange, which the responder ran meanwhile, must
// not be installed by either side (the responder never sends its
// PART_RECEIVED), and the next exchange after that converges.
func TestPipelinedCommitFails(t *testing.T) {
	a, b, log, gate := pipelinePair(t)
	held := make(chan struct{})
	gate.Store(&held)
	log.fail.Store(3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := a.Exchange(ctx, b.ID())
	require.NoError(t, err)
	require.EqualValues(t, 3, info.Epoch) // a installed; b's commit will fail

	aEvents, stopA := a.Subscribe(0)
	defer stopA()
	next := make(chan error, 1)
	go func() {
		_, err := a.Exchange(ctx, b.ID())
		next <- err
	}()
	awaitStep(t, aEvents, func(e Event) bool {
		return e.Kind == EventStep && e.Step.Kind == protocol.EventNoticeReceived && e.Step.Notice == pb.Notice_PART
	}, "the responder's PART of the next exchange while its previous commit is held")
	openGate(gate)
	require.Error(t, <-next, "an exchange that followed a failed commit")
	k, err := b.ActiveKey(a.ID())
	require.NoError(t, err)
	require.EqualValues(t, 2, k.Epoch)
	require.Equal(t, []uint64{1, 2, 3}, log.committed(), "nothing after the failed commit")
	ka, err := a.ActiveKey(b.ID())
	require.NoError(t, err)
	require.EqualValues(t, 3, ka.Epoch, "the initiator keeps epoch 3 only")

	// a is one epoch ahead, as after a lost last PART_RECEIVED: the next
	// exchange converges above both.
	require.EqualValues(t, 4, exchange(t, a, b).Epoch)
}
