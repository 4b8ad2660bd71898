package main

// The peer named is the peer you get (docs/SECURITY.md, "Trust",
// the identity rule): a command that names a peer (/p2p/<ID>, a peer ID) works
// with that peer or fails. Another identity answering at its address is
// never used in its place, under any trust policy: the dial fails with one
// line naming the address, the identity expected and the identity that
// answered, and nothing is exchanged with, sent to or stored for the
// identity that answered. To talk to it, the user names it.

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
)

// reach connects to pi.ID at pi's addresses (or where the node knows it).
// Errors are one line a user can act on.
func reach(ctx context.Context, n *node.Node, pi *peer.AddrInfo) error {
	clearBackoff(n, pi.ID)
	err := n.Connect(ctx, *pi)
	switch {
	case err == nil:
		return nil
	case wrongIdentity(pi, err) != nil:
		return wrongIdentity(pi, err)
	case ctx.Err() != nil:
		return &lineError{fmt.Sprintf("cannot reach %s: timed out", pi.ID), err}
	}
	// The node's error stays behind the line for its trust events.
	return &lineError{fmt.Sprintf("cannot reach %s: %s", pi.ID, dialReason(err)), err} // exchange.go
}

// clearBackoff forgets the failed dials to p: the user asked for this one,
// as kubo's "ipfs swarm connect" does.
func clearBackoff(n *node.Node, p peer.ID) {
	if sw, ok := n.Host().Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}

// wrongIdentityError: the address of the peer named answered with another
// identity.
type wrongIdentityError struct {
	Peer      peer.ID              // named
	Presented peer.ID              // answered
	Addr      ma.Multiaddr         // where; nil if unknown
	Trust     peerstore.TrustState // Peer's trust state (TrustUnknown: not a known peer)
	err       error                // the node's, for its trust events
}

func (e *wrongIdentityError) Unwrap() error { return e.err }

func (e *wrongIdentityError) Error() string {
	at := "its address"
	if e.Addr != nil {
		at = e.Addr.String()
	}
	if e.Trust == peerstore.TrustUnknown {
		return fmt.Sprintf("wrong peer: %s answered as %s, not as %s named; refused, nothing exchanged with or stored for %s (to reach %s, name it)",
			at, e.Presented, e.Peer, e.Presented, e.Presented)
	}
	return fmt.Sprintf("IDENTITY CHANGED: %s answered as %s, not as %s peer %s named; refused, nothing exchanged with or stored for %s; ask %s's owner (to reach %s, name it)",
		at, e.Presented, e.Trust, e.Peer, e.Presented, e.Peer, e.Presented)
}

// wrongIdentity returns the *wrongIdentityError of a dial to pi.ID that
// another identity answered, or nil.
func wrongIdentity(pi *peer.AddrInfo, err error) *wrongIdentityError {
	var ice *node.IdentityChangeError
	if errors.As(err, &ice) {
		return &wrongIdentityError{Peer: ice.Peer, Presented: ice.Presented, Addr: ice.Addr, Trust: ice.Trust, err: err}
	}
	// A peer the node does not know: libp2p's own mismatch error.
	var mm sec.ErrPeerIDMismatch
	if !errors.As(err, &mm) || mm.Actual == "" || mm.Actual == pi.ID {
		return nil
	}
	e := &wrongIdentityError{Peer: pi.ID, Presented: mm.Actual, err: err}
	var de *swarm.DialError
	if errors.As(err, &de) {
		for _, te := range de.DialErrors {
			var m sec.ErrPeerIDMismatch
			if errors.As(te.Cause, &m) && m.Actual == mm.Actual {
				e.Addr = te.Address
				break
			}
		}
	}
	if e.Addr == nil && len(pi.Addrs) == 1 {
		e.Addr = pi.Addrs[0]
	}
	return e
}
