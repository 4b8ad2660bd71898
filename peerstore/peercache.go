package peerstore

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// peerCacheSize bounds the bbolt store's cache of decoded peer records: a
// record is about 1.5 KB, so at most about 0.75 MB. It is meant for the
// peers a loaded daemon is exchanging with right now (64 in flight in
// `p2pkex bench`), not for every known peer: docs/PERFORMANCE.md counts
// the heap per known peer.
const peerCacheSize = 512

// peerCache keeps decoded peer records for the bbolt store's Peer: a hit
// saves a read transaction and the decoding of a 1.4 KB protobuf. (Lookup,
// which the node calls on every exchange, reads bucket state instead and
// never this cache.) Records are public (signed exchange-key records and their
// trust state); no secret is ever cached.
//
// It must never return a record older than one a completed write stored,
// nor one older than what a concurrent reader already saw. Every write of
// a peer's record goes through writeTx.putPeer or writeTx.deletePeer,
// which mark the peer pending inside the write transaction, before it
// commits; the transaction's end (writeTx.settle) stores what it
// committed, with bbolt's transaction ID, and clears the mark. So:
//   - a pending peer is never served from the cache nor filled: between
//     the commit becoming visible and settle, readers go to bbolt;
//   - a reader fills only with what its read transaction saw (ID snap),
//     and not if the entry holds a newer transaction's record, nor if a
//     newer one was dropped from the cache (floor): a reader whose
//     snapshot predates a write cannot put back what that write replaced.
type peerCache struct {
	mu      sync.Mutex
	entries map[peer.ID]peerCacheEntry
	pending map[peer.ID]int // write transactions in flight that write the peer
	floor   uint64          // the highest transaction ID of an entry dropped
}

type peerCacheEntry struct {
	pk   *PeerKey // never handed out: callers get copies
	txid uint64   // the write transaction that stored it, or the snapshot that read it
}

func newPeerCache() *peerCache {
	return &peerCache{entries: map[peer.ID]peerCacheEntry{}, pending: map[peer.ID]int{}}
}

// get returns a copy of p's cached record, or nil.
func (c *peerCache) get(p peer.ID) *PeerKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[p] > 0 {
		return nil
	}
	if e, ok := c.entries[p]; ok {
		return clonePeerKey(e.pk)
	}
	return nil
}

// fill caches pk, read by a read transaction of ID snap, unless a write
// of p is in flight or stored something newer.
func (c *peerCache) fill(pk *PeerKey, snap uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[pk.Peer] > 0 || snap < c.floor {
		return
	}
	if e, ok := c.entries[pk.Peer]; ok && e.txid > snap {
		return
	}
	c.put(pk.Peer, peerCacheEntry{pk: clonePeerKey(pk), txid: snap})
}

// put stores e, dropping another entry if the cache is full. c.mu is held.
func (c *peerCache) put(p peer.ID, e peerCacheEntry) {
	if _, ok := c.entries[p]; !ok && len(c.entries) >= peerCacheSize {
		for q, old := range c.entries { // any one
			c.drop(q, old)
			break
		}
	}
	c.entries[p] = e
}

// drop removes p's entry e, raising the floor so that no older snapshot
// can put back what e replaced. c.mu is held.
func (c *peerCache) drop(p peer.ID, e peerCacheEntry) {
	delete(c.entries, p)
	c.floor = max(c.floor, e.txid)
}

// begin marks p pending for a write transaction (once per transaction).
func (c *peerCache) begin(p peer.ID) {
	c.mu.Lock()
	c.pending[p]++
	c.mu.Unlock()
}

// end clears the marks of a write transaction of ID txid that wrote the
// peers of written (a nil record: deleted). If it committed, what it
// wrote becomes the entries (unless a later transaction's are there).
func (c *peerCache) end(written map[peer.ID]*PeerKey, txid uint64, committed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, pk := range written {
		if c.pending[p]--; c.pending[p] <= 0 {
			delete(c.pending, p)
		}
		if !committed {
			continue // nothing changed: the entry, if any, is still true
		}
		e, ok := c.entries[p]
		if ok && e.txid > txid {
			continue
		}
		if pk == nil {
			if ok {
				c.drop(p, e)
			}
			c.floor = max(c.floor, txid)
			continue
		}
		c.put(p, peerCacheEntry{pk: pk, txid: txid})
	}
}
