package node

// The peer ID is the identity.
//
// A peer named by the user or the application (Connect, Exchange, Send,
// and so the command line's /p2p/<ID> addresses and bare peer IDs) is the
// only peer an operation can be with. libp2p's secure channel refuses a
// connection whose remote proves another identity than the one dialled:
// dialling peer P at an address where X now answers fails with
// sec.ErrPeerIDMismatch. The node turns that into an *IdentityChangeError
// naming the address, P and X, under every trust policy: there is no
// "allowed, go on with X". Nothing is stored for X; to talk to X, the user
// names X (and X is then a first contact like any other).
//
// For a peer the node holds a record of, that is also what SSH reports as
// "REMOTE HOST IDENTIFICATION HAS CHANGED": the machine the user knows by
// this address was reinstalled with a new identity key, or something else
// took its place. The node reports it as a trust event (EventTrustChanged
// with KeyNewIdentity, a WARN log line, the trust-event metric), carried by
// the error too (TrustEvents). For a peer it knows nothing of, it is a
// wrong address: the same error, but no trust event.
//
// The trust policy is not asked: no answer of it could make X be P. It
// judges records (trust.go); this is the trust engine's identity rule.

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/peerstore"
)

// ErrIdentityChanged is wrapped by every *IdentityChangeError.
var ErrIdentityChanged = errors.New("another identity answered at the peer's address")

// IdentityChangeError is the failure of a dial to Peer at an address where
// another identity, Presented, answered. It is returned under every trust
// policy.
type IdentityChangeError struct {
	Peer      peer.ID              // the peer dialled
	Presented peer.ID              // the identity that answered
	Addr      ma.Multiaddr         // where it answered; nil if unknown
	Trust     peerstore.TrustState // Peer's trust state; TrustUnknown for a peer the node does not know
	// Refused is always true: no trust policy lets another identity stand
	// in for the peer dialled. Kept for callers written when one could.
	Refused bool
	// Err is the dial error.
	Err error

	event *TrustChange // the trust event, for a known peer
}

// Error is one line naming the address, the peer dialled and the identity
// that answered.
func (e *IdentityChangeError) Error() string {
	at := "an address of it"
	if e.Addr != nil {
		at = e.Addr.String()
	}
	if e.Trust == peerstore.TrustUnknown {
		return fmt.Sprintf("wrong identity: dialled peer %s, but %s answered with another identity, %s; refused (to talk to %s, name it)",
			e.Peer, at, e.Presented, e.Presented)
	}
	return fmt.Sprintf("IDENTITY CHANGED: dialled %s peer %s, but %s answered with another identity, %s; refused (to talk to %s, name it)",
		e.Trust, e.Peer, at, e.Presented, e.Presented)
}

func (e *IdentityChangeError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrIdentityChanged}
	}
	return []error{ErrIdentityChanged, e.Err}
}

func (e *IdentityChangeError) trustEvents() []TrustChange {
	if e.event == nil {
		return nil
	}
	return []TrustChange{*e.event}
}

// identityChanged turns a dial error to p that is an identity mismatch into
// an *IdentityChangeError, reported as a trust event when p is a peer the
// node knows. Any other error is returned unchanged.
func (n *Node) identityChanged(p peer.ID, err error) error {
	var mm sec.ErrPeerIDMismatch
	if err == nil || !errors.As(err, &mm) || mm.Expected != p || mm.Actual == "" || mm.Actual == p {
		return err
	}
	e := &IdentityChangeError{Peer: p, Presented: mm.Actual, Addr: mismatchAddr(err, mm.Actual), Refused: true, Err: err}
	held, trust, _, serr := n.heldRecord(p)
	if serr != nil {
		log.Debugw("identity mismatch: cannot read the peer's record", "peer", p, "err", serr)
		return e
	}
	if trust == peerstore.TrustUnknown {
		log.Debugw("identity mismatch at an address of an unknown peer", "peer", p, "presented", mm.Actual, "addr", e.Addr)
		return e // not a peer the node knows: a wrong address, no trust event
	}
	e.Trust = trust
	reason := fmt.Sprintf("its address answered with identity %s", mm.Actual)
	if e.Addr != nil {
		reason = fmt.Sprintf("%s answered with identity %s", e.Addr, mm.Actual)
	}
	tc := &TrustChange{Peer: p, Change: KeyNewIdentity, Previous: trust, State: trust, Refused: true,
		Reason: reason, Presented: mm.Actual, Addr: e.Addr}
	if held != nil {
		tc.Known = held.Fingerprint
	}
	n.reportTrust(nil, tc) // trust.go
	e.event = tc
	return e
}

// mismatchAddr finds the address at which presented answered in a swarm
// dial error, or nil.
func mismatchAddr(err error, presented peer.ID) ma.Multiaddr {
	var de *swarm.DialError
	if !errors.As(err, &de) {
		return nil
	}
	for _, te := range de.DialErrors {
		var mm sec.ErrPeerIDMismatch
		if errors.As(te.Cause, &mm) && mm.Actual == presented {
			return te.Address
		}
	}
	return nil
}
