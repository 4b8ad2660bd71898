package node

import (
	"bytes"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/protocol"
)

// recordCacheSize bounds the records a node keeps parsed.
const recordCacheSize = 1024

// recordCache keeps peers' exchange-key records as parsed and validated, so
// that an exchange with a peer whose record is known does not check the
// record's signature and rebuild its KEM public keys again: with the default
// suite that was about a seventh of the CPU time of an exchange
// (docs/PERFORMANCE.md). An entry is used only for the record the store
// names by its fingerprint (the SHA-256 multihash of the envelope, which
// the node computed when it stored the record: peerstore.PeerState), so
// that an exchange need not copy the envelope out of the store to compare
// it, and only while the record is within its validity period, so a hit
// returns what protocol.ParsePeerRecord would of the stored envelope. The
// cache holds only records the node parsed and validated for their peer: a
// store whose fingerprint did not match its envelope would at worst get
// the record the node validated under that fingerprint, or a miss. When
// full, it drops a random entry.
type recordCache struct {
	mu sync.Mutex
	m  map[peer.ID]*protocol.PeerRecord
}

// get returns p's record of the given fingerprint, if cached and valid at
// now.
func (c *recordCache) get(p peer.ID, fingerprint []byte, now time.Time) *protocol.PeerRecord {
	c.mu.Lock()
	rec := c.m[p]
	c.mu.Unlock()
	if rec == nil || !bytes.Equal(rec.Fingerprint[:], fingerprint) ||
		rec.Created.After(now.Add(protocol.MaxClockSkew)) || !now.Before(rec.Expires) {
		return nil
	}
	r := *rec
	return &r
}

// put caches a record validated for its peer.
func (c *recordCache) put(rec *protocol.PeerRecord) {
	r := *rec
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[peer.ID]*protocol.PeerRecord)
	}
	if _, ok := c.m[r.Peer]; !ok && len(c.m) >= recordCacheSize {
		for p := range c.m {
			delete(c.m, p)
			break
		}
	}
	c.m[r.Peer] = &r
}
