// Package storetest is the conformance suite every peerstore.Store
// implementation must pass, in the manner of go-libp2p's
// p2p/host/peerstore/test.
//
//	func TestConformance(t *testing.T) {
//		storetest.TestStore(t, func(t *testing.T) peerstore.Store { return peerstore.NewMemory() }, nil)
//	}
package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/peerstore"
)

type suite struct {
	open   func(t *testing.T) peerstore.Store
	reopen func(t *testing.T, old peerstore.Store) peerstore.Store
}

// TestStore runs the conformance suite, one subtest each.
//
// open returns a new, empty store; the suite closes it when the subtest ends
// (Close may already have been called). reopen closes old and returns a
// store over the same data, as a restarted process would see it; it may be
// nil for a store that cannot be reopened, and the persistence subtests are
// then skipped.
func TestStore(t *testing.T, open func(t *testing.T) peerstore.Store, reopen func(t *testing.T, old peerstore.Store) peerstore.Store) {
	s := &suite{open: open, reopen: reopen}
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Identity", s.testIdentity},
		{"IdentityKeyTypes", s.testIdentityKeyTypes},
		{"NotFound", s.testNotFound},
		{"ExchangeKeyRotate", s.testExchangeKeyRotate},
		{"ExchangeKeySeqMustGrow", s.testExchangeKeySeqMustGrow},
		{"ExchangeKeyPrune", s.testExchangeKeyPrune},
		{"PeersSorted", s.testPeersSorted},
		{"SetTrust", s.testSetTrust},
		{"CommitEpochOrder", s.testCommitEpochOrder},
		{"CommitStaleIsAtomic", s.testCommitStaleIsAtomic},
		{"CommitInvalid", s.testCommitInvalid},
		{"CommitFirstSeen", s.testCommitFirstSeen},
		{"CommitSeenGranularity", s.testCommitSeenGranularity},
		{"CommitWithoutPeerKey", s.testCommitWithoutPeerKey},
		{"Lookup", s.testLookup},
		{"LookupAgrees", s.testLookupAgrees},
		{"ListPeersAgrees", s.testListPeersAgrees},
		{"ListPeers", s.testListPeers},
		{"KeepEpochs", s.testKeepEpochs},
		{"Sessions", s.testSessions},
		{"ReturnsCopies", s.testReturnsCopies},
		{"StoresCopies", s.testStoresCopies},
		{"ConcurrentCommits", s.testConcurrentCommits},
		{"ReadsAfterWrites", s.testReadsAfterWrites},
		{"ConcurrentSameEpoch", s.testConcurrentSameEpoch},
		{"CommitsTogether", s.testCommitsTogether},
		{"Forget", s.testForget},
		{"ForgetConcurrentIsAtomic", s.testForgetConcurrentIsAtomic},
		{"ReopenAfterForget", s.testReopenAfterForget},
		{"Close", s.testClose},
		{"Reopen", s.testReopen},
		{"ReopenKeepsEpochOrder", s.testReopenKeepsEpochOrder},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

// store opens a new store and closes it when the test ends.
func (s *suite) store(t *testing.T) peerstore.Store {
	t.Helper()
	st := s.open(t)
	require.NotNil(t, st)
	t.Cleanup(func() { st.Close() })
	return st
}

func (s *suite) reopenStore(t *testing.T, old peerstore.Store) peerstore.Store {
	t.Helper()
	st := s.reopen(t, old)
	require.NotNil(t, st)
	t.Cleanup(func() { st.Close() })
	return st
}

// t0 has nanoseconds, so that a store that drops them fails.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// RandPeerID returns the peer ID of a new Ed25519 key.
func RandPeerID(t testing.TB) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := peer.IDFromPublicKey(pub)
	require.NoError(t, err)
	return id
}

// randBytes may be called from any goroutine: crypto/rand.Read does not fail.
func randBytes(_ testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newSession(t testing.TB, p peer.ID, epoch uint64) peerstore.SessionKey {
	s := peerstore.SessionKey{Peer: p, Epoch: epoch, Suite: 0x0a, Created: at(time.Duration(epoch) * time.Minute)}
	copy(s.Key[:], randBytes(t, peerstore.KeySize))
	copy(s.ID[:], randBytes(t, peerstore.KeyIDSize))
	return s
}

func newPeerKey(t testing.TB, p peer.ID, seq uint64) *peerstore.PeerKey {
	return &peerstore.PeerKey{
		Peer:        p,
		Seq:         seq,
		Record:      randBytes(t, 100),
		Fingerprint: randBytes(t, 34),
		Trust:       peerstore.TrustFirstUse,
		FirstSeen:   at(time.Duration(seq) * time.Hour),
		LastSeen:    at(time.Duration(seq) * time.Hour),
	}
}

func newExchangeKey(t testing.TB, seq uint64) peerstore.ExchangeKey {
	return peerstore.ExchangeKey{
		Seq:    seq,
		Record: randBytes(t, 200),
		Keys: []peerstore.SuiteKey{
			{Suite: 0x0a, Private: randBytes(t, 32)},
			{Suite: 0x20, Private: randBytes(t, 32)},
		},
		Created: at(time.Duration(seq) * 24 * time.Hour),
	}
}

// commit stores a session of epoch for p with a new record of sequence seq.
func commit(t testing.TB, st peerstore.Store, p peer.ID, epoch uint64) (peerstore.SessionKey, *peerstore.PeerKey) {
	t.Helper()
	sk := newSession(t, p, epoch)
	pk := newPeerKey(t, p, epoch)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: sk, PeerKey: pk, Seen: pk.LastSeen}))
	return sk, pk
}

// Comparisons: times by instant (a store need not keep the location), byte
// slices by content (nil and empty are the same).

func requireTimeEqual(t testing.TB, want, got time.Time, what string) {
	t.Helper()
	require.Truef(t, want.Equal(got), "%s: want %v, got %v", what, want, got)
}

// RequireSessionEqual fails unless want and got are the same session key.
func RequireSessionEqual(t testing.TB, want, got *peerstore.SessionKey) {
	t.Helper()
	require.NotNil(t, got)
	require.Equal(t, want.Peer, got.Peer, "peer")
	require.Equal(t, want.Epoch, got.Epoch, "epoch")
	require.True(t, want.Key.Equal(&got.Key), "key of epoch %d differs", want.Epoch)
	require.Equal(t, want.ID, got.ID, "key ID")
	require.Equal(t, want.Suite, got.Suite, "suite")
	requireTimeEqual(t, want.Created, got.Created, "created")
}

// RequirePeerKeyEqual fails unless want and got are the same peer record.
func RequirePeerKeyEqual(t testing.TB, want, got *peerstore.PeerKey) {
	t.Helper()
	require.NotNil(t, got)
	require.Equal(t, want.Peer, got.Peer, "peer")
	require.Equal(t, want.Seq, got.Seq, "seq")
	require.True(t, bytes.Equal(want.Record, got.Record), "record")
	require.True(t, bytes.Equal(want.Fingerprint, got.Fingerprint), "fingerprint")
	require.Equal(t, want.Trust, got.Trust, "trust")
	requireTimeEqual(t, want.FirstSeen, got.FirstSeen, "first seen")
	requireTimeEqual(t, want.LastSeen, got.LastSeen, "last seen")
}

// RequireExchangeKeyEqual fails unless want and got are the same exchange key.
func RequireExchangeKeyEqual(t testing.TB, want, got *peerstore.ExchangeKey) {
	t.Helper()
	require.NotNil(t, got)
	require.Equal(t, want.Seq, got.Seq, "seq")
	require.True(t, bytes.Equal(want.Record, got.Record), "record")
	require.Len(t, got.Keys, len(want.Keys), "keys")
	for i := range want.Keys {
		require.Equal(t, want.Keys[i].Suite, got.Keys[i].Suite, "suite of key %d", i)
		require.True(t, bytes.Equal(want.Keys[i].Private, got.Keys[i].Private), "private key %d", i)
	}
	requireTimeEqual(t, want.Created, got.Created, "created")
	requireTimeEqual(t, want.Retire, got.Retire, "retire")
}

func (s *suite) testIdentity(t *testing.T) {
	st := s.store(t)
	_, err := st.Identity()
	require.ErrorIs(t, err, peerstore.ErrNotFound)

	require.Error(t, st.SetIdentity(nil))

	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, st.SetIdentity(k))
	got, err := st.Identity()
	require.NoError(t, err)
	require.True(t, k.Equals(got), "identity read back differs")

	other, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	require.ErrorIs(t, st.SetIdentity(other), peerstore.ErrExists)
	require.ErrorIs(t, st.SetIdentity(k), peerstore.ErrExists)
	got, err = st.Identity()
	require.NoError(t, err)
	require.True(t, k.Equals(got), "SetIdentity replaced the identity")
}

func (s *suite) testIdentityKeyTypes(t *testing.T) {
	for _, typ := range []int{crypto.Ed25519, crypto.Secp256k1, crypto.ECDSA} {
		t.Run(fmt.Sprint(typ), func(t *testing.T) {
			st := s.store(t)
			k, _, err := crypto.GenerateKeyPairWithReader(typ, 0, rand.Reader)
			require.NoError(t, err)
			require.NoError(t, st.SetIdentity(k))
			got, err := st.Identity()
			require.NoError(t, err)
			require.True(t, k.Equals(got))
		})
	}
}

func (s *suite) testNotFound(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)

	cur, prev, err := st.ExchangeKeys()
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	require.Nil(t, cur)
	require.Nil(t, prev)
	_, err = st.Peer(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	_, err = st.ActiveSession(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	_, err = st.Session(p, 1)
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	_, err = st.Sessions(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	require.ErrorIs(t, st.SetTrust(p, peerstore.TrustVerified), peerstore.ErrNotFound)
	peers, err := st.Peers()
	require.NoError(t, err)
	require.Empty(t, peers)
	pruned, err := st.PruneExchangeKeys(at(0))
	require.NoError(t, err)
	require.False(t, pruned)

	// A known peer, but an epoch it never had.
	commit(t, st, p, 1)
	_, err = st.Session(p, 2)
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	_, err = st.Session(p, 0)
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	// Another peer is still unknown.
	_, err = st.Peer(RandPeerID(t))
	require.ErrorIs(t, err, peerstore.ErrNotFound)
}

func (s *suite) testExchangeKeyRotate(t *testing.T) {
	st := s.store(t)
	const grace = time.Hour

	k1 := newExchangeKey(t, 1)
	k1.Retire = at(time.Second) // ignored: the current key has no retire time
	require.NoError(t, st.RotateExchangeKey(k1, at(0), grace))
	cur, prev, err := st.ExchangeKeys()
	require.NoError(t, err)
	k1.Retire = time.Time{}
	RequireExchangeKeyEqual(t, &k1, cur)
	require.Nil(t, prev)

	k2 := newExchangeKey(t, 2)
	require.NoError(t, st.RotateExchangeKey(k2, at(time.Minute), grace))
	cur, prev, err = st.ExchangeKeys()
	require.NoError(t, err)
	RequireExchangeKeyEqual(t, &k2, cur)
	k1.Retire = at(time.Minute + grace)
	RequireExchangeKeyEqual(t, &k1, prev)

	// A third key destroys the first: it is neither current nor previous.
	k3 := newExchangeKey(t, 7) // sequence numbers may jump
	require.NoError(t, st.RotateExchangeKey(k3, at(2*time.Minute), grace))
	cur, prev, err = st.ExchangeKeys()
	require.NoError(t, err)
	RequireExchangeKeyEqual(t, &k3, cur)
	k2.Retire = at(2*time.Minute + grace)
	RequireExchangeKeyEqual(t, &k2, prev)

	// A zero grace period destroys the old key with the rotation: it is not
	// kept as the previous one, and the previous one is destroyed too.
	k4 := newExchangeKey(t, 8)
	require.NoError(t, st.RotateExchangeKey(k4, at(3*time.Minute), 0))
	cur, prev, err = st.ExchangeKeys()
	require.NoError(t, err)
	RequireExchangeKeyEqual(t, &k4, cur)
	require.Nil(t, prev)

	require.Error(t, st.RotateExchangeKey(newExchangeKey(t, 9), at(4*time.Minute), -time.Second),
		"negative grace period")
}

func (s *suite) testExchangeKeySeqMustGrow(t *testing.T) {
	st := s.store(t)
	k5 := newExchangeKey(t, 5)
	require.NoError(t, st.RotateExchangeKey(k5, at(0), time.Hour))
	k6 := newExchangeKey(t, 6)
	require.NoError(t, st.RotateExchangeKey(k6, at(time.Minute), time.Hour))

	for _, seq := range []uint64{0, 4, 5, 6} {
		require.Error(t, st.RotateExchangeKey(newExchangeKey(t, seq), at(time.Hour), time.Hour), "seq %d", seq)
	}
	// Nothing changed.
	cur, prev, err := st.ExchangeKeys()
	require.NoError(t, err)
	RequireExchangeKeyEqual(t, &k6, cur)
	k5.Retire = at(time.Minute + time.Hour)
	RequireExchangeKeyEqual(t, &k5, prev)
}

func (s *suite) testExchangeKeyPrune(t *testing.T) {
	st := s.store(t)
	const grace = 10 * time.Minute
	k1, k2 := newExchangeKey(t, 1), newExchangeKey(t, 2)
	require.NoError(t, st.RotateExchangeKey(k1, at(0), grace))

	// Only a current key: nothing to prune, at any time.
	pruned, err := st.PruneExchangeKeys(at(100 * grace))
	require.NoError(t, err)
	require.False(t, pruned)

	require.NoError(t, st.RotateExchangeKey(k2, at(time.Minute), grace))
	retire := at(time.Minute + grace)

	for _, now := range []time.Time{at(0), retire.Add(-time.Nanosecond)} {
		pruned, err := st.PruneExchangeKeys(now)
		require.NoError(t, err)
		require.False(t, pruned, "pruned at %v, before the grace period ended at %v", now, retire)
		_, prev, err := st.ExchangeKeys()
		require.NoError(t, err)
		require.NotNil(t, prev)
	}

	// The grace period ends at retire exactly.
	pruned, err = st.PruneExchangeKeys(retire)
	require.NoError(t, err)
	require.True(t, pruned)
	cur, prev, err := st.ExchangeKeys()
	require.NoError(t, err)
	require.Nil(t, prev)
	RequireExchangeKeyEqual(t, &k2, cur)

	pruned, err = st.PruneExchangeKeys(retire.Add(time.Hour))
	require.NoError(t, err)
	require.False(t, pruned, "pruned twice")
}

func (s *suite) testPeersSorted(t *testing.T) {
	st := s.store(t)
	want := map[peer.ID]*peerstore.PeerKey{}
	for range 20 {
		p := RandPeerID(t)
		_, pk := commit(t, st, p, 1)
		want[p] = pk
	}
	// A peer with a session but no record is not listed.
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, RandPeerID(t), 1), Seen: at(0)}))

	got, err := st.Peers()
	require.NoError(t, err)
	require.Len(t, got, len(want))
	require.True(t, slices.IsSortedFunc(got, func(a, b peerstore.PeerKey) int {
		return strings.Compare(string(a.Peer), string(b.Peer))
	}), "Peers not sorted by peer ID")
	for i := range got {
		w, ok := want[got[i].Peer]
		require.True(t, ok, "unexpected peer %s", got[i].Peer)
		RequirePeerKeyEqual(t, w, &got[i])
	}
}

func (s *suite) testSetTrust(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	require.ErrorIs(t, st.SetTrust(p, peerstore.TrustVerified), peerstore.ErrNotFound)

	// A session alone does not make a peer record.
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 1), Seen: at(0)}))
	require.ErrorIs(t, st.SetTrust(p, peerstore.TrustVerified), peerstore.ErrNotFound)
	_, err := st.Peer(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound)

	_, pk := commit(t, st, p, 2)
	for _, ts := range []peerstore.TrustState{peerstore.TrustVerified, peerstore.TrustChanged, peerstore.TrustFirstUse} {
		require.NoError(t, st.SetTrust(p, ts))
		got, err := st.Peer(p)
		require.NoError(t, err)
		pk.Trust = ts
		RequirePeerKeyEqual(t, pk, got)
	}
	for _, bad := range []peerstore.TrustState{peerstore.TrustUnknown, peerstore.TrustChanged + 1, 255} {
		require.Error(t, st.SetTrust(p, bad), "trust %d", bad)
		got, err := st.Peer(p)
		require.NoError(t, err)
		require.Equal(t, peerstore.TrustFirstUse, got.Trust)
	}
}

func (s *suite) testCommitEpochOrder(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)

	require.ErrorIs(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 0)}), peerstore.ErrStaleEpoch,
		"epoch 0 is never active")
	sk1, _ := commit(t, st, p, 1)
	require.ErrorIs(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 1)}), peerstore.ErrStaleEpoch)
	sk2, _ := commit(t, st, p, 2)
	for _, e := range []uint64{0, 1, 2} {
		require.ErrorIs(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, e)}), peerstore.ErrStaleEpoch,
			"epoch %d", e)
	}
	// Epochs may jump.
	sk5, _ := commit(t, st, p, 5)
	require.ErrorIs(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 4)}), peerstore.ErrStaleEpoch)

	act, err := st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &sk5, act)
	for _, sk := range []peerstore.SessionKey{sk1, sk2, sk5} {
		got, err := st.Session(p, sk.Epoch)
		require.NoError(t, err)
		RequireSessionEqual(t, &sk, got)
	}

	// Epochs are per peer.
	q := RandPeerID(t)
	skq, _ := commit(t, st, q, 1)
	act, err = st.ActiveSession(q)
	require.NoError(t, err)
	RequireSessionEqual(t, &skq, act)
}

func (s *suite) testCommitStaleIsAtomic(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	sk, pk := commit(t, st, p, 3)

	// A stale commit writes nothing: not its record, not its Seen.
	err := st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 3), PeerKey: newPeerKey(t, p, 9), Seen: at(99 * time.Hour)})
	require.ErrorIs(t, err, peerstore.ErrStaleEpoch)
	err = st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 2), Seen: at(99 * time.Hour)})
	require.ErrorIs(t, err, peerstore.ErrStaleEpoch)

	got, err := st.Peer(p)
	require.NoError(t, err)
	RequirePeerKeyEqual(t, pk, got)
	all, err := st.Sessions(p)
	require.NoError(t, err)
	require.Len(t, all, 1)
	RequireSessionEqual(t, &sk, &all[0])
}

func (s *suite) testCommitInvalid(t *testing.T) {
	st := s.store(t)
	p, q := RandPeerID(t), RandPeerID(t)
	tests := []struct {
		name string
		c    peerstore.Commit
	}{
		{"EmptyPeer", peerstore.Commit{Session: newSession(t, "", 1)}},
		{"BadPeerID", peerstore.Commit{Session: newSession(t, peer.ID("not a peer ID"), 1)}},
		{"PeerKeyOfOtherPeer", peerstore.Commit{Session: newSession(t, p, 1), PeerKey: newPeerKey(t, q, 1)}},
		{"PeerKeyWithoutPeer", peerstore.Commit{Session: newSession(t, p, 1), PeerKey: newPeerKey(t, "", 1)}},
		{"TrustUnknown", peerstore.Commit{Session: newSession(t, p, 1), PeerKey: func() *peerstore.PeerKey {
			pk := newPeerKey(t, p, 1)
			pk.Trust = peerstore.TrustUnknown
			return pk
		}()}},
		{"TrustOutOfRange", peerstore.Commit{Session: newSession(t, p, 1), PeerKey: func() *peerstore.PeerKey {
			pk := newPeerKey(t, p, 1)
			pk.Trust = peerstore.TrustChanged + 1
			return pk
		}()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := st.CommitExchange(tc.c)
			require.Error(t, err)
			require.False(t, errors.Is(err, peerstore.ErrStaleEpoch), "an invalid commit is not a stale one: %v", err)
		})
	}
	for _, id := range []peer.ID{p, q} {
		_, err := st.Peer(id)
		require.ErrorIs(t, err, peerstore.ErrNotFound)
		_, err = st.ActiveSession(id)
		require.ErrorIs(t, err, peerstore.ErrNotFound)
	}
	peers, err := st.Peers()
	require.NoError(t, err)
	require.Empty(t, peers)
}

func (s *suite) testCommitFirstSeen(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)

	pk1 := newPeerKey(t, p, 1)
	pk1.FirstSeen = at(time.Hour)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 1), PeerKey: pk1, Seen: at(2 * time.Hour)}))
	got, err := st.Peer(p)
	require.NoError(t, err)
	want := *pk1
	want.LastSeen = at(2 * time.Hour) // Seen is written as LastSeen
	RequirePeerKeyEqual(t, &want, got)

	// A new record replaces the old one but keeps its FirstSeen.
	pk2 := newPeerKey(t, p, 2)
	pk2.Trust = peerstore.TrustChanged
	pk2.FirstSeen = at(3 * time.Hour)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 2), PeerKey: pk2, Seen: at(4 * time.Hour)}))
	got, err = st.Peer(p)
	require.NoError(t, err)
	want = *pk2
	want.FirstSeen = at(time.Hour)
	want.LastSeen = at(4 * time.Hour)
	RequirePeerKeyEqual(t, &want, got)

	// No record: only LastSeen changes.
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 3), Seen: at(5 * time.Hour)}))
	got, err = st.Peer(p)
	require.NoError(t, err)
	want.LastSeen = at(5 * time.Hour)
	RequirePeerKeyEqual(t, &want, got)

	// A new peer whose record has no FirstSeen was first seen now.
	q := RandPeerID(t)
	pkq := newPeerKey(t, q, 1)
	pkq.FirstSeen, pkq.LastSeen = time.Time{}, time.Time{}
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, q, 1), PeerKey: pkq, Seen: at(6 * time.Hour)}))
	got, err = st.Peer(q)
	require.NoError(t, err)
	want = *pkq
	want.FirstSeen, want.LastSeen = at(6*time.Hour), at(6*time.Hour)
	RequirePeerKeyEqual(t, &want, got)
}

// testCommitSeenGranularity: a commit that leaves the record as it is
// moves LastSeen only once it is more than SeenGranularity old (or Seen is
// before it); a changed record is always written, LastSeen with it.
func (s *suite) testCommitSeenGranularity(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	g := peerstore.SeenGranularity
	pk := newPeerKey(t, p, 1)
	pk.FirstSeen, pk.LastSeen = at(0), at(0)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 1), PeerKey: pk, Seen: at(0)}))
	want := *pk
	check := func(epoch uint64, c peerstore.Commit, lastSeen time.Time, what string) {
		t.Helper()
		c.Session = newSession(t, p, epoch)
		require.NoError(t, st.CommitExchange(c))
		got, err := st.Peer(p)
		require.NoError(t, err)
		want.LastSeen = lastSeen
		RequirePeerKeyEqual(t, &want, got)
		act, err := st.ActiveSession(p)
		require.NoError(t, err)
		require.Equal(t, epoch, act.Epoch, "%s: the session is committed in any case", what)
	}
	same := *pk
	same.FirstSeen, same.LastSeen = at(g/2), at(g/2) // times are not compared
	check(2, peerstore.Commit{Seen: at(g / 2)}, at(0), "no record, within the granularity")
	check(3, peerstore.Commit{PeerKey: &same, Seen: at(g)}, at(0), "the same record, at the granularity")
	check(4, peerstore.Commit{Seen: at(g + time.Nanosecond)}, at(g+time.Nanosecond), "no record, past it")
	check(5, peerstore.Commit{Seen: at(g)}, at(g), "Seen before LastSeen (a clock set back)")

	trust := *pk
	trust.Trust = peerstore.TrustChanged
	want.Trust = peerstore.TrustChanged
	check(6, peerstore.Commit{PeerKey: &trust, Seen: at(g + time.Second)}, at(g+time.Second), "a new trust state")
	rec := *pk
	rec.Trust = peerstore.TrustChanged
	rec.Record = randBytes(t, 100)
	want.Record = rec.Record
	check(7, peerstore.Commit{PeerKey: &rec, Seen: at(g + 2*time.Second)}, at(g+2*time.Second), "a new record, same seq")
	seq := rec
	seq.Seq = 2
	want.Seq = 2
	check(8, peerstore.Commit{PeerKey: &seq, Seen: at(g + 3*time.Second)}, at(g+3*time.Second), "a new seq")
	fp := seq
	fp.Fingerprint = randBytes(t, 34)
	want.Fingerprint = fp.Fingerprint
	check(9, peerstore.Commit{PeerKey: &fp, Seen: at(g + 4*time.Second)}, at(g+4*time.Second), "a new fingerprint")

	// The granularity holds across a reopen (the stored LastSeen counts).
	if s.reopen == nil {
		return // a store that cannot reopen (memory)
	}
	st = s.reopenStore(t, st)
	check(10, peerstore.Commit{Seen: at(g + 5*time.Second)}, at(g+4*time.Second), "after a reopen")
}

func (s *suite) testCommitWithoutPeerKey(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	sk := newSession(t, p, 1)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: sk, Seen: at(0)}))
	_, err := st.Peer(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound)
	got, err := st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &sk, got)

	// A record may come later.
	_, pk := commit(t, st, p, 2)
	gotPK, err := st.Peer(p)
	require.NoError(t, err)
	RequirePeerKeyEqual(t, pk, gotPK)
}

// requireLookup checks that Lookup(p) gives the state of record pk (nil:
// no record) and the active epoch.
func requireLookup(t testing.TB, st peerstore.Store, p peer.ID, pk *peerstore.PeerKey, epoch uint64) {
	t.Helper()
	got, err := st.Lookup(p)
	require.NoError(t, err)
	want := peerstore.PeerState{Epoch: epoch}
	if pk != nil {
		want.Record, want.Seq, want.Fingerprint, want.Trust = true, pk.Seq, pk.Fingerprint, pk.Trust
	}
	require.Equal(t, want.Record, got.Record, "Record")
	require.Equal(t, want.Seq, got.Seq, "Seq")
	require.True(t, bytes.Equal(want.Fingerprint, got.Fingerprint), "Fingerprint")
	require.Equal(t, want.Trust, got.Trust, "Trust")
	require.Equal(t, want.Epoch, got.Epoch, "Epoch")
}

// RequireLookupAgrees checks that Lookup(p) says what the slow path says:
// Peer (the record's Seq, Fingerprint and Trust) and ActiveSession (the
// epoch), and ErrNotFound when both do. what names the write before it.
func RequireLookupAgrees(t testing.TB, st peerstore.Store, p peer.ID, what string) {
	t.Helper()
	pk, perr := st.Peer(p)
	act, aerr := st.ActiveSession(p)
	if act != nil {
		clear(act.Key[:])
	}
	got, err := st.Lookup(p)
	for _, e := range []error{perr, aerr} {
		if e != nil && !errors.Is(e, peerstore.ErrNotFound) {
			t.Fatalf("%s: slow path of %s: %v", what, p, e)
		}
	}
	if perr != nil && aerr != nil {
		require.ErrorIs(t, err, peerstore.ErrNotFound, "%s: Lookup of a peer Peer and ActiveSession do not know", what)
		return
	}
	require.NoError(t, err, what)
	var want peerstore.PeerState
	if pk != nil {
		want.Record, want.Seq, want.Fingerprint, want.Trust = true, pk.Seq, pk.Fingerprint, pk.Trust
	}
	if act != nil {
		want.Epoch = act.Epoch
	}
	if len(want.Fingerprint) == 0 {
		want.Fingerprint = nil
	}
	if len(got.Fingerprint) == 0 {
		got.Fingerprint = nil
	}
	require.Equal(t, want, got, "%s: Lookup(%s) against Peer and ActiveSession", what, p)
}

// testLookupAgrees is a model check of Lookup against the slow path: a
// random sequence of every kind of write a Store has — commits with a new
// record, with the same record, without one, with a stale epoch, several
// at once (the group commit), SetTrust, Forget, and a reopen — over a few
// peers, and after each, for every peer, Lookup says what Peer and
// ActiveSession say (RequireLookupAgrees). The seed is logged.
func (s *suite) testLookupAgrees(t *testing.T) {
	s.randomWrites(t, func(st peerstore.Store, peers []peer.ID, what string) {
		for _, q := range peers {
			RequireLookupAgrees(t, st, q, what)
		}
	})
}

// testListPeersAgrees is the same model check for ListPeers: after each
// random write, ListPeers read in pages of several sizes lists what Peer,
// ActiveSession and Peers say (RequireListPeersAgrees).
func (s *suite) testListPeersAgrees(t *testing.T) {
	s.randomWrites(t, func(st peerstore.Store, peers []peer.ID, what string) {
		RequireListPeersAgrees(t, st, peers, what)
	})
}

// randomWrites runs a random sequence of every kind of write a Store has
// over a few peers, calling check after each with the store, the peers and
// what the write was. The seed is logged.
func (s *suite) randomWrites(t *testing.T, check func(st peerstore.Store, peers []peer.ID, what string)) {
	st := s.store(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := mrand.New(mrand.NewPCG(seed, 0))
	peers := make([]peer.ID, 5)
	epoch := map[peer.ID]uint64{}
	seq := map[peer.ID]uint64{}
	rec := map[peer.ID]*peerstore.PeerKey{}
	for i := range peers {
		peers[i] = RandPeerID(t)
	}
	// next returns a commit of p's next epoch (a jump of up to 3).
	next := func(p peer.ID, record bool) peerstore.Commit {
		epoch[p] += 1 + uint64(r.IntN(3))
		c := peerstore.Commit{Session: newSession(t, p, epoch[p]), Seen: at(time.Duration(epoch[p]) * time.Minute)}
		c.Session.Suite = []uint16{0x0a, 0x20, 0x21}[r.IntN(3)]
		if record {
			seq[p]++
			c.PeerKey = newPeerKey(t, p, seq[p])
			rec[p] = c.PeerKey
		}
		return c
	}
	for step := range 300 {
		p := peers[r.IntN(len(peers))]
		var what string
		switch op := r.IntN(10); {
		case op < 2:
			what = "commit with a new record"
			require.NoError(t, st.CommitExchange(next(p, true)), what)
		case op < 4:
			what = "commit without a record"
			require.NoError(t, st.CommitExchange(next(p, false)), what)
		case op == 4:
			what = "commit with the same record"
			c := next(p, false)
			if old := rec[p]; old != nil {
				same := *old
				c.PeerKey = &same
			}
			require.NoError(t, st.CommitExchange(c), what)
		case op == 5:
			what = "commit with a stale epoch"
			c := peerstore.Commit{Session: newSession(t, p, max(epoch[p], 1)), PeerKey: newPeerKey(t, p, seq[p]+1), Seen: at(0)}
			if err := st.CommitExchange(c); epoch[p] > 0 {
				require.ErrorIs(t, err, peerstore.ErrStaleEpoch, what)
			} else {
				require.NoError(t, err, what) // epoch 1 of an unknown peer
				epoch[p], seq[p], rec[p] = 1, seq[p]+1, c.PeerKey
			}
		case op == 6:
			what = "SetTrust"
			err := st.SetTrust(p, peerstore.TrustState(1+r.IntN(3)))
			if rec[p] == nil {
				require.ErrorIs(t, err, peerstore.ErrNotFound, what)
			} else {
				require.NoError(t, err, what)
			}
		case op == 7:
			what = "Forget"
			_, err := st.Forget(p)
			require.NoError(t, err, what)
			delete(epoch, p)
			delete(rec, p)
		case op == 8:
			what = "commits together"
			var wg sync.WaitGroup
			errs := make([]error, len(peers))
			for i, q := range peers {
				c := next(q, r.IntN(2) == 0)
				wg.Go(func() { errs[i] = st.CommitExchange(c) })
			}
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err, what)
			}
		default:
			what = "reopen"
			if s.reopen == nil || r.IntN(4) != 0 {
				what = "nothing"
				break
			}
			st = s.reopenStore(t, st)
		}
		check(st, peers, fmt.Sprintf("step %d (%s of %s)", step, what, p))
	}
}

// RequireListPeersAgrees checks that ListPeers, read in pages of every
// size from 1 to len(peers)+1, lists exactly the peers of peers (which
// must hold every peer the store knows) that Peer or ActiveSession knows,
// in the order of their bytes, with what those say of each (the record's
// Seq, Fingerprint and Trust; the active session's epoch, key ID, suite
// and creation time); and that every peer Peers lists is listed with a
// record. what names the write before it.
func RequireListPeersAgrees(t testing.TB, st peerstore.Store, peers []peer.ID, what string) {
	t.Helper()
	var want []peerstore.PeerSummary
	for _, p := range slices.Sorted(slices.Values(peers)) {
		pk, perr := st.Peer(p)
		act, aerr := st.ActiveSession(p)
		for _, e := range []error{perr, aerr} {
			if e != nil && !errors.Is(e, peerstore.ErrNotFound) {
				t.Fatalf("%s: slow path of %s: %v", what, p, e)
			}
		}
		if perr != nil && aerr != nil {
			continue
		}
		w := peerstore.PeerSummary{Peer: p}
		if pk != nil {
			w.State.Record, w.State.Seq, w.State.Fingerprint, w.State.Trust = true, pk.Seq, pk.Fingerprint, pk.Trust
		}
		if act != nil {
			clear(act.Key[:])
			w.State.Epoch, w.KeyID, w.Suite, w.Created = act.Epoch, act.ID, act.Suite, act.Created
		}
		want = append(want, w)
	}
	records, err := st.Peers()
	require.NoError(t, err, what)
	for limit := 1; limit <= len(peers)+1; limit++ {
		var got []peerstore.PeerSummary
		after := peer.ID("")
		for {
			page, err := st.ListPeers(after, limit)
			require.NoError(t, err, "%s: ListPeers(%q, %d)", what, after, limit)
			require.LessOrEqual(t, len(page), limit, "%s: ListPeers page", what)
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].Peer
		}
		require.Len(t, got, len(want), "%s: ListPeers in pages of %d", what, limit)
		for i := range want {
			w, g := want[i], got[i]
			require.Equal(t, w.Peer, g.Peer, "%s: peer %d in pages of %d", what, i, limit)
			require.Equal(t, w.State.Record, g.State.Record, "%s: %s: Record", what, w.Peer)
			require.Equal(t, w.State.Seq, g.State.Seq, "%s: %s: Seq", what, w.Peer)
			require.True(t, bytes.Equal(w.State.Fingerprint, g.State.Fingerprint), "%s: %s: Fingerprint", what, w.Peer)
			require.Equal(t, w.State.Trust, g.State.Trust, "%s: %s: Trust", what, w.Peer)
			require.Equal(t, w.State.Epoch, g.State.Epoch, "%s: %s: Epoch", what, w.Peer)
			require.Equal(t, w.KeyID, g.KeyID, "%s: %s: KeyID", what, w.Peer)
			require.Equal(t, w.Suite, g.Suite, "%s: %s: Suite", what, w.Peer)
			requireTimeEqual(t, w.Created, g.Created, what+": "+w.Peer.String()+": Created")
		}
		withRecord := 0
		for _, g := range got {
			if g.State.Record {
				require.Less(t, withRecord, len(records), "%s: ListPeers lists more records than Peers", what)
				require.Equal(t, records[withRecord].Peer, g.Peer, "%s: record %d", what, withRecord)
				withRecord++
			}
		}
		require.Equal(t, len(records), withRecord, "%s: records listed by ListPeers and by Peers", what)
	}
}

// testListPeers: ListPeers of an empty store, a limit below 1, an after
// that no peer has, and pages that return copies.
func (s *suite) testListPeers(t *testing.T) {
	st := s.store(t)
	got, err := st.ListPeers("", 5)
	require.NoError(t, err)
	require.Empty(t, got, "an empty store")
	_, err = st.ListPeers("", 0)
	require.Error(t, err, "limit 0")

	peers := make([]peer.ID, 6)
	for i := range peers {
		peers[i] = RandPeerID(t)
		commit(t, st, peers[i], 1)
	}
	slices.Sort(peers)
	// An after that is not a stored peer: the peers above it.
	got, err = st.ListPeers(peers[2]+"x", 10)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, peers[3], got[0].Peer)
	got, err = st.ListPeers(peers[5], 10)
	require.NoError(t, err)
	require.Empty(t, got, "after the last peer")

	// Copies: changing a page changes nothing stored.
	got, err = st.ListPeers("", 1)
	require.NoError(t, err)
	require.Len(t, got, 1)
	fp := bytes.Clone(got[0].State.Fingerprint)
	clear(got[0].State.Fingerprint)
	again, err := st.ListPeers("", 1)
	require.NoError(t, err)
	require.Equal(t, fp, again[0].State.Fingerprint)
}

// testLookup: Lookup agrees with Peer and ActiveSession through every
// change of the record, its trust and the epochs, and returns copies.
func (s *suite) testLookup(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	_, err := st.Lookup(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound, "an unknown peer")

	// A session without a record (CommitWithoutPeerKey).
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 1), Seen: at(0)}))
	requireLookup(t, st, p, nil, 1)

	_, pk := commit(t, st, p, 3)
	requireLookup(t, st, p, pk, 3)
	// The record read through Peer (cached by a store that caches) and
	// Lookup stay in step.
	_, err = st.Peer(p)
	require.NoError(t, err)
	requireLookup(t, st, p, pk, 3)

	require.NoError(t, st.SetTrust(p, peerstore.TrustVerified))
	pk.Trust = peerstore.TrustVerified
	requireLookup(t, st, p, pk, 3)

	// Epochs past KeepEpochs, a commit without a record: the record stays,
	// the epoch is the highest.
	for e := uint64(4); e < 4+peerstore.KeepEpochs+1; e++ {
		require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, e), Seen: at(0)}))
	}
	requireLookup(t, st, p, pk, 4+peerstore.KeepEpochs)

	// A new record replaces the old one.
	_, pk2 := commit(t, st, p, 10)
	requireLookup(t, st, p, pk2, 10)

	// The fingerprint is a copy.
	got, err := st.Lookup(p)
	require.NoError(t, err)
	clear(got.Fingerprint)
	requireLookup(t, st, p, pk2, 10)

	if s.reopen != nil {
		st = s.reopenStore(t, st)
		requireLookup(t, st, p, pk2, 10)
	}

	res, err := st.Forget(p)
	require.NoError(t, err)
	require.True(t, res.Record)
	_, err = st.Lookup(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound, "a forgotten peer")
}

func (s *suite) testKeepEpochs(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	var all []peerstore.SessionKey
	for e := uint64(1); e <= peerstore.KeepEpochs+3; e++ {
		sk, _ := commit(t, st, p, e*2) // with gaps
		all = append(all, sk)
		got, err := st.Sessions(p)
		require.NoError(t, err)
		want := all[max(0, len(all)-peerstore.KeepEpochs):]
		require.Len(t, got, len(want))
		for i := range want {
			RequireSessionEqual(t, &want[i], &got[i])
		}
	}
	for i, sk := range all {
		got, err := st.Session(p, sk.Epoch)
		if i < len(all)-peerstore.KeepEpochs {
			require.ErrorIs(t, err, peerstore.ErrNotFound, "epoch %d should be pruned", sk.Epoch)
			continue
		}
		require.NoError(t, err)
		RequireSessionEqual(t, &sk, got)
	}
	// Pruned epochs stay stale.
	require.ErrorIs(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, all[0].Epoch)}), peerstore.ErrStaleEpoch)
}

func (s *suite) testSessions(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	sk1, _ := commit(t, st, p, 1)
	sk2 := newSession(t, p, 2)
	sk2.Suite = 0xffff
	sk2.Created = time.Time{}
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: sk2}))

	act, err := st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &sk2, act)
	require.True(t, act.Created.IsZero())
	got, err := st.Session(p, 1)
	require.NoError(t, err)
	RequireSessionEqual(t, &sk1, got)
	all, err := st.Sessions(p)
	require.NoError(t, err)
	require.Len(t, all, 2)
	RequireSessionEqual(t, &sk1, &all[0])
	RequireSessionEqual(t, &sk2, &all[1])
}

// testReturnsCopies changes everything a store returns and checks that the
// store did not change.
func (s *suite) testReturnsCopies(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	sk, pk := commit(t, st, p, 1)
	k1, k2 := newExchangeKey(t, 1), newExchangeKey(t, 2)
	require.NoError(t, st.RotateExchangeKey(k1, at(0), time.Hour))
	require.NoError(t, st.RotateExchangeKey(k2, at(0), time.Hour))
	k1.Retire = at(time.Hour)

	gotPK, err := st.Peer(p)
	require.NoError(t, err)
	gotPK.Record[0] ^= 0xff
	gotPK.Fingerprint[0] ^= 0xff
	gotPK.Trust = peerstore.TrustVerified
	gotPK.FirstSeen = time.Time{}

	peers, err := st.Peers()
	require.NoError(t, err)
	peers[0].Record[1] ^= 0xff
	peers[0].Fingerprint[1] ^= 0xff
	peers[0].Seq = 77

	act, err := st.ActiveSession(p)
	require.NoError(t, err)
	act.Key[0] ^= 0xff
	act.ID[0] ^= 0xff
	one, err := st.Session(p, 1)
	require.NoError(t, err)
	one.Key[1] ^= 0xff
	all, err := st.Sessions(p)
	require.NoError(t, err)
	all[0].Key[2] ^= 0xff
	all[0].Epoch = 99

	cur, prev, err := st.ExchangeKeys()
	require.NoError(t, err)
	cur.Record[0] ^= 0xff
	cur.Keys[0].Private[0] ^= 0xff
	cur.Keys = cur.Keys[:1]
	prev.Keys[1].Private[0] ^= 0xff
	prev.Retire = time.Time{}

	gotPK, err = st.Peer(p)
	require.NoError(t, err)
	RequirePeerKeyEqual(t, pk, gotPK)
	act, err = st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &sk, act)
	cur, prev, err = st.ExchangeKeys()
	require.NoError(t, err)
	RequireExchangeKeyEqual(t, &k2, cur)
	RequireExchangeKeyEqual(t, &k1, prev)
}

// testStoresCopies changes what was given to a store after the call and
// checks that the store did not change.
func (s *suite) testStoresCopies(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)

	sk := newSession(t, p, 1)
	pk := newPeerKey(t, p, 1)
	wantSK, wantPK := sk, *pk
	wantPK.Record, wantPK.Fingerprint = bytes.Clone(pk.Record), bytes.Clone(pk.Fingerprint)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: sk, PeerKey: pk, Seen: pk.LastSeen}))
	pk.Record[0] ^= 0xff
	pk.Fingerprint[0] ^= 0xff
	pk.Trust = peerstore.TrustChanged

	k := newExchangeKey(t, 1)
	want := k
	want.Record = bytes.Clone(k.Record)
	want.Keys = []peerstore.SuiteKey{
		{Suite: k.Keys[0].Suite, Private: bytes.Clone(k.Keys[0].Private)},
		{Suite: k.Keys[1].Suite, Private: bytes.Clone(k.Keys[1].Private)},
	}
	require.NoError(t, st.RotateExchangeKey(k, at(0), time.Hour))
	k.Record[0] ^= 0xff
	k.Keys[0].Private[0] ^= 0xff
	k.Keys[1] = peerstore.SuiteKey{}

	gotPK, err := st.Peer(p)
	require.NoError(t, err)
	RequirePeerKeyEqual(t, &wantPK, gotPK)
	act, err := st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &wantSK, act)
	cur, _, err := st.ExchangeKeys()
	require.NoError(t, err)
	RequireExchangeKeyEqual(t, &want, cur)
}

// testReadsAfterWrites: while one goroutine writes a peer's record again
// and again (new records, trust changes, then Forget), readers never see a
// record older than a write that had returned before their read began, nor
// one older than what they saw before (a store that caches records, as
// bbolt's does, must not serve or put back a stale one).
func (s *suite) testReadsAfterWrites(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	const writes = 60
	// done is 2*seq after the commit of record seq returned, 2*seq+1 after
	// the SetTrust that follows it (to TrustVerified when seq is odd).
	var done atomic.Uint64
	var forgetting, forgotten atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var seen uint64
			var lookup bool
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Peer and Lookup in turn: both are held to the order.
				lookup = !lookup
				after, gone := done.Load(), forgotten.Load()
				var seq uint64
				var trust peerstore.TrustState
				var err error
				if lookup {
					var ls peerstore.PeerState
					if ls, err = st.Lookup(p); err == nil {
						seq, trust = ls.Seq, ls.Trust
					}
				} else {
					var pk *peerstore.PeerKey
					if pk, err = st.Peer(p); err == nil {
						seq, trust = pk.Seq, pk.Trust
					}
				}
				going := forgetting.Load() // a Forget may have overlapped the read
				if gone {
					if !errors.Is(err, peerstore.ErrNotFound) {
						t.Errorf("read after Forget (lookup %v) returned: seq %d, %v", lookup, seq, err)
						return
					}
					continue
				}
				if errors.Is(err, peerstore.ErrNotFound) && (after == 0 || going) {
					continue
				}
				if err != nil {
					t.Errorf("read (lookup %v): %v", lookup, err)
					return
				}
				v := 2 * seq
				if trust == peerstore.TrustVerified || (seq%2 == 0 && trust == peerstore.TrustChanged) {
					v++ // the SetTrust after commit seq
				}
				if v < after || v < seen {
					t.Errorf("read version %d (seq %d, %v, lookup %v) after a write of version %d had returned, and %d read before", v, seq, trust, lookup, after, seen)
					return
				}
				seen = v
			}
		})
	}
	for seq := uint64(1); seq <= writes && !t.Failed(); seq++ {
		pk := newPeerKey(t, p, seq)
		require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, seq), PeerKey: pk, Seen: pk.LastSeen}))
		done.Store(2 * seq)
		trust := peerstore.TrustVerified
		if seq%2 == 0 {
			trust = peerstore.TrustChanged
		}
		require.NoError(t, st.SetTrust(p, trust))
		done.Store(2*seq + 1)
	}
	forgetting.Store(true)
	_, err := st.Forget(p)
	require.NoError(t, err)
	forgotten.Store(true)
	time.Sleep(10 * time.Millisecond) // let the readers read after the Forget
	close(stop)
	wg.Wait()
}

func (s *suite) testConcurrentCommits(t *testing.T) {
	st := s.store(t)
	const (
		writers = 16
		epochs  = 8
	)
	peers := make([]peer.ID, writers)
	for i := range peers {
		peers[i] = RandPeerID(t)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		last   = map[peer.ID]peerstore.SessionKey{}
		errs   = make(chan error, writers*epochs*4)
		done   = make(chan struct{})
		record = func(err error) {
			if err != nil {
				errs <- err
			}
		}
	)
	for _, p := range peers {
		wg.Go(func() {
			for e := uint64(1); e <= epochs; e++ {
				sk := newSession(t, p, e)
				record(st.CommitExchange(peerstore.Commit{Session: sk, PeerKey: newPeerKey(t, p, e), Seen: at(0)}))
				mu.Lock()
				last[p] = sk
				mu.Unlock()
				if _, err := st.ActiveSession(p); err != nil {
					record(fmt.Errorf("ActiveSession right after commit: %w", err))
				}
			}
		})
	}
	// Readers run alongside.
	var rg sync.WaitGroup
	for range 4 {
		rg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := st.Peers(); err != nil {
					record(err)
				}
				for _, p := range peers {
					if _, err := st.Sessions(p); err != nil && !errors.Is(err, peerstore.ErrNotFound) {
						record(err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(done)
	rg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	got, err := st.Peers()
	require.NoError(t, err)
	require.Len(t, got, writers)
	for _, p := range peers {
		act, err := st.ActiveSession(p)
		require.NoError(t, err)
		want := last[p]
		RequireSessionEqual(t, &want, act)
		all, err := st.Sessions(p)
		require.NoError(t, err)
		require.Len(t, all, peerstore.KeepEpochs)
	}
}

// testConcurrentSameEpoch races commits of one epoch for one peer: the check
// of the active epoch and the write must be one step, so exactly one wins.
func (s *suite) testConcurrentSameEpoch(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	const racers = 16
	sessions := make([]peerstore.SessionKey, racers)
	results := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		sessions[i] = newSession(t, p, 1)
		wg.Go(func() { results[i] = st.CommitExchange(peerstore.Commit{Session: sessions[i]}) })
	}
	wg.Wait()
	winner := -1
	for i, err := range results {
		if err == nil {
			require.Equal(t, -1, winner, "two commits of epoch 1 succeeded")
			winner = i
			continue
		}
		require.ErrorIs(t, err, peerstore.ErrStaleEpoch)
	}
	require.NotEqual(t, -1, winner, "no commit succeeded")
	act, err := st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &sessions[winner], act)
}

// testCommitsTogether starts many commits at once, as a loaded node's
// exchanges finish, so that a store with group commit puts several in one
// transaction: new peers, next epochs of known peers (each pruning the
// oldest), and callers that must fail (a stale epoch, an invalid commit,
// racers for one epoch) among them. Each caller must get exactly the answer
// it would get alone, and what failed must leave nothing: a failing caller
// in a batch may not take the others down, nor slip its writes into theirs.
func (s *suite) testCommitsTogether(t *testing.T) {
	st := s.store(t)
	known := make([]peer.ID, 8)
	for i := range known {
		known[i] = RandPeerID(t)
		for e := uint64(1); e <= peerstore.KeepEpochs; e++ {
			commit(t, st, known[i], e)
		}
	}
	before := map[peer.ID][]peerstore.SessionKey{}
	for _, p := range known {
		ss, err := st.Sessions(p)
		require.NoError(t, err)
		before[p] = ss
	}
	type call struct {
		c       peerstore.Commit
		wantErr error // nil: must succeed; errAny: must fail
		race    int   // > 0: one of racers for one epoch
	}
	errAny := errors.New("any error")
	var calls []*call
	for range 16 { // new peers
		p := RandPeerID(t)
		pk := newPeerKey(t, p, 1)
		calls = append(calls, &call{c: peerstore.Commit{Session: newSession(t, p, 1), PeerKey: pk, Seen: pk.LastSeen}})
	}
	for _, p := range known[:4] { // next epochs: each prunes its peer's oldest
		calls = append(calls, &call{c: peerstore.Commit{Session: newSession(t, p, peerstore.KeepEpochs+1), Seen: at(time.Hour)}})
	}
	for _, p := range known[4:6] { // stale epochs
		calls = append(calls, &call{c: peerstore.Commit{Session: newSession(t, p, 2), PeerKey: newPeerKey(t, p, 9), Seen: at(0)}, wantErr: peerstore.ErrStaleEpoch})
	}
	for _, p := range known[6:] { // invalid: the record is of another peer
		calls = append(calls, &call{c: peerstore.Commit{Session: newSession(t, p, peerstore.KeepEpochs+1), PeerKey: newPeerKey(t, RandPeerID(t), 1), Seen: at(0)}, wantErr: errAny})
	}
	racePeer := RandPeerID(t)
	for i := range 6 { // racers for epoch 1 of one new peer: exactly one wins
		calls = append(calls, &call{c: peerstore.Commit{Session: newSession(t, racePeer, 1)}, race: i + 1})
	}
	// Copies for the checks: the store may clear the caller's key.
	wantSessions := make([]peerstore.SessionKey, len(calls))
	for i, c := range calls {
		wantSessions[i] = c.c.Session
	}
	results := make([]error, len(calls))
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i, c := range calls {
		wg.Go(func() {
			<-startGate
			results[i] = st.CommitExchange(c.c)
		})
	}
	close(startGate)
	wg.Wait()

	winners := 0
	for i, c := range calls {
		switch {
		case c.race > 0:
			if results[i] == nil {
				winners++
				act, err := st.ActiveSession(racePeer)
				require.NoError(t, err)
				RequireSessionEqual(t, &wantSessions[i], act)
			} else {
				require.ErrorIs(t, results[i], peerstore.ErrStaleEpoch, "racer %d", c.race)
			}
		case c.wantErr == errAny:
			require.Error(t, results[i], "call %d", i)
		case c.wantErr != nil:
			require.ErrorIs(t, results[i], c.wantErr, "call %d", i)
		default:
			require.NoError(t, results[i], "call %d", i)
			p := c.c.Session.Peer
			act, err := st.ActiveSession(p)
			require.NoError(t, err)
			RequireSessionEqual(t, &wantSessions[i], act)
			if c.c.PeerKey != nil {
				got, err := st.Peer(p)
				require.NoError(t, err)
				require.Equal(t, c.c.PeerKey.Seq, got.Seq)
			}
		}
	}
	require.Equal(t, 1, winners, "one racer for epoch 1 wins")
	// Lookup agrees with the slow path for every peer of the batch,
	// those of the failed callers included (their transaction was redone).
	for _, c := range calls {
		RequireLookupAgrees(t, st, c.c.Session.Peer, "after commits together")
	}
	// The known peers: the next epochs pruned their oldest; the failed
	// callers left theirs as they were, record included.
	for i, p := range known {
		ss, err := st.Sessions(p)
		require.NoError(t, err)
		require.Len(t, ss, peerstore.KeepEpochs)
		if i < 4 {
			for j := range peerstore.KeepEpochs - 1 {
				RequireSessionEqual(t, &before[p][j+1], &ss[j])
			}
			continue
		}
		for j := range ss {
			RequireSessionEqual(t, &before[p][j], &ss[j])
		}
		pk, err := st.Peer(p)
		require.NoError(t, err)
		require.EqualValues(t, peerstore.KeepEpochs, pk.Seq, "record of a failed commit")
	}
}

func (s *suite) testClose(t *testing.T) {
	st := s.store(t)
	p := RandPeerID(t)
	commit(t, st, p, 1)
	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "second Close")

	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	calls := map[string]func() error{
		"Identity":    func() error { _, err := st.Identity(); return err },
		"SetIdentity": func() error { return st.SetIdentity(k) },
		"ExchangeKeys": func() error {
			_, _, err := st.ExchangeKeys()
			return err
		},
		"RotateExchangeKey": func() error { return st.RotateExchangeKey(newExchangeKey(t, 1), at(0), time.Hour) },
		"PruneExchangeKeys": func() error { _, err := st.PruneExchangeKeys(at(0)); return err },
		"Peer":              func() error { _, err := st.Peer(p); return err },
		"Lookup":            func() error { _, err := st.Lookup(p); return err },
		"Peers":             func() error { _, err := st.Peers(); return err },
		"ListPeers":         func() error { _, err := st.ListPeers("", 10); return err },
		"SetTrust":          func() error { return st.SetTrust(p, peerstore.TrustVerified) },
		"CommitExchange": func() error {
			return st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 2)})
		},
		"ActiveSession": func() error { _, err := st.ActiveSession(p); return err },
		"Session":       func() error { _, err := st.Session(p, 1); return err },
		"Sessions":      func() error { _, err := st.Sessions(p); return err },
		"Forget":        func() error { _, err := st.Forget(p); return err },
	}
	for name, call := range calls {
		require.ErrorIs(t, call(), peerstore.ErrClosed, name)
	}
}

func (s *suite) skipWithoutReopen(t *testing.T) {
	if s.reopen == nil {
		t.Skip("this store cannot be reopened")
	}
}

func (s *suite) testReopen(t *testing.T) {
	s.skipWithoutReopen(t)
	st := s.store(t)

	id, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, st.SetIdentity(id))
	k1, k2 := newExchangeKey(t, 1), newExchangeKey(t, 2)
	require.NoError(t, st.RotateExchangeKey(k1, at(0), time.Hour))
	require.NoError(t, st.RotateExchangeKey(k2, at(time.Minute), time.Hour))
	k1.Retire = at(time.Minute + time.Hour)

	type peerState struct {
		pk       *peerstore.PeerKey // nil: no record
		sessions []peerstore.SessionKey
	}
	want := map[peer.ID]*peerState{}
	for i := range 10 {
		p := RandPeerID(t)
		ps := &peerState{}
		for e := uint64(1); e <= uint64(i%5+1); e++ {
			var sk peerstore.SessionKey
			if i == 0 {
				sk = newSession(t, p, e)
				require.NoError(t, st.CommitExchange(peerstore.Commit{Session: sk, Seen: at(0)}))
			} else {
				var pk *peerstore.PeerKey
				sk, pk = commit(t, st, p, e)
				if ps.pk != nil {
					pk.FirstSeen = ps.pk.FirstSeen // kept from the first record
				}
				ps.pk = pk
			}
			ps.sessions = append(ps.sessions, sk)
		}
		ps.sessions = ps.sessions[max(0, len(ps.sessions)-peerstore.KeepEpochs):]
		if i == 1 {
			require.NoError(t, st.SetTrust(p, peerstore.TrustVerified))
			ps.pk.Trust = peerstore.TrustVerified
		}
		want[p] = ps
	}

	st = s.reopenStore(t, st)

	gotID, err := st.Identity()
	require.NoError(t, err)
	require.True(t, id.Equals(gotID))
	cur, prev, err := st.ExchangeKeys()
	require.NoError(t, err)
	RequireExchangeKeyEqual(t, &k2, cur)
	RequireExchangeKeyEqual(t, &k1, prev)

	peers, err := st.Peers()
	require.NoError(t, err)
	require.Len(t, peers, len(want)-1)
	for p, ps := range want {
		got, err := st.Peer(p)
		if ps.pk == nil {
			require.ErrorIs(t, err, peerstore.ErrNotFound)
		} else {
			require.NoError(t, err)
			RequirePeerKeyEqual(t, ps.pk, got)
		}
		all, err := st.Sessions(p)
		require.NoError(t, err)
		require.Len(t, all, len(ps.sessions))
		for i := range all {
			RequireSessionEqual(t, &ps.sessions[i], &all[i])
		}
		act, err := st.ActiveSession(p)
		require.NoError(t, err)
		RequireSessionEqual(t, &ps.sessions[len(ps.sessions)-1], act)
	}

	// Pruning works on what was read back, and is itself durable.
	pruned, err := st.PruneExchangeKeys(at(2 * time.Hour))
	require.NoError(t, err)
	require.True(t, pruned)
	st = s.reopenStore(t, st)
	_, prev, err = st.ExchangeKeys()
	require.NoError(t, err)
	require.Nil(t, prev)
	_, err = st.Identity()
	require.NoError(t, err)
}

func (s *suite) testReopenKeepsEpochOrder(t *testing.T) {
	s.skipWithoutReopen(t)
	st := s.store(t)
	p := RandPeerID(t)
	commit(t, st, p, 1)
	sk2, _ := commit(t, st, p, 2)
	st = s.reopenStore(t, st)
	require.ErrorIs(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 2)}), peerstore.ErrStaleEpoch)
	require.ErrorIs(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 1)}), peerstore.ErrStaleEpoch)
	act, err := st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &sk2, act)
	commit(t, st, p, 3)
}

// requireForgotten fails unless st holds nothing of p.
func requireForgotten(t *testing.T, st peerstore.Store, p peer.ID) {
	t.Helper()
	_, err := st.Peer(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound, "record")
	_, err = st.ActiveSession(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound, "active session")
	_, err = st.Sessions(p)
	require.ErrorIs(t, err, peerstore.ErrNotFound, "sessions")
	for e := uint64(1); e <= KeepEpochsPlus; e++ {
		_, err = st.Session(p, e)
		require.ErrorIs(t, err, peerstore.ErrNotFound, "session of epoch %d", e)
	}
	peers, err := st.Peers()
	require.NoError(t, err)
	for _, pk := range peers {
		require.NotEqual(t, p, pk.Peer, "listed by Peers")
	}
}

// KeepEpochsPlus is how many epochs testForget commits: more than a store
// keeps, so that pruning and Forget both run.
const KeepEpochsPlus = peerstore.KeepEpochs + 2

// testForget: Forget removes a peer's record, trust state and every session
// key, reports what it removed, leaves other peers alone, is idempotent, and
// the peer can be met again from scratch (epoch 1, a new first-seen time).
func (s *suite) testForget(t *testing.T) {
	st := s.store(t)
	p, q := RandPeerID(t), RandPeerID(t)
	for e := uint64(1); e <= KeepEpochsPlus; e++ {
		commit(t, st, p, e)
	}
	qs, qk := commit(t, st, q, 1)
	require.NoError(t, st.SetTrust(p, peerstore.TrustVerified))

	res, err := st.Forget(p)
	require.NoError(t, err)
	require.Equal(t, peerstore.ForgetResult{Record: true, Trust: peerstore.TrustVerified, Sessions: peerstore.KeepEpochs}, res)
	requireForgotten(t, st, p)

	// q is untouched.
	got, err := st.Peer(q)
	require.NoError(t, err)
	RequirePeerKeyEqual(t, qk, got)
	act, err := st.ActiveSession(q)
	require.NoError(t, err)
	RequireSessionEqual(t, &qs, act)

	// Again, and for a peer never seen: nothing to remove, no error.
	res, err = st.Forget(p)
	require.NoError(t, err)
	require.Equal(t, peerstore.ForgetResult{}, res)
	res, err = st.Forget(RandPeerID(t))
	require.NoError(t, err)
	require.Equal(t, peerstore.ForgetResult{}, res)

	// A session without a record (a commit that brought none) is forgotten
	// too.
	r := RandPeerID(t)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: newSession(t, r, 1), Seen: at(0)}))
	res, err = st.Forget(r)
	require.NoError(t, err)
	require.Equal(t, peerstore.ForgetResult{Sessions: 1}, res)
	requireForgotten(t, st, r)

	// p starts over: epoch 1 is accepted again and its record is new.
	sk := newSession(t, p, 1)
	pk := newPeerKey(t, p, 1)
	pk.FirstSeen, pk.LastSeen = at(99*time.Hour), at(99*time.Hour)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: sk, PeerKey: pk, Seen: pk.LastSeen}))
	got, err = st.Peer(p)
	require.NoError(t, err)
	RequirePeerKeyEqual(t, pk, got)
	act, err = st.ActiveSession(p)
	require.NoError(t, err)
	RequireSessionEqual(t, &sk, act)

	_, err = st.Forget("")
	require.Error(t, err, "empty peer ID")
}

// testForgetConcurrentIsAtomic: Forget racing with a commit that writes a
// record and a session. The commit writes both in one transaction and
// Forget removes both in one, so afterwards the peer has both (the commit
// came second) or neither (Forget came second), never one without the
// other.
func (s *suite) testForgetConcurrentIsAtomic(t *testing.T) {
	st := s.store(t)
	for round := range 50 {
		p := RandPeerID(t)
		commit(t, st, p, 1)
		commit(t, st, p, 2)
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			// Epoch 3 follows 2; after a Forget, any epoch is new.
			if err := st.CommitExchange(peerstore.Commit{Session: newSession(t, p, 3), PeerKey: newPeerKey(t, p, 3), Seen: at(0)}); err != nil {
				t.Errorf("commit: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			if _, err := st.Forget(p); err != nil {
				t.Errorf("forget: %v", err)
			}
		}()
		close(start)
		wg.Wait()
		_, perr := st.Peer(p)
		_, serr := st.ActiveSession(p)
		require.Equal(t, perr == nil, serr == nil, "round %d: record present %v, sessions present %v", round, perr == nil, serr == nil)
	}
}

// testReopenAfterForget: what Forget removed stays removed after a restart.
func (s *suite) testReopenAfterForget(t *testing.T) {
	s.skipWithoutReopen(t)
	st := s.store(t)
	p, q := RandPeerID(t), RandPeerID(t)
	commit(t, st, p, 1)
	commit(t, st, p, 2)
	_, qk := commit(t, st, q, 1)
	res, err := st.Forget(p)
	require.NoError(t, err)
	require.Equal(t, 2, res.Sessions)
	st = s.reopenStore(t, st)
	requireForgotten(t, st, p)
	got, err := st.Peer(q)
	require.NoError(t, err)
	RequirePeerKeyEqual(t, qk, got)
}
