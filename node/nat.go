package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

// # NAT traversal
//
// A node behind a NAT cannot be dialled. It reaches others through a
// circuit relay v2 node with a public address: it reserves a slot on the
// relay (WithStaticRelays), advertises the relay's /p2p-circuit address,
// and peers connect to it through the relay. Such a relayed connection is
// limited (network.ConnStats.Limited): the relay caps its duration and
// bytes. The key exchange and messaging open their streams with
// network.WithAllowLimitedConn, so both run over it. Hole punching (DCUtR)
// then tries to open a direct connection through both NATs; once it
// succeeds, libp2p opens new streams on the direct connection, so the next
// exchange and message use it (the node keeps no exchange stream on a
// limited connection, streams.go).
//
// These options apply only when the node builds its own host; with
// WithHost the application configures its host itself.

// limitedConnReason is the reason given to network.WithAllowLimitedConn for
// the node's streams. An exchange is a few kilobytes and a message at most
// DefaultMaxMessageSize (64 KiB) by default: both fit the relay's default
// limits (DefaultRelayResources); larger messages need a direct connection
// or a relay with a higher data limit.
const limitedConnReason = "p2pkex"

// DefaultRelayResources returns the resource limits WithRelayService runs
// a relay with: go-libp2p's circuit v2 defaults, which fit exchanges and
// messages.
//
//   - Limit.Duration 2 min, Limit.Data 128 KiB: a relayed connection is
//     reset after 2 minutes or after 128 KiB in either direction. An
//     exchange moves a few kilobytes; a peer that needs longer opens a new
//     circuit (or has been upgraded to a direct connection by then).
//   - ReservationTTL 1 h: a reservation lasts an hour; the reserving peer
//     refreshes it.
//   - MaxReservations 128: slots the relay hands out at once.
//   - MaxCircuits 16: relayed connections open at once per peer.
//   - BufferSize 2048 bytes: the relay's copy buffer per direction.
//   - MaxReservationsPerIP 8, MaxReservationsPerASN 32: slots per source
//     address and per autonomous system.
func DefaultRelayResources() relayv2.Resources {
	return relayv2.DefaultResources()
}

// WithRelayService makes the node a circuit relay v2 for other nodes, with
// DefaultRelayResources, and serves AutoNAT (v1 and v2) so that the nodes
// it helps learn their reachability. A relay must be publicly reachable:
// the node declares itself so (libp2p.ForceReachabilityPublic) instead of
// waiting for AutoNAT to confirm it, since go-libp2p starts the relay
// service only on a public node. Default: off.
func WithRelayService() Option {
	return WithRelayResources(DefaultRelayResources())
}

// WithRelayResources is WithRelayService with the given limits.
func WithRelayResources(res relayv2.Resources) Option {
	return func(c *config) error {
		if res.Limit != nil && (res.Limit.Duration <= 0 || res.Limit.Data <= 0) {
			return errors.New("relay resources: limit duration and data must be positive")
		}
		if res.MaxReservations < 1 || res.MaxCircuits < 1 || res.BufferSize < 1 {
			return errors.New("relay resources: reservations, circuits and buffer size must be positive")
		}
		c.libp2pOpts = append(c.libp2pOpts,
			libp2p.EnableRelayService(relayv2.WithResources(res)),
			libp2p.ForceReachabilityPublic(),
			libp2p.EnableNATService(),
			libp2p.EnableAutoNATv2(),
		)
		return nil
	}
}

// WithStaticRelays makes the node use these relays: when AutoNAT finds it
// is not publicly reachable (or WithReachability says so), it reserves a
// slot on them and advertises their /p2p-circuit addresses. When a relay
// goes away (restarted, say), the node reserves a slot again once it is
// back, within StaticRelayPollInterval. It also turns on hole punching
// (WithHolePunching). Default: no relays.
func WithStaticRelays(relays []peer.AddrInfo) Option {
	return func(c *config) error {
		if len(relays) == 0 {
			return errors.New("WithStaticRelays: no relays")
		}
		for _, r := range relays {
			if err := r.ID.Validate(); err != nil {
				return fmt.Errorf("static relay: %w", err)
			}
			if len(r.Addrs) == 0 {
				return fmt.Errorf("static relay %s: no address", r.ID)
			}
		}
		c.libp2pOpts = append(c.libp2pOpts,
			libp2p.EnableAutoRelayWithStaticRelays(relays, autorelay.WithMinInterval(StaticRelayPollInterval)),
			libp2p.EnableHolePunching())
		return nil
	}
}

// StaticRelayPollInterval is how often a node that has fewer relay slots
// than static relays looks at its static relays again (go-libp2p
// autorelay's WithMinInterval; its default, 30 s, is meant for relays
// found on the network). autorelay forgets a relay the moment its
// connection closes and reserves again only when it next looks, so this
// bounds how long a node stays unreachable after its relay restarts: with
// the default it was 30 s (TestNATTraversal, scenario C). Looking costs
// nothing while the node holds its slots, and one dial of the relay (under
// libp2p's dial backoff) while it has none.
const StaticRelayPollInterval = 5 * time.Second

// WithHolePunching turns on hole punching (DCUtR): when a peer connects
// over a relay, both sides try to open a direct connection through their
// NATs. go-libp2p only punches from addresses it considers public. Default:
// off (on with WithStaticRelays).
func WithHolePunching() Option {
	return func(c *config) error {
		c.libp2pOpts = append(c.libp2pOpts, libp2p.EnableHolePunching())
		return nil
	}
}

// WithReachability overrides AutoNAT: network.ReachabilityPublic or
// network.ReachabilityPrivate. A node that knows it is behind a NAT
// reserves relay slots at once instead of waiting for AutoNAT. Default:
// AutoNAT decides.
func WithReachability(r network.Reachability) Option {
	return func(c *config) error {
		switch r {
		case network.ReachabilityPublic:
			c.libp2pOpts = append(c.libp2pOpts, libp2p.ForceReachabilityPublic())
		case network.ReachabilityPrivate:
			c.libp2pOpts = append(c.libp2pOpts, libp2p.ForceReachabilityPrivate())
		default:
			return fmt.Errorf("WithReachability: %v is neither public nor private", r)
		}
		return nil
	}
}

// ConnKind says how the node is connected to a peer.
type ConnKind int

const (
	// NotConnected: no open connection.
	NotConnected ConnKind = iota
	// Direct: at least one connection that is not limited.
	Direct
	// Relayed: only limited (relayed) connections.
	Relayed
)

func (k ConnKind) String() string {
	switch k {
	case Direct:
		return "direct"
	case Relayed:
		return "relayed"
	default:
		return "not connected"
	}
}

// Connection returns how the node is connected to p now. New streams use
// a direct connection when there is one.
func (n *Node) Connection(p peer.ID) ConnKind {
	kind := NotConnected
	for _, c := range n.host.Network().ConnsToPeer(p) {
		if !c.Stat().Limited {
			return Direct
		}
		kind = Relayed
	}
	return kind
}

// autorelayTag is the tag go-libp2p's autorelay protects the connection to
// a relay with once it holds a reservation there (p2p/host/autorelay).
const autorelayTag = "autorelay"

// RelayReservations returns the relays the node holds a slot on now (its
// static relays that accepted a reservation), as far as libp2p tells: a
// relay connected now whose connection autorelay protects. autorelay does
// not take the protection back when the connection closes, so a relay it
// reconnected to shows here a moment before its reservation is granted
// (and for as long as it refuses one); the node's circuit addresses
// (Host().Addrs()) say exactly, but autorelay advertises them only for
// relays with public addresses.
func (n *Node) RelayReservations() []peer.ID {
	var out []peer.ID
	for _, p := range n.host.Network().Peers() {
		if n.host.Network().Connectedness(p) == network.Connected && n.host.ConnManager().IsProtected(p, autorelayTag) {
			out = append(out, p)
		}
	}
	return out
}
