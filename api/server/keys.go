package server

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// listPage is how many peers a listing reads from the store at a time
// (ListPeers): one short read transaction each, so that a listing of
// 100,000 peers neither holds one snapshot of the store open while it is
// written out nor holds every entry in memory.
const listPage = 1000

// livePeers returns the peers n is connected to or discovered, which the
// store does not list: a few hundred at most, held in memory.
func livePeers(n *node.Node) map[peer.ID]*api.Peer {
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
	return byID
}

// eachPeer calls f with every peer n is connected to, discovered, or holds
// a record of, sorted by peer ID, reading the store a page at a time.
func eachPeer(n *node.Node, f func(api.Peer) error) error {
	return mergeKnown(n.Store(), livePeers(n), f)
}

// KnownPeers is GET /v0/peers without a node: the peers the store knows,
// with their trust and last exchange; none connected or discovered. It
// holds the whole list; EachKnownPeer does not.
func KnownPeers(store peerstore.Store) ([]api.Peer, error) {
	return collectPeers(func(f func(api.Peer) error) error { return EachKnownPeer(store, f) })
}

// collectPeers returns the list each calls its argument with ([], not
// nil, for none).
func collectPeers(each func(func(api.Peer) error) error) ([]api.Peer, error) {
	out := []api.Peer{}
	if err := each(func(p api.Peer) error {
		out = append(out, p)
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// EachKnownPeer calls f with each peer KnownPeers lists, in its order, as
// it reads them: the store a page at a time (ListPeers), so that it holds
// one page, copies no record and opens no session key. It stops at f's
// first error and returns it.
func EachKnownPeer(store peerstore.Store, f func(api.Peer) error) error {
	return mergeKnown(store, nil, f)
}

// mergeKnown calls f with the entries of live and with every peer the store
// holds a record of (marked known, with its trust and last exchange; the
// entry of live, if there is one, filled in), merged in peer ID order.
//
// The order is that of the IDs' bytes, the store's. For every ID a peer
// can authenticate with (derived from an Ed25519, secp256k1, RSA or ECDSA
// key) it is also the order of the IDs' text, by which this listing was
// sorted before it was read in pages (TestPeerIDOrder).
func mergeKnown(store peerstore.Store, live map[peer.ID]*api.Peer, f func(api.Peer) error) error {
	ids := slices.Sorted(maps.Keys(live))
	next := 0
	after := peer.ID("")
	for {
		page, err := store.ListPeers(after, listPage)
		if err != nil {
			return internal(fmt.Errorf("read known peers: %w", err))
		}
		for i := range page {
			sum := &page[i]
			if !sum.State.Record {
				continue // sessions without a record: not a known peer
			}
			for ; next < len(ids) && ids[next] < sum.Peer; next++ {
				if err := f(*live[ids[next]]); err != nil {
					return err
				}
			}
			var pj api.Peer
			if next < len(ids) && ids[next] == sum.Peer {
				pj = *live[ids[next]]
				next++
			} else {
				pj = api.Peer{Peer: sum.Peer.String(), Addrs: []string{}, Discovered: []string{}}
			}
			setKnown(&pj, sum)
			if err := f(pj); err != nil {
				return err
			}
		}
		if len(page) < listPage {
			break
		}
		after = page[len(page)-1].Peer
	}
	for ; next < len(ids); next++ {
		if err := f(*live[ids[next]]); err != nil {
			return err
		}
	}
	return nil
}

// setKnown fills in what the store holds of a known peer.
func setKnown(pj *api.Peer, sum *peerstore.PeerSummary) {
	pj.Known = true
	pj.Trust = sum.State.Trust.String()
	if sum.State.Epoch > 0 {
		pj.Epoch, pj.KeyID, pj.Suite = sum.State.Epoch, sum.KeyID.String(), protocol.Suite(sum.Suite).String()
		t := sum.Created.UTC()
		pj.LastExchange = &t
	}
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
