package peerstore

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Argument checks shared by every implementation, so that both reject the
// same calls: a store must never hold what it would later report as corrupt.

func checkPeerID(p peer.ID) error {
	if p == "" {
		return errors.New("peerstore: empty peer ID")
	}
	if _, err := peer.IDFromBytes([]byte(p)); err != nil {
		return fmt.Errorf("peerstore: invalid peer ID: %w", err)
	}
	return nil
}

func checkTrust(t TrustState) error {
	if t < TrustFirstUse || t > TrustChanged {
		return fmt.Errorf("peerstore: invalid trust state %d", t)
	}
	return nil
}

func checkCommit(c *Commit) error {
	if err := checkPeerID(c.Session.Peer); err != nil {
		return err
	}
	if c.PeerKey == nil {
		return nil
	}
	if c.PeerKey.Peer != c.Session.Peer {
		return errors.New("peerstore: commit: peer key and session belong to different peers")
	}
	return checkTrust(c.PeerKey.Trust)
}

func checkRotate(cur *ExchangeKey, next *ExchangeKey, grace time.Duration) error {
	if grace < 0 {
		return fmt.Errorf("peerstore: negative grace period %v", grace)
	}
	if cur != nil && next.Seq <= cur.Seq {
		return fmt.Errorf("peerstore: exchange key seq %d not above current seq %d", next.Seq, cur.Seq)
	}
	return nil
}

// newPeerRecord is the record CommitExchange writes for c: c.PeerKey (a
// copy), with FirstSeen kept from old when there is one, or else taken from
// c.Seen when the caller left it zero. With no c.PeerKey it is old with only
// LastSeen updated, or nil when the peer is unknown. It is nil too when the
// commit would change nothing but a LastSeen at most SeenGranularity old
// (seenRecently): both stores write nothing then.
func newPeerRecord(old *PeerKey, c *Commit) *PeerKey {
	var rec *PeerKey
	if seenRecently(old, c) {
		return nil
	}
	switch {
	case c.PeerKey != nil:
		rec = clonePeerKey(c.PeerKey)
		if old != nil {
			rec.FirstSeen = old.FirstSeen
		} else if rec.FirstSeen.IsZero() {
			rec.FirstSeen = c.Seen
		}
	case old != nil:
		rec = clonePeerKey(old)
	default:
		return nil
	}
	rec.LastSeen = c.Seen
	rec.FirstSeen = rec.FirstSeen.Round(0)
	rec.LastSeen = rec.LastSeen.Round(0)
	return rec
}

// seenRecently reports whether c leaves old's record as it is (no new
// record, or one equal to old but for the times) and old.LastSeen is at
// most SeenGranularity before c.Seen. A Seen before the stored LastSeen (a
// clock set back) is written, as before the granularity.
func seenRecently(old *PeerKey, c *Commit) bool {
	if old == nil {
		return false
	}
	if pk := c.PeerKey; pk != nil && (pk.Seq != old.Seq || pk.Trust != old.Trust ||
		!bytes.Equal(pk.Record, old.Record) || !bytes.Equal(pk.Fingerprint, old.Fingerprint)) {
		return false
	}
	d := c.Seen.Sub(old.LastSeen)
	return d >= 0 && d <= SeenGranularity
}

// Copies. Byte slices are always copied; times lose their monotonic
// reading (Round(0)) so that a value reads back the same from every store.

func cloneExchangeKey(k *ExchangeKey) *ExchangeKey {
	c := *k
	c.Record = bytes.Clone(k.Record)
	c.Keys = nil
	if k.Keys != nil {
		c.Keys = make([]SuiteKey, len(k.Keys))
		for i, sk := range k.Keys {
			c.Keys[i] = SuiteKey{Suite: sk.Suite, Private: bytes.Clone(sk.Private)}
		}
	}
	c.Created = c.Created.Round(0)
	c.Retire = c.Retire.Round(0)
	return &c
}

func clonePeerKey(k *PeerKey) *PeerKey {
	c := *k
	c.Record = bytes.Clone(k.Record)
	c.Fingerprint = bytes.Clone(k.Fingerprint)
	c.FirstSeen = c.FirstSeen.Round(0)
	c.LastSeen = c.LastSeen.Round(0)
	return &c
}

// stateOf returns the PeerState of a stored record, its Fingerprint a copy
// (the record's bytes are not copied at all).
func stateOf(k *PeerKey) PeerState {
	return PeerState{Record: true, Seq: k.Seq, Fingerprint: bytes.Clone(k.Fingerprint), Trust: k.Trust}
}

// readBack is a copy of pk as the bbolt store reads it back: its times
// are the instants stored, in the local time zone (codec.go, decodeTime).
func readBack(pk *PeerKey) *PeerKey {
	c := clonePeerKey(pk)
	for _, t := range []*time.Time{&c.FirstSeen, &c.LastSeen} {
		if !t.IsZero() {
			*t = time.Unix(t.Unix(), int64(t.Nanosecond()))
		}
	}
	return c
}

func cloneSession(s *SessionKey) *SessionKey {
	c := *s
	c.Created = c.Created.Round(0)
	return &c
}

// wipeExchangeKey overwrites the private keys k holds.
func wipeExchangeKey(k *ExchangeKey) {
	if k == nil {
		return
	}
	for i := range k.Keys {
		clear(k.Keys[i].Private)
	}
}

// wipe overwrites buffers that held secrets.
func wipe(bufs ...[]byte) {
	for _, b := range bufs {
		clear(b)
	}
}
