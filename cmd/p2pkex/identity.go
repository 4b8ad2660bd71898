package main

// A known peer's address answering with another identity (node/identity.go):
// how the commands that dial a peer tell the user, and go on when the trust
// policy allows it.

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/node"
)

// reach connects to pi. When pi's address answers with another identity
// and the trust policy allows the change, reach calls warn with the
// warning line and the identity that answered, connects to that identity
// and returns it; otherwise it returns pi.ID. Errors are one line a user
// can act on.
func reach(ctx context.Context, n *node.Node, pi *peer.AddrInfo, warn func(line string, presented peer.ID)) (peer.ID, error) {
	p := pi.ID
	clearBackoff(n, p)
	err := n.Connect(ctx, *pi)
	var ice *node.IdentityChangeError
	if errors.As(err, &ice) {
		if ice.Refused {
			return "", identityRefused(ice)
		}
		warn(identityWarning(ice.Peer, ice.Trust, ice.Presented, ice.Addr, false), ice.Presented)
		next := peer.AddrInfo{ID: ice.Presented, Addrs: pi.Addrs}
		if ice.Addr != nil {
			next.Addrs = []ma.Multiaddr{ice.Addr}
		}
		clearBackoff(n, ice.Presented)
		p, err = ice.Presented, n.Connect(ctx, next)
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("cannot reach %s: timed out", p)
		}
		return "", fmt.Errorf("cannot reach %s: %s", p, shortDialError(err))
	}
	return p, nil
}

// clearBackoff forgets the failed dials to p: the user asked for this one,
// as kubo's "ipfs swarm connect" does.
func clearBackoff(n *node.Node, p peer.ID) {
	if sw, ok := n.Host().Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}

// identityRefused is the error of a refused identity change, one line.
func identityRefused(e *node.IdentityChangeError) error {
	return fmt.Errorf("%s; ask the peer's owner: if the node was reinstalled, exchange with %s and compare safety numbers (\"p2pkex verify %s\")",
		e, e.Presented, e.Presented)
}

// identityWarning is the line the daemon and the dialling command print
// when a known peer's address answers with another identity.
func identityWarning(p peer.ID, trust fmt.Stringer, presented peer.ID, addr ma.Multiaddr, refused bool) string {
	where := "an address"
	if addr != nil {
		where = "the address " + addr.String()
	}
	what := fmt.Sprintf("WARNING: IDENTITY CHANGED: %s of %s peer %s answers with another identity, %s", where, trust, p, presented)
	if refused {
		return what + "; REFUSED. Ask the peer's owner; compare safety numbers with \"p2pkex verify " + presented.String() + "\""
	}
	return what + "; allowed by the trust policy, going on with it (marked changed). Compare safety numbers and confirm with \"p2pkex verify --confirm " + presented.String() + "\""
}
