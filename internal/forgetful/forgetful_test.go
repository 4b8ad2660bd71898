package forgetful_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"

	"github.com/p2pkex/p2pkex/internal/forgetful"
	"github.com/p2pkex/p2pkex/peerstore"
)

// TestForgetsRecordsKeepsEpochs: a peer with a record and a session shows
// its epoch and no record; a peer the store does not hold is not found.
func TestForgetsRecordsKeepsEpochs(t *testing.T) {
	st := peerstore.NewMemory()
	p, err := test.RandPeerID()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CommitExchange(peerstore.Commit{
		PeerKey: &peerstore.PeerKey{Peer: p, Seq: 1, Record: []byte("record"), Fingerprint: []byte("fp"), Trust: peerstore.TrustFirstUse},
		Session: peerstore.SessionKey{Peer: p, Epoch: 3},
	}); err != nil {
		t.Fatal(err)
	}
	if s, err := st.Lookup(p); err != nil || !s.Record {
		t.Fatalf("the store itself: %+v, %v", s, err)
	}
	f := forgetful.New(st)
	if _, err := f.Peer(p); !errors.Is(err, peerstore.ErrNotFound) {
		t.Fatalf("Peer: %v, want ErrNotFound", err)
	}
	s, err := f.Lookup(p)
	if err != nil || s.Record || s.Epoch != 3 {
		t.Fatalf("Lookup: %+v, %v; want epoch 3 and no record", s, err)
	}
	q, _ := test.RandPeerID()
	if _, err := f.Lookup(q); !errors.Is(err, peerstore.ErrNotFound) {
		t.Fatalf("Lookup of an unknown peer: %v, want ErrNotFound", err)
	}
}

// TestListPeersHidesRecords: ListPeers lists a peer as Lookup shows it:
// its epoch and session, no record.
func TestListPeersHidesRecords(t *testing.T) {
	st := peerstore.NewMemory()
	var peers []peer.ID
	for e := range uint64(3) {
		p, err := test.RandPeerID()
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
		if err := st.CommitExchange(peerstore.Commit{
			PeerKey: &peerstore.PeerKey{Peer: p, Seq: 1, Record: []byte("record"), Fingerprint: []byte("fp"), Trust: peerstore.TrustFirstUse},
			Session: peerstore.SessionKey{Peer: p, Epoch: e + 1, Suite: 2},
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(peers)
	f := forgetful.New(st)
	var got []peerstore.PeerSummary
	for after := peer.ID(""); ; {
		page, err := f.ListPeers(after, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Peer
	}
	if len(got) != len(peers) {
		t.Fatalf("listed %d peers, want %d", len(got), len(peers))
	}
	for i, sum := range got {
		want, _ := f.Lookup(peers[i])
		if sum.Peer != peers[i] || sum.State.Record || sum.State.Fingerprint != nil || sum.State.Epoch != want.Epoch || sum.Suite != 2 {
			t.Fatalf("peer %d: %+v; want %s with epoch %d, no record", i, sum, peers[i], want.Epoch)
		}
	}
}
