package node

// Trust: what the node does when a peer's exchange key, or the identity
// answering at its address, is not the one it holds.
//
// One trust engine judges every record and every identity, on every path
// (Exchange and Send as initiator, the stream handler as responder,
// Connect): records in accept, identities in identityChanged
// (identity.go), both with the one TrustPolicy of the node's options.
//
// Every record a peer sends in phase 2 is placed against the record the
// node holds for it (even one that expired) by protocol.RelateRecords, the
// one ordering rule the protocol's rule V40 uses too (docs/PROTOCOL.md
// section 8): a peer's records are ordered by creation time, then sequence
// number.
//
//   - RecordFirst: KeyFirstContact; the policy decides (the built-in ones
//     accept). Accepted, the record is pinned as first-use.
//   - RecordSame, RecordRotation: KeyRotated; the policy decides (the
//     built-in ones accept); the trust state is kept.
//   - RecordReset (created after the held record, sequence number not
//     above it: the peer lost its store): KeyReset; the policy decides.
//     Accepted, the peer becomes changed.
//   - RecordRollback (created before the held record, or a sequence jump
//     beyond protocol.MaxSeqJump): an old record replayed, or a copy of
//     the peer's key store. KeyUnaccounted, refused under every policy
//     with an error wrapping protocol.ErrRollback — also when the held
//     record has expired. The policy is not asked: no answer of it could
//     make an older record the peer's current one.
//
// The peer's stored trust state moves like this:
//
//	(none)    --first record accepted-->            first-use
//	first-use --user confirms the safety number-->  verified   (ConfirmPeer)
//	changed   --user confirms the safety number-->  verified
//	verified  --user revokes the verification-->   first-use  (RevokePeer)
//	any       --store reset accepted-->             changed    (the new record is stored)
//	any       --rotation accepted-->                unchanged
//	any       --record refused-->                   unchanged  (the held record stays)
//	any       --user forgets the peer-->            (none)     (Forget)
//
// Every trust event (first use pinned, store reset accepted or refused,
// rollback refused, identity changed, suite downgrade refused) is
// published as EventTrustChanged, logged at WARN and counted in the
// metrics; an exchange's accepted events are in its KeyInfo.Trust, a
// failed operation's in TrustEvents(err).

import (
	"errors"
	"fmt"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// KeyChange says how a received exchange-key record (or the identity that
// answered) relates to what the node holds for a peer.
type KeyChange uint8

const (
	// KeyFirstContact: no record of the peer was held; the received one is
	// pinned (first-use).
	KeyFirstContact KeyChange = iota + 1
	// KeyRotated: a rotation accounts for the change (or nothing changed).
	KeyRotated
	// KeyUnaccounted: neither a rotation nor a store reset accounts for
	// the change: a record older than the held one (protocol.RecordRollback:
	// an old record replayed, or a copy of the peer's key store), refused
	// under every policy; or a held record the node cannot parse, which
	// the policy judges.
	KeyUnaccounted
	// KeyNewIdentity: an address the node dialled for a peer answered with
	// another identity (another peer ID). Refused under every policy
	// (identity.go). PeerKeyChange.Received is nil; Known is the held
	// record of the dialled peer.
	KeyNewIdentity
	// KeyReset: a record created after the held one whose sequence number
	// is not above it: the peer lost (or reset) its key store and started
	// again (protocol.RecordReset). The policy decides; accepted, the peer
	// becomes changed.
	KeyReset
	// KeySuiteDowngrade: the responder chose a suite other than the first
	// of this node's offered suites its record supports; the exchange was
	// refused (protocol.ErrDowngrade).
	KeySuiteDowngrade
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
	case KeyReset:
		return "store reset"
	case KeySuiteDowngrade:
		return "suite downgrade"
	}
	return "unknown"
}

// label is the change's name in metrics.
func (c KeyChange) label() string {
	switch c {
	case KeyFirstContact:
		return "first_use"
	case KeyRotated:
		return "rotation"
	case KeyUnaccounted:
		return "unaccounted"
	case KeyNewIdentity:
		return "identity_changed"
	case KeyReset:
		return "store_reset"
	case KeySuiteDowngrade:
		return "suite_downgrade"
	}
	return "unknown"
}

// ErrKeyChanged is wrapped by every *KeyChangeError: a received record
// refused by the trust policy or as a rollback.
var ErrKeyChanged = errors.New("exchange key changed without a rotation that accounts for it")

// KeyChangeError is the refusal of a received exchange-key record: by the
// trust policy (a store reset or an unaccounted change), or, whatever the
// policy, as a rollback (Rollback; it then wraps protocol.ErrRollback too).
type KeyChangeError struct {
	Peer     peer.ID
	Change   KeyChange
	Trust    peerstore.TrustState // the peer's trust state, unchanged
	Reason   string               // how the records differ
	Policy   string               // the refusing policy; "" for a rollback
	Rollback bool
}

func (e *KeyChangeError) Error() string {
	switch {
	case e.Rollback:
		return fmt.Sprintf("KEY ROLLED BACK: exchange-key record of %s peer %s is older than the held one (%s); refused under every trust policy (forget the peer to start over)",
			e.Trust, e.Peer, e.Reason)
	case e.Change == KeyReset:
		return fmt.Sprintf("KEY CHANGED: %s peer %s lost its key store and presents a new record (%s); refused by trust policy %q",
			e.Trust, e.Peer, e.Reason, e.Policy)
	}
	return fmt.Sprintf("KEY CHANGED: exchange key of %s peer %s changed without a rotation that accounts for it (%s); refused by trust policy %q",
		e.Trust, e.Peer, e.Reason, e.Policy)
}

func (e *KeyChangeError) Unwrap() []error {
	if e.Rollback {
		return []error{ErrKeyChanged, protocol.ErrRollback}
	}
	return []error{ErrKeyChanged}
}

// Trust policies. A TrustPolicy is a function so that applications can write
// their own; these are the ones the command line offers (ParseTrustPolicy).
// A policy judges first contacts, rotations, store resets and records
// whose held predecessor does not parse. Rollbacks and identity changes
// never reach it: they are refused under every policy.
var (
	// TrustTOFU, the default, accepts first contacts and rotations; it
	// accepts a store reset (or an unaccounted change) of an unverified
	// peer, which becomes TrustChanged (loudly: EventTrustChanged), and
	// refuses one of a verified peer. A verified peer's key is a decision
	// of the user that only the user can revise (RevokePeer, Forget); an
	// unverified one was never checked.
	TrustTOFU TrustPolicy = func(c PeerKeyChange) error {
		if c.Change.needsPolicy() && c.Trust == peerstore.TrustVerified {
			return c.refuse("tofu")
		}
		return nil
	}
	// TrustStrict refuses every store reset and unaccounted change,
	// whatever the peer's trust state — as SSH with
	// StrictHostKeyChecking=yes. The user recovers with Forget.
	TrustStrict TrustPolicy = func(c PeerKeyChange) error {
		if c.Change.needsPolicy() {
			return c.refuse("strict")
		}
		return nil
	}
	// TrustAcceptAll accepts every record the protocol and the ordering
	// rule accept; store resets still make the peer TrustChanged and are
	// reported. Rollbacks and identity changes stay refused.
	TrustAcceptAll TrustPolicy = func(PeerKeyChange) error { return nil }
)

// needsPolicy: changes the built-in policies judge by the trust state.
func (c KeyChange) needsPolicy() bool {
	return c == KeyReset || c == KeyUnaccounted
}

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
	return &KeyChangeError{Peer: c.Peer, Change: c.Change, Trust: c.Trust, Reason: c.Reason, Policy: policy}
}

// TrustChange is a trust event: the report of an EventTrustChanged, an
// entry of KeyInfo.Trust or of TrustEvents(err).
type TrustChange struct {
	Peer     peer.ID // the peer the event is about (the one dialled, for KeyNewIdentity)
	Change   KeyChange
	Previous peerstore.TrustState // the trust state before
	State    peerstore.TrustState // after: first-use or changed if accepted, else Previous
	Refused  bool
	// Rollback: refused under every policy as a record older than the held
	// one (Change is KeyUnaccounted; Reason starts with the text of
	// protocol.ErrRollback).
	Rollback bool
	Policy   string               // the refusing policy, when a policy refused
	Reason   string               // how the records differ, or why it was refused
	Known    protocol.Fingerprint // the held record (zero if none)
	Received protocol.Fingerprint // the refused or newly stored record (zero if none)
	// Suite is the suite of the session the exchange installed, for an
	// accepted event; zero where not known.
	Suite protocol.Suite
	// Presented, for KeyNewIdentity, is the identity that answered at the
	// peer's address, and Addr that address (nil if unknown).
	Presented peer.ID
	Addr      ma.Multiaddr
}

// String is the one-line human description of the event.
func (c TrustChange) String() string {
	verdict := "accepted"
	if c.Refused {
		verdict = "REFUSED"
		if c.Policy != "" {
			verdict += fmt.Sprintf(" by trust policy %q", c.Policy)
		}
	}
	suite := ""
	if c.Suite != 0 {
		suite = ", suite " + suiteName(c.Suite)
	}
	switch c.Change {
	case KeyFirstContact:
		return fmt.Sprintf("FIRST USE: pinned exchange key %s of peer %s (trust first-use%s); compare safety numbers to verify it",
			c.Received, c.Peer, suite)
	case KeyRotated:
		return fmt.Sprintf("ROTATED: peer %s rotated its exchange key to %s (%s)", c.Peer, c.Received, verdict)
	case KeyReset:
		if c.Refused {
			return fmt.Sprintf("KEY CHANGED: %s peer %s lost its key store and presents a new record (%s); %s. Ask the peer; to accept it, forget the peer and exchange again",
				c.Previous, c.Peer, c.Reason, verdict)
		}
		return fmt.Sprintf("KEY CHANGED: %s peer %s lost its key store and presents a new record %s (%s); accepted, peer marked changed%s: compare safety numbers and confirm",
			c.Previous, c.Peer, c.Received, c.Reason, suite)
	case KeyUnaccounted:
		if c.Rollback {
			return fmt.Sprintf("KEY ROLLED BACK: %s peer %s presented an exchange-key record older than the held one (%s); REFUSED under every trust policy. Ask the peer; to start over, forget the peer",
				c.Previous, c.Peer, c.Reason)
		}
		if c.Refused {
			return fmt.Sprintf("KEY CHANGED: exchange-key record of %s peer %s is not explained by a rotation or a store reset (%s); %s",
				c.Previous, c.Peer, c.Reason, verdict)
		}
		return fmt.Sprintf("KEY CHANGED: exchange-key record of %s peer %s is not explained by a rotation (%s); accepted, peer marked changed%s: compare safety numbers and confirm",
			c.Previous, c.Peer, c.Reason, suite)
	case KeyNewIdentity:
		at := "an address of it"
		if c.Addr != nil {
			at = c.Addr.String()
		}
		return fmt.Sprintf("IDENTITY CHANGED: %s peer %s: %s answered with another identity, %s; REFUSED (a peer is its peer ID: to talk to %s, name it)",
			c.Previous, c.Peer, at, c.Presented, c.Presented)
	case KeySuiteDowngrade:
		return fmt.Sprintf("SUITE DOWNGRADE: peer %s answered with a suite other than the first both support (%s); REFUSED",
			c.Peer, c.Reason)
	}
	return fmt.Sprintf("trust event %v of peer %s (%s): %s", c.Change, c.Peer, c.Reason, verdict)
}

// suiteName names a suite and marks the classical one.
func suiteName(s protocol.Suite) string {
	if s.PostQuantum() {
		return s.String()
	}
	return s.String() + " (classical)"
}

// TrustEvents returns the trust events carried by the error of a failed
// Exchange, Connect or Send: key change refused, store reset refused,
// rollback refused, identity changed (for a peer the node knew), suite
// downgrade refused. Nil if there are none.
func TrustEvents(err error) []TrustChange {
	var out []TrustChange
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
			return
		case trustEventer:
			out = append(out, e.trustEvents()...)
			return
		case interface{ Unwrap() []error }:
			for _, w := range e.Unwrap() {
				walk(w)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// trustEventer is an error that carries trust events (TrustEvents).
type trustEventer interface {
	trustEvents() []TrustChange
}

// trustEventsError is an exchange's error with the trust events it
// reported.
type trustEventsError struct {
	err    error
	events []TrustChange
}

func (e *trustEventsError) Error() string              { return e.err.Error() }
func (e *trustEventsError) Unwrap() error              { return e.err }
func (e *trustEventsError) trustEvents() []TrustChange { return e.events }

// trustRun holds the trust verdicts of one exchange. It is used only by the
// goroutine that runs the exchange.
type trustRun struct {
	// verdict is the accepted verdict on the record phase 2 brought, for
	// install: the trust state to store and, if it is a trust event, the
	// event to report once the key is in.
	verdict *TrustChange
	event   bool
	// events are the trust events reported so far.
	events []TrustChange
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
	rec, ok = parseHeld(p, pk)
	return rec, pk.Trust, ok, nil
}

// parseHeld parses a stored record without checking its validity period.
func parseHeld(p peer.ID, pk *peerstore.PeerKey) (*protocol.PeerRecord, bool) {
	var kr protocol.KeyRecord
	env, err := record.ConsumeTypedEnvelope(pk.Record, &kr)
	if err != nil || kr.Peer != p {
		return nil, false
	}
	if signer, err := peer.IDFromPublicKey(env.PublicKey); err != nil || signer != p {
		return nil, false
	}
	return &protocol.PeerRecord{KeyRecord: kr, Envelope: pk.Record, Fingerprint: protocol.FingerprintOf(pk.Record)}, true
}

// judgeRecord is the trust engine's verdict on rec, received from p, held
// the record the node holds (nil if none; heldOK false if it does not
// parse) and trust the peer's trust state. The returned change is the
// verdict, as a trust event; err is the refusal.
func (n *Node) judgeRecord(p peer.ID, held *protocol.PeerRecord, heldOK bool, trust peerstore.TrustState, rec *protocol.PeerRecord) (*TrustChange, error) {
	rel, reason := protocol.RelateRecords(held, rec)
	var change KeyChange
	switch rel {
	case protocol.RecordFirst:
		change = KeyFirstContact
	case protocol.RecordSame, protocol.RecordRotation:
		change = KeyRotated
	case protocol.RecordReset:
		change = KeyReset
	default:
		change = KeyUnaccounted
	}
	if !heldOK {
		change, reason = KeyUnaccounted, "the held record does not parse"
	}
	tc := &TrustChange{Peer: p, Change: change, Previous: trust, State: trust, Reason: reason, Received: rec.Fingerprint}
	if held != nil {
		tc.Known = held.Fingerprint
	}
	if rel == protocol.RecordRollback && heldOK {
		tc.Refused, tc.Rollback = true, true
		tc.Reason = protocol.ErrRollback.Error() + ": " + reason // as the protocol's own refusal says it
		return tc, &KeyChangeError{Peer: p, Change: change, Trust: trust, Reason: reason, Rollback: true}
	}
	if err := n.cfg.trust(PeerKeyChange{Peer: p, Known: held, Received: rec, Trust: trust, Change: change, Reason: reason}); err != nil {
		tc.Refused = true
		var kc *KeyChangeError
		if errors.As(err, &kc) {
			tc.Policy = kc.Policy
		}
		return tc, err
	}
	switch change {
	case KeyFirstContact:
		tc.State = peerstore.TrustFirstUse
	case KeyReset, KeyUnaccounted:
		tc.State = peerstore.TrustChanged
	}
	return tc, nil
}

// accept is the machine's Accept for an exchange with p: the trust engine
// on a record received in phase 2. trust is the peer's stored trust state;
// known, the record the machine holds (nil if none or expired: then the
// stored record is read, expired or not, so that the ordering rule holds
// against it too).
//
// stored says whether the store held a record of p when the exchange
// began: without one there is nothing to read back (a first contact), and
// no other record of p can be stored meanwhile, since an exchange that
// stores one is the peer's only exchange until it committed.
func (n *Node) accept(p peer.ID, trust peerstore.TrustState, stored bool, tr *trustRun) func(peer.ID, *protocol.PeerRecord, *protocol.PeerRecord) error {
	return func(_ peer.ID, known, rec *protocol.PeerRecord) error {
		held, ok := known, true
		if held == nil && stored {
			var err error
			if held, trust, ok, err = n.heldRecord(p); err != nil {
				return err
			}
		}
		tc, err := n.judgeRecord(p, held, ok, trust, rec)
		if err != nil {
			n.reportTrust(tr, tc)
			return err
		}
		tr.verdict, tr.event = tc, tc.Change != KeyRotated
		return nil
	}
}

// trustAfter is the trust state install stores with a newly received
// record, and the trust event to report once it is stored (nil if none).
func (n *Node) trustAfter(p peer.ID, tr *trustRun) (peerstore.TrustState, *TrustChange) {
	if tr.verdict != nil && tr.event {
		return tr.verdict.State, tr.verdict
	}
	// A rotation keeps the trust state as it is now (the user may have
	// confirmed the peer while the exchange ran).
	if old, err := n.store.Peer(p); err == nil {
		return old.Trust, nil
	}
	return peerstore.TrustFirstUse, nil
}

// reportFailure reports the trust event a failed exchange's error
// carries, unless accept already did: a record the protocol refused as a
// rollback of its held, valid record (rule V40), or a suite downgrade.
func (n *Node) reportFailure(p peer.ID, tr *trustRun, err error) {
	var ae *protocol.AbortError
	if len(tr.events) > 0 || errors.As(err, &ae) {
		return // reported by accept, or the peer's refusal, not this node's
	}
	var tc *TrustChange
	switch {
	case errors.Is(err, protocol.ErrDowngrade):
		tc = &TrustChange{Peer: p, Change: KeySuiteDowngrade, Refused: true, Reason: err.Error()}
	case errors.Is(err, protocol.ErrRollback):
		tc = &TrustChange{Peer: p, Change: KeyUnaccounted, Refused: true, Rollback: true, Reason: err.Error()}
	default:
		return
	}
	if pk, e := n.store.Peer(p); e == nil {
		tc.Previous, tc.State = pk.Trust, pk.Trust
		if tc.Change == KeyUnaccounted {
			tc.Known = protocol.FingerprintOf(pk.Record)
		}
	}
	n.reportTrust(tr, tc)
}

// reportTrust publishes a trust event, logs it at WARN (the metrics count
// it from the event) and, if tr is not nil, adds it to the exchange's
// events.
func (n *Node) reportTrust(tr *trustRun, tc *TrustChange) {
	if log.LevelEnabled(logging.LevelWarn) { // the message is formatted only to be logged (every first contact has one)
		log.Warnw(tc.String(), "peer", tc.Peer, "change", tc.Change.label(), "trust", tc.Previous.String(), "refused", tc.Refused)
	}
	n.events.publish(Event{Time: time.Now(), Peer: tc.Peer, Kind: EventTrustChanged, Trust: tc})
	if tr != nil {
		tr.events = append(tr.events, *tc)
	}
}

// SafetyNumber returns the safety number of this node and p, the same on
// both sides (protocol.NewSafetyNumber).
func (n *Node) SafetyNumber(p peer.ID) protocol.SafetyNumber {
	return protocol.NewSafetyNumber(n.ID(), p)
}
