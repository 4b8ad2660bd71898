package node

import (
	"net"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Connections of known peers (issue 12).
//
// Before the node's admission (admission.go) sees a peer ID, libp2p has
// already decided whether the connection may exist: its resource manager
// bounds inbound connections in total (before the handshake, when the peer
// is not yet known) and its connection manager closes the least valuable
// connections once there are too many. A swarm of fresh identities can fill
// both, and then a known peer's connection is trimmed, and its new one
// refused, whatever slots the node keeps for it. So the node also
//
//   - tags every connection of a known peer in the connection manager
//     (knownPeerTag), so that trimming closes connections of fresh
//     identities first; and
//   - when it built the host's resource manager itself, adds the known
//     peer's remote IP address together with its peer ID to that resource
//     manager's allowlist: a connection from that address that the regular
//     limits refuse is tried against the allowlisted scope instead, and kept
//     only if the handshake shows that peer ID (libp2p checks the pair). An
//     application's own resource manager is left alone, as everywhere.
//
// A peer is known when the store holds its record or a session (storeKnows);
// the node marks it on every new connection of such a peer and after every
// exchange it installs. The allowlist grows by one entry per (peer, IP
// address), at most maxAllowlisted in all; entries are not removed while the
// node runs.

const (
	// knownPeerTag is the connection-manager tag of known peers' connections.
	knownPeerTag = "p2pkex-known"
	// knownPeerTagValue is its value; fresh identities have none.
	knownPeerTagValue = 100
	// maxAllowlisted bounds the allowlist entries the node adds.
	maxAllowlisted = 4096
)

// watchKnownConns marks the connections of known peers as they open.
func (n *Node) watchKnownConns() {
	n.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return
		}
		n.wg.Add(1)
		n.mu.Unlock()
		// Not in the notification: it reads the store.
		go func() {
			defer n.wg.Done()
			if p := c.RemotePeer(); n.storeKnows(p) {
				n.markKnown(p, c)
			}
		}()
	}}
	n.host.Network().Notify(n.notifee)
}

// markKnown tags p's connection c and allowlists its address (see above).
func (n *Node) markKnown(p peer.ID, c network.Conn) {
	if c.Stat().Limited {
		return // a relayed connection: the address is the relay's
	}
	n.host.ConnManager().TagPeer(p, knownPeerTag, knownPeerTagValue)
	if n.allowlist == nil {
		return
	}
	ip, err := manet.ToIP(c.RemoteMultiaddr())
	if err != nil {
		return
	}
	// The key is the raw pair, not the entry's text: this runs after
	// every exchange, and the entry costs a base58 round trip of the peer
	// ID and a multiaddr parse, which only a new pair needs.
	key := string(ip.To16()) + string(p)
	n.mu.Lock()
	_, dup := n.allowlisted[key]
	if dup || len(n.allowlisted) >= maxAllowlisted {
		n.mu.Unlock()
		return
	}
	n.allowlisted[key] = struct{}{}
	n.mu.Unlock()
	entry, err := allowlistEntry(ip, p)
	if err != nil {
		return
	}
	if err := n.allowlist.Add(entry); err != nil {
		log.Debugw("allowlist known peer", "peer", p, "addr", entry, "err", err)
	}
}

// allowlistEntry is the allowlist entry of peer p at ip: /ip4/<ip>/p2p/<p>.
func allowlistEntry(ip net.IP, p peer.ID) (ma.Multiaddr, error) {
	a, err := manet.FromIP(ip)
	if err != nil {
		return nil, err
	}
	c, err := ma.NewComponent("p2p", p.String())
	if err != nil {
		return nil, err
	}
	return a.Encapsulate(c), nil
}

// builtAllowlist returns the allowlist of the resource manager the node
// built for its own host (resources.go), or nil.
func builtAllowlist(cfg *config, h network.Network) *rcmgr.Allowlist {
	if cfg.admit.rcmgr == nil || h.ResourceManager() != cfg.admit.rcmgr {
		return nil
	}
	return rcmgr.GetAllowlist(cfg.admit.rcmgr)
}
