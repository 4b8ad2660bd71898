package node

// A known peer presenting a new identity.
//
// A peer is its peer ID, and libp2p's secure channel refuses a connection
// whose remote proves another identity than the one dialled: dialling a
// peer at an address where another node now answers fails with
// sec.ErrPeerIDMismatch. For a peer the node holds a record of, that is
// what SSH reports as "REMOTE HOST IDENTIFICATION HAS CHANGED": the machine
// the user knows by this address was reinstalled with a new identity key,
// or something else took its place. The node reports it loudly
// (EventTrustChanged with Change KeyNewIdentity, and a WARN log line) and
// asks the trust policy, as for an unaccounted key change:
//
//   - refused (a verified peer under TrustTOFU; any known peer under
//     TrustStrict): the dial fails with an *IdentityChangeError that says
//     so; nothing is stored.
//   - accepted: the dial still fails (the peer dialled is not there), with
//     an *IdentityChangeError whose Refused is false. The caller may go on
//     with the presented identity (Connect, Exchange); the first record
//     the node stores for it gets the trust state TrustChanged rather than
//     TrustFirstUse, so that the user is asked to verify it.
//
// A mismatch when dialling a peer the node knows nothing of is a wrong
// address, not a changed identity: the dial error is returned as it is.

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/peerstore"
)

// ErrIdentityChanged is wrapped by every *IdentityChangeError.
var ErrIdentityChanged = errors.New("a known peer's address answers with another identity")

// IdentityChangeError is the failure of a dial to a known peer whose
// address answered with another identity.
type IdentityChangeError struct {
	Peer      peer.ID              // the peer dialled
	Presented peer.ID              // the identity that answered
	Addr      ma.Multiaddr         // where it answered; nil if unknown
	Trust     peerstore.TrustState // Peer's trust state
	// Refused: the trust policy refused the change. Otherwise the caller
	// may go on with Presented.
	Refused bool
	Policy  string // the refusing policy's name, if it gave one
}

func (e *IdentityChangeError) Error() string {
	at := ""
	if e.Addr != nil {
		at = " at " + e.Addr.String()
	}
	what := fmt.Sprintf("IDENTITY CHANGED: %s peer %s%s answers with another identity, %s", e.Trust, e.Peer, at, e.Presented)
	if e.Refused {
		return fmt.Sprintf("%s; refused by trust policy %q", what, e.Policy)
	}
	return what + "; allowed by the trust policy"
}

func (e *IdentityChangeError) Unwrap() error { return ErrIdentityChanged }

// identityChanged turns a dial error to p that is an identity mismatch at
// an address of a known peer into an *IdentityChangeError, reported and
// judged by the trust policy. Any other error is returned unchanged.
func (n *Node) identityChanged(p peer.ID, err error) error {
	var mm sec.ErrPeerIDMismatch
	if err == nil || !errors.As(err, &mm) || mm.Expected != p || mm.Actual == "" || mm.Actual == p {
		return err
	}
	held, trust, _, serr := n.heldRecord(p)
	if serr != nil || trust == peerstore.TrustUnknown {
		return err // not a peer the node knows: a wrong address
	}
	e := &IdentityChangeError{Peer: p, Presented: mm.Actual, Addr: mismatchAddr(err, mm.Actual), Trust: trust}
	reason := fmt.Sprintf("its address answers with identity %s", mm.Actual)
	if e.Addr != nil {
		reason = fmt.Sprintf("%s answers with identity %s", e.Addr, mm.Actual)
	}
	if perr := n.cfg.trust(PeerKeyChange{Peer: p, Known: held, Trust: trust, Change: KeyNewIdentity, Reason: reason}); perr != nil {
		e.Refused = true
		var kc *KeyChangeError
		if errors.As(perr, &kc) {
			e.Policy = kc.Policy
		}
	} else {
		n.verdicts.putSuccessor(mm.Actual)
	}
	tc := &TrustChange{Change: KeyNewIdentity, Previous: trust, State: trust, Refused: e.Refused,
		Reason: reason, Presented: mm.Actual, Addr: e.Addr}
	if held != nil {
		tc.Known = held.Fingerprint
	}
	log.Warnw("IDENTITY CHANGED: a known peer's address answers with another identity",
		"peer", p, "trust", trust.String(), "presented", mm.Actual, "addr", e.Addr, "refused", e.Refused)
	n.events.publish(Event{Time: time.Now(), Peer: p, Kind: EventTrustChanged, Trust: tc})
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

// putSuccessor marks p as an identity a trust policy accepted in place of a
// known peer's: the first record the node stores of p is stored as
// TrustChanged (trustAfter).
func (v *trustVerdicts) putSuccessor(p peer.ID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.succ == nil {
		v.succ = map[peer.ID]struct{}{}
	}
	v.succ[p] = struct{}{}
}

func (v *trustVerdicts) takeSuccessor(p peer.ID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.succ[p]
	delete(v.succ, p)
	return ok
}
