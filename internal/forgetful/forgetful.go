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
