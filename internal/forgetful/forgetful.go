// Package forgetful wraps a peer store so that it forgets every peer
// record: each exchange through it runs as a first contact, in which phase 2
// carries both records, while sessions and epochs work as usual. The load
// tool (bench, --keys both) and the node's benchmarks use it to measure
// first contacts without making a new identity per exchange.
package forgetful

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/peerstore"
)

// Store hides every peer record of the store it wraps.
type Store struct{ peerstore.Store }

// New returns s with its peer records hidden.
func New(s peerstore.Store) Store { return Store{s} }

// Peer finds no record.
func (Store) Peer(peer.ID) (*peerstore.PeerKey, error) { return nil, peerstore.ErrNotFound }

// Lookup hides the record as Peer does: a peer with no session is unknown,
// one with sessions has its epoch and no record.
func (s Store) Lookup(p peer.ID) (peerstore.PeerState, error) {
	st, err := s.Store.Lookup(p)
	if err == nil && st.Epoch == 0 {
		err = peerstore.ErrNotFound
	}
	if err != nil {
		return peerstore.PeerState{}, err
	}
	return peerstore.PeerState{Epoch: st.Epoch}, nil
}

// ListPeers hides the records as Lookup does: it lists the peers with a
// session, with their sessions and no record.
func (s Store) ListPeers(after peer.ID, limit int) ([]peerstore.PeerSummary, error) {
	page, err := s.Store.ListPeers(after, limit)
	if err != nil {
		return nil, err
	}
	// A page the hiding shortens is not the end: read on until the page
	// is full or the wrapped store's ended.
	out := make([]peerstore.PeerSummary, 0, len(page))
	for {
		for _, sum := range page {
			if sum.State.Epoch > 0 && len(out) < limit {
				out = append(out, peerstore.PeerSummary{Peer: sum.Peer, State: peerstore.PeerState{Epoch: sum.State.Epoch},
					KeyID: sum.KeyID, Suite: sum.Suite, Created: sum.Created})
			}
		}
		if len(out) == limit || len(page) < limit {
			return out, nil
		}
		if page, err = s.Store.ListPeers(page[len(page)-1].Peer, limit); err != nil {
			return nil, err
		}
	}
}
