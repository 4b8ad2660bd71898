package node

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
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
