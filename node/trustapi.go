package node

// The library's trust API: what the command line's peers, verify and forget
// do, for applications (trust.go has the rules).

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// ErrSafetyNumberMismatch: ConfirmPeer was given a number that is not the
// safety number of this node and the peer.
var ErrSafetyNumberMismatch = errors.New("safety number does not match")

// ErrNotVerified: RevokePeer of a peer that is not verified.
var ErrNotVerified = errors.New("peer is not verified")

// PeerInfo is what the node holds of a peer: its exchange-key record, its
// trust state and its active session, if any. It never holds a key.
type PeerInfo struct {
	ID    peer.ID
	Trust peerstore.TrustState
	// The held exchange-key record: its fingerprint, sequence number,
	// validity period and suites. Created, Expires and Suites are zero if
	// the stored record does not parse.
	Fingerprint      protocol.Fingerprint
	Seq              uint64
	Created, Expires time.Time
	Suites           []protocol.Suite
	// FirstSeen and LastSeen: the first exchange with the peer, and the
	// last, to within peerstore.SeenGranularity (1 minute: an exchange
	// that changes nothing else does not rewrite the record to move it).
	FirstSeen, LastSeen time.Time
	// The active session: its epoch, key ID and suite. Epoch is 0 when
	// there is none.
	Epoch uint64
	KeyID peerstore.KeyID
	Suite protocol.Suite
}

// ForgetResult says what Forget removed.
type ForgetResult = peerstore.ForgetResult

// Peers returns what the node holds of every peer it has a record of,
// sorted by peer ID.
func (n *Node) Peers() ([]PeerInfo, error) {
	pks, err := n.store.Peers()
	if err != nil {
		return nil, err
	}
	out := make([]PeerInfo, 0, len(pks))
	for i := range pks {
		pi, err := n.peerInfo(&pks[i])
		if err != nil {
			return nil, err
		}
		out = append(out, pi)
	}
	return out, nil
}

// PeerInfo returns what the node holds of p; an error wrapping
// peerstore.ErrNotFound if it holds no record of p.
func (n *Node) PeerInfo(p peer.ID) (PeerInfo, error) {
	pk, err := n.store.Peer(p)
	if err != nil {
		return PeerInfo{}, fmt.Errorf("peer %s: %w", p, err)
	}
	return n.peerInfo(pk)
}

func (n *Node) peerInfo(pk *peerstore.PeerKey) (PeerInfo, error) {
	pi := PeerInfo{
		ID: pk.Peer, Trust: pk.Trust, Seq: pk.Seq,
		Fingerprint: protocol.FingerprintOf(pk.Record),
		FirstSeen:   pk.FirstSeen, LastSeen: pk.LastSeen,
	}
	if rec, ok := parseHeld(pk.Peer, pk); ok {
		pi.Created, pi.Expires = rec.Created, rec.Expires
		for s := range rec.Keys {
			pi.Suites = append(pi.Suites, s)
		}
		slices.Sort(pi.Suites)
	}
	switch act, err := n.store.ActiveSession(pk.Peer); {
	case err == nil:
		pi.Epoch, pi.KeyID, pi.Suite = act.Epoch, act.ID, protocol.Suite(act.Suite)
		clear(act.Key[:])
	case !errors.Is(err, peerstore.ErrNotFound):
		return PeerInfo{}, fmt.Errorf("read session of %s: %w", pk.Peer, err)
	}
	return pi, nil
}

// ConfirmPeer marks p verified once the user has compared the safety
// number with the peer's owner over another channel (in person, by phone)
// and typed the number the peer's owner read out. number must be the
// safety number's digits (SafetyNumber(p).Digits()); whitespace is
// ignored. It is compared in constant time; a wrong number fails with
// ErrSafetyNumberMismatch and changes nothing. A first-use or changed peer
// becomes verified; the node must hold a record of p (an exchange ran).
func (n *Node) ConfirmPeer(p peer.ID, number string) error {
	if _, err := n.store.Peer(p); err != nil {
		return fmt.Errorf("confirm peer %s: %w", p, err)
	}
	want := stripSpace(n.SafetyNumber(p).Digits())
	if subtle.ConstantTimeCompare([]byte(stripSpace(number)), []byte(want)) != 1 {
		return fmt.Errorf("confirm peer %s: %w; the peer stays as it was", p, ErrSafetyNumberMismatch)
	}
	if err := n.store.SetTrust(p, peerstore.TrustVerified); err != nil {
		return fmt.Errorf("confirm peer %s: %w", p, err)
	}
	log.Infow("peer verified", "peer", p)
	return nil
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// RevokePeer withdraws p's verification: p goes back to first-use, so that
// TrustTOFU accepts its next store reset (which makes it changed, to be
// confirmed again). A peer that is not verified fails with ErrNotVerified.
func (n *Node) RevokePeer(p peer.ID) error {
	pk, err := n.store.Peer(p)
	if err != nil {
		return fmt.Errorf("revoke peer %s: %w", p, err)
	}
	if pk.Trust != peerstore.TrustVerified {
		return fmt.Errorf("revoke peer %s: %w (it is %s)", p, ErrNotVerified, pk.Trust)
	}
	if err := n.store.SetTrust(p, peerstore.TrustFirstUse); err != nil {
		return fmt.Errorf("revoke peer %s: %w", p, err)
	}
	log.Infow("peer verification revoked", "peer", p)
	return nil
}

// Forget removes everything the node holds of p, as ssh-keygen -R does for
// a host: its record, trust state and session keys, in one store
// transaction (peerstore.Store.Forget), and the node's own state of p in
// memory (the parsed record, the stream kept for the next exchange, the
// message keys and replay windows). It is the way back from a refused
// record or a peer that lost its store: the peer's next exchange is a
// first contact. An exchange with p already running is not stopped; if it
// completes, it stores its result afresh. Forgetting a peer the node does
// not know returns a zero ForgetResult.
func (n *Node) Forget(p peer.ID) (ForgetResult, error) {
	n.mu.Lock()
	closed := n.closed
	var kept *keptStream
	if !closed {
		kept = n.kept[p]
		delete(n.kept, p)
	}
	n.mu.Unlock()
	if closed {
		return ForgetResult{}, ErrClosed
	}
	if kept != nil {
		kept.timer.Stop()
		_ = kept.s.Close()
	}
	res, err := n.store.Forget(p)
	if err != nil {
		return ForgetResult{}, fmt.Errorf("forget peer %s: %w", p, err)
	}
	n.records.drop(p)
	n.msg.forget(p)
	log.Infow("peer forgotten", "peer", p, "record", res.Record, "trust", res.Trust.String(), "sessions", res.Sessions)
	return res, nil
}

// drop removes p's record from the cache.
func (c *recordCache) drop(p peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, p)
}

// forget drops the message state of p: the sending and receiving keys
// derived from its session keys, and the replay windows, which protect
// nothing once those keys are gone.
func (m *messaging) forget(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.send, p)
	delete(m.recv, p)
	if m.forgotten == nil {
		m.forgotten = map[peer.ID]uint64{}
	}
	m.forgotten[p]++ // a message being read now is refused (accept)
}
