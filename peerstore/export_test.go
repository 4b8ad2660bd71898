package peerstore

import (
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/p2pkex/p2pkex/internal/failpoint"
)

// DeletePeerSessions deletes p's sessions through the one internal path that
// destroys them (what a store-level "forget" uses), for tests.
func DeletePeerSessions(st Store, p peer.ID) (int, error) {
	switch s := st.(type) {
	case *boltStore:
		var n int
		err := s.write(failpoint.DeleteSessionsAfterCommit, func(w *writeTx) (err error) {
			n, err = w.deletePeerSessions(p)
			return err
		})
		return n, err
	case *memStore:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.deletePeerSessions(p), nil
	}
	panic("unknown store")
}

// GroupCommits returns how many transactions the bbolt store's group commit
// wrote and how many CommitExchange calls they committed, for tests.
func GroupCommits(st Store) (batches, commits uint64) {
	s := st.(*boltStore)
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return s.batch.batches, s.batch.commits
}

// GroupCommitWaits returns how many leaders of the bbolt store's group
// commit waited for more callers before they took the queue, for tests.
func GroupCommitWaits(st Store) uint64 {
	s := st.(*boltStore)
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return s.batch.waits
}

// The group commit's wait (batch.go), for tests.
var WaitBefore = waitBefore

const (
	MaxBatchWait = maxBatchWait
	BatchFull    = batchFull
)

// KeyFileSyncs returns how many times the bbolt store synced its key file,
// for tests and benchmarks.
func KeyFileSyncs(st Store) uint64 { return st.(*boltStore).keys.syncs.Load() }

// KeyPool returns how many slots the bbolt store's pool of synced keys
// holds, for tests.
func KeyPool(st Store) int {
	k := st.(*boltStore).keys
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.ready)
}

// UnnamedKeySlots reads the files of a closed store in dir and returns how
// many slots of its key file hold a key that no sealed value in store.db
// names: none in a store closed cleanly, or opened again after a crash.
func UnnamedKeySlots(dir string) (int, error) {
	db, err := bolt.Open(filepath.Join(dir, BoltFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	named := map[uint64]bool{}
	if err := db.View(func(tx *bolt.Tx) error {
		return forEachSealed(tx, func(n uint64) { named[n] = true })
	}); err != nil {
		return 0, err
	}
	keys, err := os.ReadFile(filepath.Join(dir, KeysFileName))
	if err != nil {
		return 0, err
	}
	unnamed := 0
	for n := uint64(1); n < uint64(len(keys)/slotSize); n++ {
		if !isZero(keys[n*slotSize:(n+1)*slotSize]) && !named[n] {
			unnamed++
		}
	}
	return unnamed, nil
}

// ReportLatencies is reportLatencies, for the external benchmarks.
var ReportLatencies = reportLatencies

// KeyOpens returns how many sealed secrets the bbolt store opened, for
// tests of what reads keys.
func KeyOpens(st Store) uint64 { return st.(*boltStore).keys.opens.Load() }
