package peerstore

import (
	"crypto/rand"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	"github.com/stretchr/testify/require"
)

// commitFixture is a bbolt store holding one known peer: a record of
// recordSize bytes and KeepEpochs epochs, its LastSeen at now.
func commitFixture(t *testing.T, recordSize int, now time.Time) (*boltStore, peer.ID, []byte) {
	t.Helper()
	st, err := OpenBolt(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	p := test.RandPeerIDFatal(t)
	record := make([]byte, recordSize)
	rand.Read(record)
	for e := uint64(1); e <= KeepEpochs; e++ {
		require.NoError(t, st.CommitExchange(Commit{
			Session: SessionKey{Peer: p, Epoch: e, Created: now},
			PeerKey: &PeerKey{Peer: p, Seq: 1, Record: record, Fingerprint: record[:34], Trust: TrustVerified},
			Seen:    now,
		}))
	}
	return st.(*boltStore), p, record
}

// TestCommitReadsRecordInPlace: a commit that leaves the stored record as
// it is — keys known (no record), or the stored record sent again — within
// SeenGranularity of its LastSeen, neither copies nor rewrites the record
// (commitRecord, peekPeerKey). Observed from outside: with a 1 MB record,
// the commits together allocate far less than one copy of it (the old
// commitTx decoded it at every commit: 1 MB each); and Peer still reads the
// first LastSeen. One that brings a new record rewrites it.
func TestCommitReadsRecordInPlace(t *testing.T) {
	const recordSize = 1 << 20
	now := time.Now()
	st, p, record := commitFixture(t, recordSize, now)
	same := &PeerKey{Peer: p, Seq: 1, Record: record, Fingerprint: record[:34], Trust: TrustVerified}
	epoch := uint64(KeepEpochs)
	commit := func(pk *PeerKey) {
		epoch++
		require.NoError(t, st.CommitExchange(Commit{Session: SessionKey{Peer: p, Epoch: epoch, Created: now}, PeerKey: pk, Seen: now.Add(time.Second)}))
	}
	commit(nil) // warm: the key file's pool, bbolt's pages
	const commits = 16
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range commits {
		if i%2 == 0 {
			commit(nil)
		} else {
			commit(same)
		}
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	require.Less(t, allocated, uint64(recordSize), "%d commits allocated %d bytes: the record was copied", commits, allocated)
	t.Logf("%d commits allocated %d bytes", commits, allocated)

	pk, err := st.Peer(p)
	require.NoError(t, err)
	require.True(t, pk.LastSeen.Equal(now), "the record was rewritten: LastSeen %v, want %v", pk.LastSeen, now)
	require.Equal(t, record, pk.Record)

	newer := *same
	newer.Seq = 2
	commit(&newer)
	pk, err = st.Peer(p)
	require.NoError(t, err)
	require.EqualValues(t, 2, pk.Seq)
	require.True(t, pk.LastSeen.Equal(now.Add(time.Second)))
	st2, err := st.Lookup(p)
	require.NoError(t, err)
	require.Equal(t, PeerState{Record: true, Seq: 2, Fingerprint: record[:34], Trust: TrustVerified, Epoch: epoch}, st2)
}

// TestCommitTreeOperations counts the B+tree operations of a commit
// (bbolt's cursors: each Get, Put, Delete, nested bucket opened and walk
// makes one) and pins their budget. Keys known, 7: p's session bucket
// opened, one cursor for its last epoch and then the prune's walk, p's
// state read, its record read in place, the new epoch put, p's state put,
// and the oldest epoch deleted. The old commitTx made 10: a cursor of its
// own for the walk, and to prune it read the pruned epoch again and p's
// state again. With a new record, 8 (the record put) against 13: the old
// one read and wrote p's state twice. Counts of the
// bbolt of go.mod; a bbolt that makes more cursors per operation would
// need the budget recounted.
func TestCommitTreeOperations(t *testing.T) {
	now := time.Now()
	st, p, record := commitFixture(t, 1400, now)
	epoch := uint64(KeepEpochs)
	cursors := func(pk *PeerKey) int64 {
		epoch++
		c := Commit{Session: SessionKey{Peer: p, Epoch: epoch, Created: now}, PeerKey: pk, Seen: now}
		var n int64
		require.NoError(t, st.write("", func(w *writeTx) error {
			// The top-level buckets opened once per transaction, as a batch's
			// first commit does, so that what is counted is the commit's.
			for _, name := range [][]byte{bucketSessions, bucketPeers, bucketState} {
				if _, err := bucket(w.tx, name); err != nil {
					return err
				}
			}
			before := w.tx.Stats()
			if err := commitTx(w, &c); err != nil {
				return err
			}
			after := w.tx.Stats()
			n = after.GetCursorCount() - before.GetCursorCount()
			return nil
		}))
		return n
	}
	require.LessOrEqual(t, cursors(nil), int64(7), "keys known")
	require.LessOrEqual(t, cursors(&PeerKey{Peer: p, Seq: 2, Record: record, Fingerprint: record[:34], Trust: TrustVerified}), int64(8), "new record")
}
