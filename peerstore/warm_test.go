package peerstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/internal/failpoint"
)

// TestWithoutWarm: OpenBolt walks every key of the state tree by default
// (warmState) and none with WithoutWarm, and the store answers Lookup,
// Peer and ActiveSession the same after either open, for peers with a
// record and sessions, sessions only, a record only, a verified record, a
// forgotten peer and one never seen.
func TestWithoutWarm(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	path := filepath.Join(dir, BoltFileName)
	var mu sync.Mutex
	var walks []int
	hook := func(p string, keys int) {
		if p == path { // other tests' stores are not this one's
			mu.Lock()
			walks = append(walks, keys)
			mu.Unlock()
		}
	}
	testHookWarmed.Store(&hook)
	t.Cleanup(func() { testHookWarmed.Store(nil) })
	takeWalks := func() []int {
		mu.Lock()
		defer mu.Unlock()
		w := walks
		walks = nil
		return w
	}

	st, err := OpenBolt(dir)
	require.NoError(t, err)
	require.Empty(t, takeWalks(), "a new store has no state to walk")
	// Enough peers for a tree of several leaf pages (about 150 bytes a
	// peer), so that the walk's key ranges each hold some.
	const n = 300
	peers := make([]peer.ID, n+1) // the last one is never stored
	now := time.Now().Truncate(time.Second)
	withState := 0
	for i := range peers {
		if peers[i], err = test.RandPeerID(); err != nil {
			t.Fatal(err)
		}
		if i == n {
			break
		}
		p := peers[i]
		c := Commit{Session: SessionKey{Peer: p, Epoch: 1, Suite: 1, Created: now}, Seen: now}
		c.Session.Key[0], c.Session.ID[0] = byte(i), byte(i>>8)
		if i%5 != 1 { // 1: sessions only
			c.PeerKey = &PeerKey{Peer: p, Seq: uint64(1 + i%3), Record: []byte("record " + p), Fingerprint: []byte("fp " + p),
				Trust: TrustFirstUse, FirstSeen: now, LastSeen: now}
		}
		require.NoError(t, st.CommitExchange(c))
		withState++
		switch i % 5 {
		case 2: // a second epoch
			c.Session.Epoch, c.PeerKey = 2, nil
			require.NoError(t, st.CommitExchange(c))
		case 3: // verified, then a record only: its sessions deleted
			require.NoError(t, st.SetTrust(p, TrustVerified))
			require.NoError(t, st.(*boltStore).write(failpoint.DeleteSessionsAfterCommit, func(w *writeTx) error {
				_, err := w.deletePeerSessions(p)
				return err
			}))
		case 4: // forgotten
			_, err := st.Forget(p)
			require.NoError(t, err)
			withState--
		}
	}
	require.NoError(t, st.Close())

	// answers reads what the store says of every peer, after an open with
	// opts.
	answers := func(opts ...BoltOption) []string {
		st, err := OpenBolt(dir, opts...)
		require.NoError(t, err)
		defer st.Close()
		out := make([]string, len(peers))
		for i, p := range peers {
			ls, lerr := st.Lookup(p)
			pk, perr := st.Peer(p)
			act, aerr := st.ActiveSession(p)
			for _, e := range []error{lerr, perr, aerr} {
				if e != nil && !errors.Is(e, ErrNotFound) {
					t.Fatalf("peer %d: %v", i, e)
				}
			}
			key := ""
			if act != nil {
				key = fmt.Sprintf("%x", act.Key[:]) // a test's key: Key's String hides it
			}
			out[i] = fmt.Sprintf("Lookup %+v %v; Peer %+v %v; ActiveSession %+v %s %v", ls, lerr, pk, perr, act, key, aerr)
		}
		return out
	}
	warm := answers()
	require.Equal(t, []int{withState}, takeWalks(), "the default open walks every key once")
	cold := answers(WithoutWarm())
	require.Empty(t, takeWalks(), "WithoutWarm walked the state tree")
	require.Equal(t, warm, cold, "the store answers differently without the walk")
	require.Contains(t, warm[0], "Epoch:1", "a peer with a record and a session")
	require.Contains(t, warm[n], ErrNotFound.Error(), "the peer never stored")
	require.Equal(t, []int{withState}, func() []int { answers(); return takeWalks() }(), "a later default open walks again")
}
