package peerstore

import (
	"github.com/libp2p/go-libp2p/core/peer"

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
