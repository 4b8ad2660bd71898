package peerstore

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	"github.com/stretchr/testify/require"
)

// TestPeerCache walks peerCache through the interleavings of readers and
// writers that must not leave a record older than a settled write in it
// (peercache.go); each step would fail if its check were missing.
func TestPeerCache(t *testing.T) {
	p, err := test.RandPeerID()
	require.NoError(t, err)
	rec := func(seq uint64) *PeerKey {
		return &PeerKey{Peer: p, Seq: seq, Record: []byte{byte(seq)}, Trust: TrustFirstUse}
	}
	seq := func(c *peerCache) uint64 {
		t.Helper()
		pk := c.get(p)
		if pk == nil {
			return 0
		}
		return pk.Seq
	}
	c := newPeerCache()

	c.fill(rec(1), 5) // a reader at transaction 5 read seq 1
	require.EqualValues(t, 1, seq(c))
	got := c.get(p)
	got.Record[0] = 99 // a copy
	require.EqualValues(t, 1, c.get(p).Record[0])

	// A write in flight: no hits, no fills, until it settles.
	c.begin(p)
	require.Zero(t, seq(c), "served while a write of the peer is in flight")
	c.fill(rec(1), 6) // a reader that started before the commit
	c.end(map[peer.ID]*PeerKey{p: rec(2)}, 7, true)
	require.EqualValues(t, 2, seq(c))

	// A reader whose snapshot predates the write cannot put back seq 1.
	c.fill(rec(1), 6)
	require.EqualValues(t, 2, seq(c), "an older snapshot replaced a settled write")

	// Nor once the entry was dropped (the floor).
	c.mu.Lock()
	c.drop(p, c.entries[p])
	c.mu.Unlock()
	c.fill(rec(1), 6)
	require.Zero(t, seq(c), "an older snapshot filled after the entry was dropped")
	c.fill(rec(2), 7)
	require.EqualValues(t, 2, seq(c))

	// A write that failed changes nothing and lifts its mark.
	c.begin(p)
	c.end(map[peer.ID]*PeerKey{p: rec(3)}, 8, false)
	require.EqualValues(t, 2, seq(c))
	require.Empty(t, c.pending)

	// Two writes in flight: the first to settle does not end the mark, and
	// a settle that comes late does not replace a newer one.
	c.begin(p)
	c.begin(p)
	c.end(map[peer.ID]*PeerKey{p: rec(4)}, 10, true)
	require.Zero(t, seq(c), "served while a second write is in flight")
	c.end(map[peer.ID]*PeerKey{p: rec(3)}, 9, true)
	require.EqualValues(t, 4, seq(c), "a late settle replaced a newer record")

	// A deleted record leaves no entry, and older snapshots cannot fill.
	c.begin(p)
	c.end(map[peer.ID]*PeerKey{p: nil}, 11, true)
	require.Zero(t, seq(c))
	c.fill(rec(4), 10)
	require.Zero(t, seq(c), "a snapshot from before the delete filled")

	// Bounded.
	for range 2 * peerCacheSize {
		q, err := test.RandPeerID()
		require.NoError(t, err)
		c.fill(&PeerKey{Peer: q, Seq: 1}, 12)
	}
	require.LessOrEqual(t, len(c.entries), peerCacheSize)
}
