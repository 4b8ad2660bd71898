package node

// Trust: what the node does when a peer's exchange key changes.
//
// Every record a peer sends in phase 2 is compared with the record the node
// holds for it (even one that expired) and classified (KeyChange):
//
//   - KeyFirstContact: the node holds no record of the peer.
//   - KeyRotated: the change is accounted for by a rotation. The new record
//     is signed by the peer's identity (the protocol checks that), its
//     sequence number is above the held one and it was not created before
//     the held one. (The same record again also counts here.)
//   - KeyUnaccounted: anything else: a sequence number not above the held
//     one with another key (only possible once the held record expired; an
//     unexpired one is protected by the protocol's rollback rule, which no
//     policy can override), or a higher sequence number on a record created
//     before the held one. Honest rotations never produce either: they
//     point to two copies of the peer's key store (a restored backup, a
//     copied repo) or to someone else signing with the peer's identity key.
//
// The trust policy (WithTrustPolicy; TrustTOFU by default) then accepts or
// refuses. The peer's stored trust state moves like this:
//
//	(none)    --first record accepted-->           first-use
//	first-use --user confirms the safety number--> verified   (Store().SetTrust)
//	changed   --user confirms the safety number--> verified
//	any       --unaccounted change accepted-->     changed    (the new record is stored)
//	any       --rotation accepted-->               unchanged
//	any       --record refused-->                  unchanged  (the held record stays)
//
// An unaccounted change, accepted or refused, and a record refused as a
// rollback are published as EventTrustChanged and logged at WARN.
//
// A known peer's address answering with another identity (KeyNewIdentity,
// identity.go) goes through the same policy and is reported the same way.

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// KeyChange says how a received exchange-key record relates to the held one.
type KeyChange uint8

const (
	// KeyFirstContact: no record of the peer was held.
	KeyFirstContact KeyChange = iota + 1
	// KeyRotated: a rotation accounts for the change (or nothing changed).
	KeyRotated
	// KeyUnaccounted: no rotation accounts for the change.
	KeyUnaccounted
	// KeyNewIdentity: an address the node dialled for a known peer answered
	// with another identity (another peer ID). PeerKeyChange.Received is
	// nil; Known is the held record of the dialled peer; Reason names the
	// address and the identity presented. (identity.go)
	KeyNewIdentity
)

func (c KeyChange) String() string {
	switch c {
	case KeyFirstContact:
		return "first contact"
	case KeyRotated:
		return "rotation"
	case KeyUnaccounted:
		return "unaccounted change"
	case KeyNewIdentity:
		return "new identity"
	}
	return "unknown"
}

// ErrKeyChanged is wrapped by the error of a policy that refuses an
// unaccounted key change (a *KeyChangeError).
var ErrKeyChanged = errors.New("exchange key changed without a rotation that accounts for it")

// KeyChangeError is a trust policy's refusal of an unaccounted key change.
type KeyChangeError struct {
	Peer   peer.ID
	Trust  peerstore.TrustState // the peer's trust state, unchanged
	Reason string               // how the records differ
	Policy string               // the refusing policy
}

func (e *KeyChangeError) Error() string {
	return fmt.Sprintf("KEY CHANGED: exchange key of %s peer %s changed without a rotation that accounts for it (%s); refused by trust policy %q",
		e.Trust, e.Peer, e.Reason, e.Policy)
}

func (e *KeyChangeError) Unwrap() error { return ErrKeyChanged }

// Trust policies. A TrustPolicy is a function so that applications can write
// their own; these are the ones the command line offers (ParseTrustPolicy).
var (
	// TrustTOFU, the default, accepts first contacts and rotations; it
	// refuses an unaccounted change (or a new identity) of a verified peer
	// and accepts one of an unverified peer, which becomes TrustChanged
	// (loudly: EventTrustChanged).
	// A verified peer's key is a decision of the user that only the user
	// can revise; an unverified one was never checked.
	TrustTOFU TrustPolicy = func(c PeerKeyChange) error {
		if c.Change >= KeyUnaccounted && c.Trust == peerstore.TrustVerified {
			return c.refuse("tofu")
		}
		return nil
	}
	// TrustStrict refuses every unaccounted change and every new identity,
	// whatever the peer's trust state — as SSH with StrictHostKeyChecking=yes.
	TrustStrict TrustPolicy = func(c PeerKeyChange) error {
		if c.Change >= KeyUnaccounted {
			return c.refuse("strict")
		}
		return nil
	}
	// TrustAcceptAll accepts every record the protocol accepts; unaccounted
	// changes still make the peer TrustChanged and are reported.
	TrustAcceptAll TrustPolicy = func(PeerKeyChange) error { return nil }
)

// TrustPolicyNames are the names ParseTrustPolicy knows, the default first.
var TrustPolicyNames = []string{"tofu", "strict", "accept"}

// ParseTrustPolicy returns the policy of a name in TrustPolicyNames.
func ParseTrustPolicy(name string) (TrustPolicy, error) {
	switch name {
	case "tofu":
		return TrustTOFU, nil
	case "strict":
		return TrustStrict, nil
	case "accept":
		return TrustAcceptAll, nil
	}
	return nil, fmt.Errorf("unknown trust policy %q (want tofu, strict or accept)", name)
}

func (c PeerKeyChange) refuse(policy string) error {
	return &KeyChangeError{Peer: c.Peer, Trust: c.Trust, Reason: c.Reason, Policy: policy}
}

// TrustChange is the report of an EventTrustChanged.
type TrustChange struct {
	Change   KeyChange
	Previous peerstore.TrustState // the trust state before
	State    peerstore.TrustState // after: TrustChanged if accepted, else Previous
	Refused  bool
	Reason   string               // how the records differ, or why it was refused
	Known    protocol.Fingerprint // the held record
	Received protocol.Fingerprint // the refused or newly stored record
	// Presented, for KeyNewIdentity, is the identity that answered at the
	// peer's address, and Addr that address (nil if unknown).
	Presented peer.ID
	Addr      ma.Multiaddr
}

// classify compares a received record with the held one.
func classify(held, rec *protocol.PeerRecord) (KeyChange, string) {
	switch {
	case held == nil:
		return KeyFirstContact, ""
	case rec.Fingerprint.Equal(held.Fingerprint):
		return KeyRotated, ""
	case rec.Seq <= held.Seq:
		return KeyUnaccounted, fmt.Sprintf("sequence %d does not follow the held %d", rec.Seq, held.Seq)
	case rec.Created.Before(held.Created):
		return KeyUnaccounted, fmt.Sprintf("sequence %d created %s, before the held sequence %d created %s",
			rec.Seq, rec.Created.UTC().Format(time.RFC3339), held.Seq, held.Created.UTC().Format(time.RFC3339))
	}
	return KeyRotated, ""
}

// heldRecord returns p's stored record, parsed but not checked for expiry:
// an expired record still anchors the comparison. ok is false when the node
// holds a record it cannot parse.
func (n *Node) heldRecord(p peer.ID) (rec *protocol.PeerRecord, trust peerstore.TrustState, ok bool, err error) {
	pk, err := n.store.Peer(p)
	if errors.Is(err, peerstore.ErrNotFound) {
		return nil, peerstore.TrustUnknown, true, nil
	}
	if err != nil {
		return nil, peerstore.TrustUnknown, false, fmt.Errorf("read record of %s: %w", p, err)
	}
	var kr protocol.KeyRecord
	env, err := record.ConsumeTypedEnvelope(pk.Record, &kr)
	if err != nil || kr.Peer != p {
		return nil, pk.Trust, false, nil
	}
	if signer, err := peer.IDFromPublicKey(env.PublicKey); err != nil || signer != p {
		return nil, pk.Trust, false, nil
	}
	return &protocol.PeerRecord{KeyRecord: kr, Envelope: pk.Record, Fingerprint: protocol.FingerprintOf(pk.Record)}, pk.Trust, true, nil
}

// trustVerdicts holds, per peer, the verdict on the record the running
// exchange received, for install. Exchanges with one peer never interleave.
type trustVerdicts struct {
	mu   sync.Mutex
	m    map[peer.ID]*TrustChange
	succ map[peer.ID]struct{} // identity.go
}

func (v *trustVerdicts) put(p peer.ID, c *TrustChange) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[peer.ID]*TrustChange{}
	}
	if c == nil {
		delete(v.m, p)
		return
	}
	v.m[p] = c
}

func (v *trustVerdicts) take(p peer.ID) *TrustChange {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.m[p]
	delete(v.m, p)
	return c
}

// accept applies the trust policy to a record received from p. trust is
// the peer's stored trust state; known, the record the machine holds (nil if
// none or expired: then the stored record is read, expired or not).
func (n *Node) accept(p peer.ID, trust peerstore.TrustState) func(peer.ID, *protocol.PeerRecord, *protocol.PeerRecord) error {
	n.verdicts.put(p, nil)
	return func(_ peer.ID, known, rec *protocol.PeerRecord) error {
		held, ok := known, true
		if held == nil {
			var err error
			if held, trust, ok, err = n.heldRecord(p); err != nil {
				return err
			}
		}
		change, reason := classify(held, rec)
		if !ok {
			change, reason = KeyUnaccounted, "the held record does not parse"
		}
		c := PeerKeyChange{Peer: p, Known: held, Received: rec, Trust: trust, Change: change, Reason: reason}
		policyErr := n.cfg.trust(c)
		if change != KeyUnaccounted {
			return policyErr
		}
		tc := &TrustChange{Change: change, Previous: trust, State: peerstore.TrustChanged, Reason: reason, Received: rec.Fingerprint}
		if held != nil {
			tc.Known = held.Fingerprint
		}
		if policyErr != nil {
			tc.Refused, tc.State = true, trust
			n.reportTrust(p, tc)
			return policyErr
		}
		n.verdicts.put(p, tc) // reported by install, once the key is in
		return nil
	}
}

// trustAfter is the trust state install stores with a newly received record.
func (n *Node) trustAfter(p peer.ID) peerstore.TrustState {
	successor := n.verdicts.takeSuccessor(p)
	if tc := n.verdicts.take(p); tc != nil {
		n.reportTrust(p, tc)
		return peerstore.TrustChanged
	}
	if old, err := n.store.Peer(p); err == nil {
		return old.Trust
	}
	if successor {
		return peerstore.TrustChanged // took a known peer's place (identity.go)
	}
	return peerstore.TrustFirstUse
}

// reportRollback reports a record the protocol refused as a rollback: the
// peer presented a key its held, unexpired record rules out.
func (n *Node) reportRollback(p peer.ID, err error) {
	if !errors.Is(err, protocol.ErrRollback) {
		return
	}
	tc := &TrustChange{Change: KeyUnaccounted, Refused: true, Reason: err.Error()}
	if pk, e := n.store.Peer(p); e == nil {
		tc.Previous, tc.State = pk.Trust, pk.Trust
		tc.Known = protocol.FingerprintOf(pk.Record)
	}
	n.reportTrust(p, tc)
}

func (n *Node) reportTrust(p peer.ID, tc *TrustChange) {
	log.Warnw("KEY CHANGED: peer's exchange key changed without a rotation that accounts for it",
		"peer", p, "trust", tc.Previous.String(), "refused", tc.Refused, "reason", tc.Reason)
	n.events.publish(Event{Time: time.Now(), Peer: p, Kind: EventTrustChanged, Trust: tc})
}

// SafetyNumber returns the safety number of this node and p, the same on
// both sides (protocol.NewSafetyNumber).
func (n *Node) SafetyNumber(p peer.ID) protocol.SafetyNumber {
	return protocol.NewSafetyNumber(n.ID(), p)
}
