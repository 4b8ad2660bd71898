package peerstore_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
)

// fillListed commits n peers, each with a record and two epochs.
func fillListed(t *testing.T, st peerstore.Store, n int) {
	t.Helper()
	for i := range n {
		p := storetest.RandPeerID(t)
		for e := uint64(1); e <= 2; e++ {
			sk := peerstore.SessionKey{Peer: p, Epoch: e, Suite: 0x20, Created: time.Unix(int64(1e9+i), int64(e))}
			rand.Read(sk.Key[:])
			rand.Read(sk.ID[:])
			pk := &peerstore.PeerKey{Peer: p, Seq: 1, Record: make([]byte, 1400), Fingerprint: []byte{1, 2, 3}, Trust: peerstore.TrustFirstUse}
			require.NoError(t, st.CommitExchange(peerstore.Commit{Session: sk, PeerKey: pk, Seen: sk.Created}))
		}
	}
}

// listAll reads every peer through ListPeers, in pages of limit.
func listAll(t *testing.T, st peerstore.Store, limit int) []peerstore.PeerSummary {
	t.Helper()
	var all []peerstore.PeerSummary
	after := peer.ID("")
	for {
		page, err := st.ListPeers(after, limit)
		require.NoError(t, err)
		all = append(all, page...)
		if len(page) < limit {
			return all
		}
		after = page[len(page)-1].Peer
	}
}

// TestBoltListPeersOpensNoKey: listing the peers opens no session key
// (ActiveSession of each, which the listing did before ListPeers, opens
// one per peer: an AES-GCM open under the key file's lock).
func TestBoltListPeersOpensNoKey(t *testing.T) {
	st := openBolt(t, t.TempDir())
	fillListed(t, st, 30)
	before := peerstore.KeyOpens(st)
	all := listAll(t, st, 7)
	require.Len(t, all, 30)
	require.Equal(t, before, peerstore.KeyOpens(st), "key opens of ListPeers")
	for _, sum := range all {
		require.EqualValues(t, 2, sum.State.Epoch)
		require.True(t, sum.State.Record)
	}
	// The count sees an open: what the listing did before.
	act, err := st.ActiveSession(all[0].Peer)
	require.NoError(t, err)
	require.Equal(t, all[0].KeyID, act.ID)
	require.Equal(t, before+1, peerstore.KeyOpens(st), "key opens of one ActiveSession")
}

// TestBoltListPeersReadsNoRecord: listing the peers reads no record (of
// 1.4 KB each at the scale of a real node): with every stored record
// damaged, ListPeers still lists each peer with its record's state,
// while Peers, which decodes them, fails.
func TestBoltListPeersReadsNoRecord(t *testing.T) {
	dir := t.TempDir()
	st := openBolt(t, dir)
	fillListed(t, st, 20)
	want := listAll(t, st, 1000)
	require.NoError(t, st.Close())
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("peers"))
		var keys [][]byte
		if err := b.ForEach(func(k, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Put(k, []byte{0xff, 0xff, 0xff}); err != nil {
				return err
			}
		}
		return nil
	})
	st = openBolt(t, dir)
	_, err := st.Peers()
	require.ErrorIs(t, err, peerstore.ErrCorrupt, "Peers of damaged records")
	got := listAll(t, st, 3)
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].Peer, got[i].Peer)
		require.Equal(t, want[i].State, got[i].State)
		require.Equal(t, want[i].KeyID, got[i].KeyID)
	}
}
