package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"

	"github.com/p2pkex/p2pkex/protocol"
)

// Resource limits of the exchange.
//
// Every exchange, inbound or outbound, attaches its stream to the
// resource-manager service protocol.ServiceName and reserves
// protocol.Reservation(noticeSize) bytes for its lifetime
// (protocol.PrepareStream). The node's own counters bound inbound exchanges
// (WithInboundLimits); when the node builds its own host it also configures
// go-libp2p's resource manager so that the same bounds hold for the
// service's streams and memory, whatever reaches the host:
//
//   - in total: total inbound streams running exchanges and as many kept
//     idle between two exchanges (streams.go), and as many outbound streams
//     again, as an allowance for the node's own exchanges; memory for the
//     streams that run exchanges (an idle stream holds none),
//     2 * total * protocol.Reservation(noticeSize);
//   - per peer: perPeer inbound streams (one exchange runs, one may wait,
//     see DefaultMaxInboundPerPeer) and one kept idle, and one outbound
//     stream (the node runs one exchange per peer at a time) and one
//     stream still closing (a new stream to the peer waits until none is,
//     awaitClosing); memory for perPeer + 1 exchanges.
//
// A stream the resource manager refuses for the service is answered like
// one over the node's counters: ABORT BUSY. For that answer to reach a peer
// that floods the node, the protocol's own per-peer stream limit (which
// libp2p checks first, and answers with a bare reset) is raised from
// libp2p's protocol default to its peer default: streams that only wait to
// be refused are then bounded by the peer scope, as any other stream of the
// peer. All other limits are go-libp2p's defaults (rcmgr.DefaultLimits with
// libp2p.SetDefaultServiceLimits, scaled to the machine), as libp2p.New
// would set them.
//
// The node leaves alone a resource manager it did not build: a host passed
// with WithHost keeps its own, and so does a host built with a
// libp2p.ResourceManager option in WithLibp2pOptions. An application that
// runs its own resource manager can add the same limits with
// SetServiceLimits.

// SetServiceLimits adds to limits the service limits of the exchange for
// the given inbound limits (see WithInboundLimits) and notice size, and the
// per-peer limit of its protocol, the way libp2p.SetDefaultServiceLimits
// adds those of libp2p's own services. The service limits do not scale with
// the machine.
func SetServiceLimits(limits *rcmgr.ScalingLimitConfig, total, perPeer, noticeSize int) {
	res := int64(protocol.Reservation(noticeSize))
	limits.AddServiceLimit(protocol.ServiceName, rcmgr.BaseLimit{
		StreamsInbound:  2 * total,
		StreamsOutbound: 2 * total,
		Streams:         4 * total,
		Memory:          2 * int64(total) * res,
	}, rcmgr.BaseLimitIncrease{})
	// One inbound stream more than perPeer: libp2p frees the scope of an
	// inbound stream only when its handler has returned, which can be after
	// the handler handed the peer's slot on and the peer, its next exchange
	// done, started the one after (found by BenchmarkExchangeLoopback: back
	// to back exchanges were refused with BUSY). The node's own counters
	// still admit perPeer. One more each way for a kept stream (streams.go).
	limits.AddServicePeerLimit(protocol.ServiceName, rcmgr.BaseLimit{
		StreamsInbound:  perPeer + 2,
		StreamsOutbound: 2,
		Streams:         perPeer + 4,
		Memory:          int64(perPeer+1) * res,
	}, rcmgr.BaseLimitIncrease{})
	pp, inc := limits.ProtocolPeerBaseLimit, limits.ProtocolPeerLimitIncrease
	pp.StreamsInbound, inc.StreamsInbound = limits.PeerBaseLimit.StreamsInbound, limits.PeerLimitIncrease.StreamsInbound
	pp.Streams, inc.Streams = limits.PeerBaseLimit.Streams, limits.PeerLimitIncrease.Streams
	limits.AddProtocolPeerLimit(protocol.ID, pp, inc)
}

// SetMessageServiceLimits adds to limits the service limits of messaging
// (MessageServiceName) for the given stream limits (see
// WithMessageStreamLimits) and largest message: total inbound streams and
// total outbound ones (the node's own messages), perPeer each per peer, and
// memory for one frame of the largest message per stream. A receiver
// attaches a stream to the service only once the peer is known to share a
// session with it, and reserves memory for the body only once its header
// checked out (messaging.go), so streams of peers without a session never
// count here. The limits do not scale with the machine.
func SetMessageServiceLimits(limits *rcmgr.ScalingLimitConfig, total, perPeer, maxMessage int) {
	frame := int64(MessageHeaderSize + maxMessage + msgTagSize + msgReserveSlack)
	limits.AddServiceLimit(MessageServiceName, rcmgr.BaseLimit{
		StreamsInbound:  total,
		StreamsOutbound: total,
		Streams:         2 * total,
		Memory:          2 * int64(total) * frame,
	}, rcmgr.BaseLimitIncrease{})
	limits.AddServicePeerLimit(MessageServiceName, rcmgr.BaseLimit{
		StreamsInbound:  perPeer,
		StreamsOutbound: perPeer,
		Streams:         2 * perPeer,
		Memory:          2 * int64(perPeer) * frame,
	}, rcmgr.BaseLimitIncrease{})
}

// resourceManager is the libp2p option that gives the node's own host a
// resource manager with the exchange's service limits. It goes after the
// options of WithLibp2pOptions and does nothing when one of them set a
// resource manager. Its metrics are on only when the host's are (see
// libp2pMetrics, which goes before it).
func resourceManager(cfg *config) libp2p.Option {
	return func(lc *libp2p.Config) error {
		if lc.ResourceManager != nil {
			return nil
		}
		limits := rcmgr.DefaultLimits
		libp2p.SetDefaultServiceLimits(&limits)
		SetServiceLimits(&limits, cfg.maxInbound, cfg.maxPerPeer, cfg.noticeSize)
		SetMessageServiceLimits(&limits, cfg.admit.msgStreams, cfg.admit.msgPerPeer, cfg.msg.maxMessage())
		var opts []rcmgr.Option
		if lc.DisableMetrics {
			// Without this the resource manager reports every reservation
			// and stream to Prometheus through a trace, even in a host
			// built with libp2p.DisableMetrics (about 4 % of the CPU of
			// an exchange under load; docs/PERFORMANCE.md).
			opts = append(opts, rcmgr.WithMetricsDisabled())
		}
		mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), opts...)
		if err != nil {
			return fmt.Errorf("resource manager: %w", err)
		}
		lc.ResourceManager = mgr
		cfg.admit.rcmgr = mgr // knownconns.go
		return nil
	}
}
