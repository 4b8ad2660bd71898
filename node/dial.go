package node

import (
	"context"
	"errors"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	lprotocol "github.com/libp2p/go-libp2p/core/protocol"
	lswarm "github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// Dials the application asked for, and libp2p's dial backoff.
//
// When every dial to a peer's addresses fails, libp2p's swarm refuses to
// dial those addresses again for a while (5 s, growing with each failure,
// up to 5 minutes) and fails at once with "dial backoff". That protects a
// host from hammering a dead peer from its background work; but a peer that
// left and came back at the same address — a restarted daemon — is then
// refused to the application that names it, for seconds to minutes (the
// swarm harness saw it: tools/swarm, cause dial_backoff). Exchange, Send and
// Connect dial only because the application named the peer, so, like
// `ipfs swarm connect`, they do not let the backoff stand: a dial refused by
// it is tried once more as a forced direct dial (network.WithForceDirectDial),
// which ignores the backoff. A forced dial uses only direct addresses; a
// peer reachable only through a relay keeps the first error.

// namedPeerReason is the reason the node gives libp2p for a forced dial.
const namedPeerReason = "p2pkex: the application named the peer"

// dialBackedOff reports whether err is libp2p refusing to dial because of
// its dial backoff.
func dialBackedOff(err error) bool {
	return err != nil && errors.Is(err, lswarm.ErrDialBackoff)
}

// retryForced runs op, and once more with a forced direct dial if libp2p
// refused the first dial because of its backoff. A forced dial that finds
// no direct address returns the first error (the backoff), which says more.
func retryForced(ctx context.Context, p peer.ID, op func(context.Context) error) error {
	err := op(ctx)
	if !dialBackedOff(err) {
		return err
	}
	log.Debugw("dial backoff; dialing the named peer directly", "peer", p, "err", err)
	if err2 := op(network.WithForceDirectDial(ctx, namedPeerReason)); !errors.Is(err2, lswarm.ErrNoGoodAddresses) {
		return err2
	}
	return err
}

// newStream opens a stream of pid to p, on a relayed (limited) connection
// if that is what there is (nat.go), dialing p despite libp2p's dial
// backoff (above).
func (n *Node) newStream(ctx context.Context, p peer.ID, pid lprotocol.ID) (network.Stream, error) {
	var s network.Stream
	err := retryForced(network.WithAllowLimitedConn(ctx, limitedConnReason), p, func(ctx context.Context) (err error) {
		s, err = n.host.NewStream(ctx, p, pid)
		return err
	})
	return s, err
}
