package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// readCountingStore counts a node's reads of its store.
type readCountingStore struct {
	ps.Store
	peer, active, lookup atomic.Int64
}

func (s *readCountingStore) Peer(p peer.ID) (*ps.PeerKey, error) {
	s.peer.Add(1)
	return s.Store.Peer(p)
}

func (s *readCountingStore) ActiveSession(p peer.ID) (*ps.SessionKey, error) {
	s.active.Add(1)
	return s.Store.ActiveSession(p)
}

func (s *readCountingStore) Lookup(p peer.ID) (ps.PeerState, error) {
	s.lookup.Add(1)
	return s.Store.Lookup(p)
}

// TestExchangeStoreReads checks that an exchange with both records known
// learns what it needs of the store (the record's fingerprint and trust,
// the epoch; admission's "known?") through Lookup alone: it copies no
// record out of the store (Peer) and opens no session key (ActiveSession,
// on bbolt a decryption). Before Lookup each exchange made two or three
// Peer reads and one or two ActiveSession reads, both sides together. A
// first contact reads no record either: there is none.
func TestExchangeStoreReads(t *testing.T) {
	sa, sb := &readCountingStore{Store: ps.NewMemory()}, &readCountingStore{Store: ps.NewMemory()}
	a, b := newNode(t, WithStore(sa)), newNode(t, WithStore(sb))
	introduce(a, b)
	info := exchange(t, a, b) // first contact
	// Neither side held a record: nothing to read back for the trust
	// engine (accept), which orders a received record against the held one.
	require.Zero(t, sa.peer.Load(), "initiator: records read at first contact")
	require.Zero(t, sb.peer.Load(), "responder: records read at first contact")
	for _, s := range []*readCountingStore{sa, sb} {
		s.peer.Store(0)
		s.active.Store(0)
		s.lookup.Store(0)
	}
	const n = 3
	for range n {
		// The responder's commit of the last exchange has finished: this
		// one follows nothing in flight, and its machine reads the store
		// itself (TestPipelinedExchangeReadsOnce has the other case).
		require.Eventually(t, func() bool { return !slotTaken(b, a.ID()) }, 10*time.Second, time.Millisecond)
		info2, err := a.Exchange(ctxT(t), b.ID())
		require.NoError(t, err)
		require.False(t, info2.SentOwnKey || info2.ReceivedPeerKey, "records known: phase 2 carries none")
		info = info2
	}
	// The responder builds its machine before it answers: its reads are
	// done once the initiator's last exchange returned.
	for name, s := range map[string]*readCountingStore{"initiator": sa, "responder": sb} {
		require.Zero(t, s.peer.Load(), "%s: records copied out of the store", name)
		require.Zero(t, s.active.Load(), "%s: session keys opened", name)
	}
	require.EqualValues(t, n, sa.lookup.Load(), "initiator: one Lookup per exchange")
	require.EqualValues(t, 2*n, sb.lookup.Load(), "responder: admission's and the machine's")
	require.Eventually(t, func() bool {
		act, err := sb.Store.ActiveSession(a.ID())
		return err == nil && act.Epoch == info.Epoch
	}, 10*time.Second, 5*time.Millisecond)
}

// slotTaken reports whether an exchange with p holds n's slot for p.
func slotTaken(n *Node, p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.slots[p] != nil
}

// TestPipelinedExchangeReadsOnce: an exchange that follows one on its kept
// stream while that one's commit is still in flight (pipeline.go) reads
// the store once on the responder, at admission; its machine takes that
// read instead of a second Lookup (serve). The held commit lands after
// the read, which saw the epoch before it: the exchange still proposes
// above the held one, and finds both records known (phase 2 carries
// none). Fails with the machine's own Lookup: two reads.
func TestPipelinedExchangeReadsOnce(t *testing.T) {
	gate := new(atomic.Pointer[chan struct{}])
	mem := ps.NewMemory()
	t.Cleanup(func() { mem.Close() })
	reads := &readCountingStore{Store: mem}
	b := newNode(t, WithStore(gatedCommitStore{Store: reads, gate: gate}))
	a := newNode(t)
	t.Cleanup(func() { openGate(gate) }) // before the nodes' Close
	introduce(a, b)
	for epoch := uint64(1); epoch <= 2; epoch++ {
		require.Equal(t, epoch, exchange(t, a, b).Epoch)
	}
	held := make(chan struct{})
	gate.Store(&held)
	info, err := a.Exchange(ctxT(t), b.ID())
	require.NoError(t, err)
	require.EqualValues(t, 3, info.Epoch) // b's commit of 3 waits at the gate

	aEvents, stopA := a.Subscribe(0)
	defer stopA()
	reads.lookup.Store(0)
	type result struct {
		info *KeyInfo
		err  error
	}
	next := make(chan result, 1)
	go func() {
		info, err := a.Exchange(context.Background(), b.ID())
		next <- result{info, err}
	}()
	awaitStep(t, aEvents, func(e Event) bool {
		return e.Kind == EventStep && e.Step.Kind == protocol.EventNoticeReceived && e.Step.Notice == pb.Notice_PART
	}, "the responder's PART of the next exchange while its previous commit is held")
	require.EqualValues(t, 1, reads.lookup.Load(), "responder: admission's Lookup, taken by the machine")
	st, err := reads.Lookup(a.ID())
	require.NoError(t, err)
	require.EqualValues(t, 2, st.Epoch, "the store's epoch while the commit is held")

	openGate(gate)
	r := <-next
	require.NoError(t, r.err)
	require.EqualValues(t, 4, r.info.Epoch, "above the held commit")
	require.False(t, r.info.SentOwnKey || r.info.ReceivedPeerKey, "records known: phase 2 carries none")
	require.Eventually(t, func() bool {
		act, err := mem.ActiveSession(a.ID())
		return err == nil && act.Epoch == 4
	}, 10*time.Second, 5*time.Millisecond)
}
