package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// peersOf lists the peers n is connected to, discovered, or holds a
// record of, sorted by peer ID.
func peersOf(n *node.Node) ([]api.Peer, error) {
	byID := map[peer.ID]*api.Peer{}
	get := func(p peer.ID) *api.Peer {
		if pj := byID[p]; pj != nil {
			return pj
		}
		pj := &api.Peer{Peer: p.String(), Addrs: []string{}, Discovered: []string{}, Trust: peerstore.TrustUnknown.String()}
		byID[p] = pj
		return pj
	}
	for _, p := range n.Host().Network().Peers() {
		pj := get(p)
		pj.Connected = true
		pj.Connection = n.Connection(p).String()
		for _, c := range n.Host().Network().ConnsToPeer(p) {
			pj.Addrs = append(pj.Addrs, c.RemoteMultiaddr().String())
		}
	}
	for _, d := range n.DiscoveredPeers() {
		pj := get(d.ID)
		for _, src := range d.Sources {
			pj.Discovered = append(pj.Discovered, src.String())
		}
		if !pj.Connected {
			for _, a := range d.Addrs {
				pj.Addrs = append(pj.Addrs, a.String())
			}
		}
	}
	return addKnown(n.Store(), get, func() []*api.Peer {
		out := make([]*api.Peer, 0, len(byID))
		for _, pj := range byID {
			out = append(out, pj)
		}
		return out
	})
}

// KnownPeers is GET /v0/peers without a node: the peers the store knows,
// with their trust and last exchange; none connected or discovered.
func KnownPeers(store peerstore.Store) ([]api.Peer, error) {
	var all []*api.Peer
	get := func(p peer.ID) *api.Peer {
		pj := &api.Peer{Peer: p.String(), Addrs: []string{}, Discovered: []string{}}
		all = append(all, pj)
		return pj
	}
	return addKnown(store, get, func() []*api.Peer { return all })
}

// addKnown marks the peers the store holds a record of (get returns each
// one's entry), then returns all entries, sorted by peer ID.
func addKnown(store peerstore.Store, get func(peer.ID) *api.Peer, all func() []*api.Peer) ([]api.Peer, error) {
	known, err := store.Peers()
	if err != nil {
		return nil, internal(fmt.Errorf("read known peers: %w", err))
	}
	for _, k := range known {
		pj := get(k.Peer)
		pj.Known = true
		pj.Trust = k.Trust.String()
		if act, err := store.ActiveSession(k.Peer); err == nil {
			pj.Epoch, pj.KeyID, pj.Suite = act.Epoch, act.ID.String(), protocol.Suite(act.Suite).String()
			t := act.Created.UTC()
			pj.LastExchange = &t
			clear(act.Key[:])
		}
	}
	ptrs := all()
	out := make([]api.Peer, 0, len(ptrs))
	for _, pj := range ptrs {
		out = append(out, *pj)
	}
	slices.SortFunc(out, func(a, b api.Peer) int { return strings.Compare(a.Peer, b.Peer) })
	return out, nil
}

// KeysOf is GET /v0/keys on a store: the node's own exchange keys and the
// session keys of every known peer (or only of one): epochs, key IDs,
// creation times. It zeroes every key it reads. A peer without an
// exchange is an *api.Error with CodeNotFound.
func KeysOf(store peerstore.Store, only peer.ID) (*api.Keys, error) {
	cur, prev, err := store.ExchangeKeys()
	if err != nil {
		return nil, internal(fmt.Errorf("read own exchange keys: %w", err))
	}
	wipeOwn := func(k *peerstore.ExchangeKey) {
		if k != nil {
			for _, sk := range k.Keys {
				clear(sk.Private)
			}
		}
	}
	wipeOwn(cur)
	wipeOwn(prev)
	rep := &api.Keys{Own: api.OwnKey{Seq: cur.Seq, Fingerprint: protocol.FingerprintOf(cur.Record).String(), Created: cur.Created.UTC()}, Peers: []api.PeerKeys{}}
	if prev != nil {
		t := prev.Retire.UTC()
		rep.Previous = &api.OwnKey{Seq: prev.Seq, Fingerprint: protocol.FingerprintOf(prev.Record).String(), Created: prev.Created.UTC(), Retire: &t}
	}
	var peers []peerstore.PeerKey
	if only != "" {
		pk, err := store.Peer(only)
		if errors.Is(err, peerstore.ErrNotFound) {
			return nil, api.Wrap(api.CodeNotFound, fmt.Sprintf("no keys with %s: no exchange with it yet", only), err, nil)
		}
		if err != nil {
			return nil, internal(err)
		}
		peers = []peerstore.PeerKey{*pk}
	} else if peers, err = store.Peers(); err != nil {
		return nil, internal(fmt.Errorf("read known peers: %w", err))
	}
	for _, pk := range peers {
		ks := api.PeerKeys{Peer: pk.Peer.String(), Trust: pk.Trust.String(), Sessions: []api.Session{}}
		if len(pk.Record) > 0 {
			ks.Fingerprint = protocol.FingerprintOf(pk.Record).String()
		}
		sessions, err := store.Sessions(pk.Peer)
		if err != nil && !errors.Is(err, peerstore.ErrNotFound) {
			return nil, internal(fmt.Errorf("read sessions of %s: %w", pk.Peer, err))
		}
		for i := range sessions {
			s := &sessions[i]
			clear(s.Key[:])
			ks.Sessions = append(ks.Sessions, api.Session{Epoch: s.Epoch, KeyID: s.ID.String(),
				Suite: protocol.Suite(s.Suite).String(), Created: s.Created.UTC()})
		}
		rep.Peers = append(rep.Peers, ks)
	}
	return rep, nil
}
