package node

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// Admission of inbound exchanges (issue 12).
//
// A fresh identity costs an attacker nothing, so limits per peer alone let a
// swarm of them take every inbound slot and starve the peers the node
// already works with. The node therefore sorts the peer of every inbound
// exchange into one of two classes before it admits it:
//
//   - known: the store holds the peer's exchange-key record or a session
//     with it, or the node runs an outbound exchange with it (it asked for
//     this peer). Known peers may take any of the WithInboundLimits total.
//   - unknown: everyone else. Unknown peers share what the known peers'
//     reserve (WithKnownReserve) leaves of the total, and within that, each
//     network origin (WithOriginLimit: the IPv4 /24 or IPv6 /48 the
//     connection comes from; the relay's, for a relayed connection) at most
//     a fixed number at once. An unknown peer must finish phase 1 within
//     WithUnknownPhase1Timeout of its stream's arrival (default 2 s), where
//     a known peer gets the phase timeout.
//
// For every peer, the time an exchange waits for the peer's previous one to
// finish (claimInbound) counts against its phase-1 deadline: the deadline
// runs from the moment the stream (or, on a kept stream, its next START)
// arrived.
//
// Every limit is refused at once with ABORT BUSY; nothing queues. The
// counts of refusals by reason are in AdmissionStats.
//
// A message stream is checked before it costs memory (messaging.go,
// handleMessageStream): a peer the node shares no session with, and runs no
// exchange with, has its stream reset at once; otherwise the header is read
// and checked (epoch, key ID) before the body's memory is reserved, under
// the service limits of MessageServiceName (WithMessageStreamLimits).

// Defaults of the admission options.
const (
	// DefaultKnownReserve is how many of the inbound exchange slots only
	// known peers may take (WithKnownReserve), at most a quarter of the
	// total.
	DefaultKnownReserve = 64
	// DefaultMaxInboundPerOrigin bounds the inbound exchanges of unknown
	// peers from one network origin at once (WithOriginLimit).
	DefaultMaxInboundPerOrigin = 16
	// DefaultOriginPrefixV4 and DefaultOriginPrefixV6 are the prefix
	// lengths that make a network origin: an IPv4 /24, an IPv6 /48 (the
	// usual smallest allocations to one site).
	DefaultOriginPrefixV4 = 24
	DefaultOriginPrefixV6 = 48
	// DefaultUnknownPhase1Timeout bounds phase 1 of an unknown peer's
	// inbound exchange, counted from the stream's arrival
	// (WithUnknownPhase1Timeout). Phase 1 is three small notices: an honest
	// peer needs a few round trips.
	DefaultUnknownPhase1Timeout = 2 * time.Second
	// DefaultMaxMessageStreams bounds the inbound message streams that hold
	// a checked header or a body at once (WithMessageStreamLimits).
	DefaultMaxMessageStreams = 128
	// DefaultMaxMessageStreamsPerPeer bounds them per peer; it equals
	// libp2p's default per-protocol, per-peer stream limit.
	DefaultMaxMessageStreamsPerPeer = 16
)

// admissionConfig holds the admission options.
type admissionConfig struct {
	knownReserve   int
	reserveSet     bool // WithKnownReserve given: no cap at a quarter
	perOrigin      int
	v4Bits, v6Bits int
	unknownPhase1  time.Duration
	msgStreams     int
	msgPerPeer     int
	// rcmgr is the resource manager the node built for its own host
	// (resources.go), whose allowlist it may add to (knownconns.go).
	rcmgr network.ResourceManager
}

func defaultAdmission() admissionConfig {
	return admissionConfig{
		knownReserve:  DefaultKnownReserve,
		perOrigin:     DefaultMaxInboundPerOrigin,
		v4Bits:        DefaultOriginPrefixV4,
		v6Bits:        DefaultOriginPrefixV6,
		unknownPhase1: DefaultUnknownPhase1Timeout,
		msgStreams:    DefaultMaxMessageStreams,
		msgPerPeer:    DefaultMaxMessageStreamsPerPeer,
	}
}

// unknownSlots is how many inbound exchanges unknown peers may run at once.
func (c *config) unknownSlots() int {
	reserve := c.admit.knownReserve
	if !c.admit.reserveSet {
		// The default must not swallow a small total (WithInboundLimits).
		reserve = min(reserve, c.maxInbound/4)
	}
	return max(c.maxInbound-reserve, 0)
}

// WithKnownReserve keeps n of the inbound exchange slots (WithInboundLimits'
// total) for known peers: peers whose record or session the store holds.
// Unknown peers share the rest. Default DefaultKnownReserve (64), but at
// most a quarter of the total unless set; n = total admits no inbound
// exchange of an unknown peer at all.
func WithKnownReserve(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return errors.New("known reserve must not be negative")
		}
		c.admit.knownReserve, c.admit.reserveSet = n, true
		return nil
	}
}

// WithOriginLimit bounds the inbound exchanges that unknown peers from one
// network origin run at once (default DefaultMaxInboundPerOrigin, 16). An
// origin is the network of the connection's remote IP address with the
// given prefix lengths (defaults DefaultOriginPrefixV4 = 24 and
// DefaultOriginPrefixV6 = 48); a relayed connection's origin is the relay's.
func WithOriginLimit(perOrigin, v4Bits, v6Bits int) Option {
	return func(c *config) error {
		if perOrigin < 1 {
			return errors.New("origin limit must be at least 1")
		}
		if v4Bits < 8 || v4Bits > 32 || v6Bits < 16 || v6Bits > 128 {
			return fmt.Errorf("origin prefixes /%d, /%d: want IPv4 8..32 and IPv6 16..128", v4Bits, v6Bits)
		}
		c.admit.perOrigin, c.admit.v4Bits, c.admit.v6Bits = perOrigin, v4Bits, v6Bits
		return nil
	}
}

// WithUnknownPhase1Timeout bounds phase 1 of an unknown peer's inbound
// exchange, from the arrival of its stream (or of its START on a kept
// stream) to its NEXT. Default DefaultUnknownPhase1Timeout (2 s); never more
// than the phase timeout (WithPhaseTimeout), which known peers get.
func WithUnknownPhase1Timeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("unknown phase-1 timeout must be positive")
		}
		c.admit.unknownPhase1 = d
		return nil
	}
}

// WithMessageStreamLimits sets the resource-manager limits of the message
// service (MessageServiceName) when the node builds its own host: inbound
// message streams at once, in total and per peer (defaults
// DefaultMaxMessageStreams, 128, and DefaultMaxMessageStreamsPerPeer, 16),
// with memory for that many frames of the largest message, and as much
// again for the node's own outbound messages (SetMessageServiceLimits).
func WithMessageStreamLimits(total, perPeer int) Option {
	return func(c *config) error {
		if total < 1 || perPeer < 1 {
			return errors.New("message stream limits must be at least 1")
		}
		c.admit.msgStreams, c.admit.msgPerPeer = total, perPeer
		return nil
	}
}

// AdmissionStats counts what the node's admission did since it started.
type AdmissionStats struct {
	// Admitted and AdmittedUnknown count inbound exchanges admitted, all and
	// those of unknown peers.
	Admitted, AdmittedUnknown uint64
	// Inbound exchanges refused with BUSY: over the total
	// (WithInboundLimits), over the peer's limit, over the slots unknown
	// peers share (WithKnownReserve), over the origin's limit
	// (WithOriginLimit), or because the peer's previous exchange did not
	// finish before the new one's phase-1 deadline.
	OverTotal, OverPeer, OverUnknown, OverOrigin, SlotWait uint64
	// TimedOut counts admitted inbound exchanges that ran out of time (any
	// phase), TimedOutUnknown those of unknown peers.
	TimedOut, TimedOutUnknown uint64
	// Message streams reset before their body: from peers without any
	// session (MsgNoSession), with a header that is malformed or names a
	// length over the limit (MsgMalformed), or an epoch or key ID the node
	// does not accept (MsgRefusedHeader).
	MsgNoSession, MsgMalformed, MsgRefusedHeader uint64
}

type admissionCounters struct {
	admitted, admittedUnknown                              atomic.Uint64
	overTotal, overPeer, overUnknown, overOrigin, slotWait atomic.Uint64
	timedOut, timedOutUnknown                              atomic.Uint64
	msgNoSession, msgMalformed, msgRefusedHeader           atomic.Uint64
}

// AdmissionStats returns the counts of the node's admission decisions.
func (n *Node) AdmissionStats() AdmissionStats {
	c := &n.admit
	return AdmissionStats{
		Admitted: c.admitted.Load(), AdmittedUnknown: c.admittedUnknown.Load(),
		OverTotal: c.overTotal.Load(), OverPeer: c.overPeer.Load(), OverUnknown: c.overUnknown.Load(),
		OverOrigin: c.overOrigin.Load(), SlotWait: c.slotWait.Load(),
		TimedOut: c.timedOut.Load(), TimedOutUnknown: c.timedOutUnknown.Load(),
		MsgNoSession: c.msgNoSession.Load(), MsgMalformed: c.msgMalformed.Load(),
		MsgRefusedHeader: c.msgRefusedHeader.Load(),
	}
}

// ticket is what admission decided for one inbound exchange; leave gives
// back what it took.
type ticket struct {
	known  bool
	origin netip.Prefix // for unknown peers
	// state is what admission's Lookup read of a peer the store knows
	// (nil otherwise). The exchange's machine reuses it only when nothing
	// but the epoch can have changed since (serve, pipelined exchanges).
	state *peerstore.PeerState
}

// storeKnows reports whether the store holds p's record or a session with
// it: one Lookup, which copies no record and opens no key.
func (n *Node) storeKnows(p peer.ID) bool { return n.storeLookup(p) != nil }

// storeLookup returns what the store holds of p, or nil if it holds
// neither p's record nor a session with it. A store error counts as
// unknown (and is logged): the peer then gets the stricter treatment,
// never the reserve.
func (n *Node) storeLookup(p peer.ID) *peerstore.PeerState {
	st, err := n.store.Lookup(p)
	if err == nil {
		return &st
	}
	if !errors.Is(err, peerstore.ErrNotFound) {
		log.Warnw("admission: look up peer", "peer", p, "err", err)
	}
	return nil
}

// admitLocked admits an inbound exchange of p, counting it, or returns the
// counter of the limit it is over. n.mu is held; t.known may be set here
// (an outbound exchange with p runs: the node asked for this peer).
func (n *Node) admitLocked(p peer.ID, t *ticket) *atomic.Uint64 {
	if n.inbound >= n.cfg.maxInbound {
		return &n.admit.overTotal
	}
	if n.perPeer[p] >= n.cfg.maxPerPeer {
		return &n.admit.overPeer
	}
	if s := n.slots[p]; s != nil && s.outbound {
		t.known = true
	}
	if !t.known {
		if n.unknownInbound >= n.cfg.unknownSlots() {
			return &n.admit.overUnknown
		}
		if n.perOrigin[t.origin] >= n.cfg.admit.perOrigin {
			return &n.admit.overOrigin
		}
		n.unknownInbound++
		n.perOrigin[t.origin]++
		n.admit.admittedUnknown.Add(1)
	}
	n.inbound++
	n.perPeer[p]++
	n.admit.admitted.Add(1)
	return nil
}

// leaveLocked gives back what admitLocked took. n.mu is held.
func (n *Node) leaveLocked(p peer.ID, t *ticket) {
	n.inbound--
	if n.perPeer[p]--; n.perPeer[p] == 0 {
		delete(n.perPeer, p)
	}
	if !t.known {
		n.unknownInbound--
		if n.perOrigin[t.origin]--; n.perOrigin[t.origin] == 0 {
			delete(n.perOrigin, t.origin)
		}
	}
}

// phase1Timeout is the phase-1 budget of an inbound exchange.
func (n *Node) phase1Timeout(known bool) time.Duration {
	if known {
		return n.cfg.phaseTimeout
	}
	return min(n.cfg.admit.unknownPhase1, n.cfg.phaseTimeout)
}

// originOf returns the network origin of a remote address: its first IP
// address masked to v4Bits or v6Bits (an IPv4-mapped IPv6 address counts
// as IPv4). For a relayed connection that is the relay's address. An
// address without an IP (an in-memory transport) has the zero origin, one
// for all such peers.
func originOf(a ma.Multiaddr, v4Bits, v6Bits int) netip.Prefix {
	for _, c := range a {
		if c.Code() != ma.P_IP4 && c.Code() != ma.P_IP6 {
			continue
		}
		ip, ok := netip.AddrFromSlice(c.RawValue())
		if !ok {
			return netip.Prefix{}
		}
		ip = ip.Unmap()
		bits := v6Bits
		if ip.Is4() {
			bits = v4Bits
		}
		pfx, err := ip.Prefix(bits)
		if err != nil {
			return netip.Prefix{}
		}
		return pfx
	}
	return netip.Prefix{}
}

// deadlineStream holds an inbound exchange to its phase-1 deadline: while
// the machine is in phase 1, no deadline Run sets reaches beyond until.
// Run sets its phase deadlines (and the one for writing ABORT) on its own
// goroutine, where reading the machine's phase is safe; the deadline a
// cancellation sets from another goroutine lies in the past, before until,
// and passes without looking at the machine.
type deadlineStream struct {
	protocol.Stream
	until time.Time
	m     *protocol.Machine
}

func (d *deadlineStream) SetDeadline(t time.Time) error {
	if t.After(d.until) && d.m.Phase() <= protocol.Phase1 {
		t = d.until
	}
	return d.Stream.SetDeadline(t)
}

// classify sorts the peer of an inbound stream (outside the node lock: it
// reads the store).
func (n *Node) classify(s network.Stream) *ticket {
	p := s.Conn().RemotePeer()
	if st := n.storeLookup(p); st != nil {
		return &ticket{known: true, state: st}
	}
	return &ticket{origin: originOf(s.Conn().RemoteMultiaddr(), n.cfg.admit.v4Bits, n.cfg.admit.v6Bits)}
}
