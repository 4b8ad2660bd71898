package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// Option configures a Node.
type Option func(*config) error

// TrustPolicy decides whether a peer's newly received exchange-key record is
// accepted (trust.go: TrustTOFU, TrustStrict, TrustAcceptAll). An error
// refuses the record and aborts the exchange with KEY_REJECTED.
type TrustPolicy func(p PeerKeyChange) error

// PeerKeyChange is what a TrustPolicy decides on.
type PeerKeyChange struct {
	Peer peer.ID
	// Known is the record the node held, even if expired (nil on first
	// contact); Trust is the peer's trust state (TrustUnknown on first
	// contact).
	Known    *protocol.PeerRecord
	Received *protocol.PeerRecord
	Trust    peerstore.TrustState
	// Change classifies Received against Known; Reason says, for
	// KeyUnaccounted, how they differ.
	Change KeyChange
	Reason string
}

type config struct {
	host         host.Host
	store        peerstore.Store
	listen       []ma.Multiaddr
	libp2pOpts   []libp2p.Option
	suites       []protocol.Suite
	noticeSize   int
	phaseTimeout time.Duration
	streamIdle   time.Duration // WithStreamIdleTimeout; 0: a new stream per exchange
	keyLifetime  time.Duration
	rotateAfter  time.Duration
	maxInbound   int
	maxPerPeer   int
	trust        TrustPolicy
	requirePQ    bool // WithRequirePQ
	now          func() time.Time
	mdns         *mdnsConfig   // WithMDNS; nil: off (discovery.go)
	dht          *dhtConfig    // WithDHT; nil: off (discovery.go)
	msg          msgConfig     // messaging.go
	msgKeep      MessageKeeper // WithMessageKeeper; nil: none (msgkeep.go)
	metrics      MetricsTracer // WithMetrics; nil: none (metrics.go)
	// libp2pMetrics: WithMetrics asked for libp2p's metrics too; without
	// it the node's own host runs without them (metrics.go).
	libp2pMetrics bool

	admit admissionConfig // admission.go
}

// Defaults. Every option's default is one of these.
const (
	// DefaultRotateAfter is the age after which the node rotates its
	// exchange key on its own.
	DefaultRotateAfter = 7 * 24 * time.Hour
	// DefaultMaxInbound bounds the inbound exchanges running at once.
	DefaultMaxInbound = 256
	// DefaultMaxInboundPerPeer bounds the inbound exchanges of one peer,
	// running or waiting. Exchanges with one peer never interleave: one
	// runs, and one may wait for it (a peer's next START can overtake the
	// last notice of its previous exchange).
	DefaultMaxInboundPerPeer = 2
)

// DefaultListenAddrs are the addresses a node listens on when it builds its
// own host and no WithListenAddrs is given: TCP and QUIC on every interface,
// ports chosen by the system.
var DefaultListenAddrs = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

func defaults() *config {
	return &config{
		suites:       protocol.DefaultSuites(),
		noticeSize:   protocol.DefaultNoticeSize,
		phaseTimeout: protocol.DefaultPhaseTimeout,
		streamIdle:   DefaultStreamIdleTimeout,
		keyLifetime:  protocol.DefaultRecordLifetime,
		rotateAfter:  DefaultRotateAfter,
		maxInbound:   DefaultMaxInbound,
		maxPerPeer:   DefaultMaxInboundPerPeer,
		trust:        TrustTOFU,
		now:          time.Now,
		admit:        defaultAdmission(), // admission.go
	}
}

// WithHost attaches the exchange to a host the application already runs,
// the way go-libp2p's ping and holepunch services attach to a host. The node
// then neither builds nor closes a host; Close only removes its handler. The
// store's identity must be the host's (an empty store takes the host's key).
// The host keeps its own resource manager: the node does not add its
// service limits to it (SetServiceLimits does, for the application).
//
// To keep the identity a store already holds, build the host from it:
// libp2p.New(libp2p.Identity(key)) with key from the store's Identity
// (see the example); a host with another key fails New with an error
// naming both peer IDs. The node reports another identity answering at a
// peer's address (an *IdentityChangeError) for the dials it makes itself,
// in Connect, Exchange and Send; the application's own dials on the host
// (h.Connect, h.NewStream) get only libp2p's error, which the node never
// sees.
func WithHost(h host.Host) Option {
	return func(c *config) error {
		if h == nil {
			return errors.New("WithHost: nil host")
		}
		c.host = h
		return nil
	}
}

// WithStore sets the store. The caller keeps ownership: Close does not
// close it. Default: a new in-memory store, closed with the node.
func WithStore(s peerstore.Store) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("WithStore: nil store")
		}
		c.store = s
		return nil
	}
}

// WithListenAddrs sets the addresses the node's own host listens on.
// Default DefaultListenAddrs. Ignored with WithHost.
func WithListenAddrs(addrs ...string) Option {
	return func(c *config) error {
		c.listen = c.listen[:0]
		for _, a := range addrs {
			m, err := ma.NewMultiaddr(a)
			if err != nil {
				return fmt.Errorf("listen address %q: %w", a, err)
			}
			c.listen = append(c.listen, m)
		}
		return nil
	}
}

// WithLibp2pOptions passes extra options to libp2p.New when the node builds
// its own host. A libp2p.ResourceManager among them replaces the node's
// (see SetServiceLimits).
func WithLibp2pOptions(opts ...libp2p.Option) Option {
	return func(c *config) error {
		c.libp2pOpts = append(c.libp2pOpts, opts...)
		return nil
	}
}

// WithSuites sets the suites the node offers and accepts, most preferred
// first. Default protocol.DefaultSuites (MLKEM768X25519, then X25519).
func WithSuites(suites ...protocol.Suite) Option {
	return func(c *config) error {
		if len(suites) == 0 {
			return errors.New("WithSuites: no suites")
		}
		for _, s := range suites {
			if !s.Known() {
				return fmt.Errorf("WithSuites: unknown suite %v", s)
			}
		}
		c.suites = suites
		return nil
	}
}

// WithNoticeSize sets the largest notice the node accepts and asks for.
// Default protocol.DefaultNoticeSize (1024 bytes); range
// [protocol.MinNoticeSize, protocol.MaxNoticeSize].
func WithNoticeSize(n int) Option {
	return func(c *config) error {
		if n < protocol.MinNoticeSize || n > protocol.MaxNoticeSize {
			return fmt.Errorf("notice size %d outside [%d, %d]", n, protocol.MinNoticeSize, protocol.MaxNoticeSize)
		}
		c.noticeSize = n
		return nil
	}
}

// WithPhaseTimeout bounds each phase of an exchange. Default
// protocol.DefaultPhaseTimeout (10 s).
func WithPhaseTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("phase timeout must be positive")
		}
		c.phaseTimeout = d
		return nil
	}
}

// WithStreamIdleTimeout sets how long the node keeps its stream to a peer
// after an exchange it started, for its next exchange with that peer
// (default DefaultStreamIdleTimeout, 5 minutes; streams.go). 0 opens a new
// stream for every exchange. Whatever this setting, the node serves a
// peer's next exchange on a stream the peer keeps, for up to
// DefaultStreamIdleTimeout plus a minute.
func WithStreamIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return errors.New("stream idle timeout must not be negative")
		}
		c.streamIdle = d
		return nil
	}
}

// WithKeyRotation sets how long a new exchange-key record is valid
// (default protocol.DefaultRecordLifetime, 30 days) and after what age the
// node rotates it on its own (default DefaultRotateAfter, 7 days). The old
// private key is destroyed by the rotation itself: there is no grace period
// (see Node.RotateExchangeKey for why nothing needs one).
func WithKeyRotation(lifetime, rotateAfter time.Duration) Option {
	return func(c *config) error {
		if lifetime <= 0 || lifetime > protocol.MaxRecordLifetime || rotateAfter <= 0 || rotateAfter >= lifetime {
			return fmt.Errorf("key rotation: need 0 < rotateAfter < lifetime <= %v", protocol.MaxRecordLifetime)
		}
		c.keyLifetime, c.rotateAfter = lifetime, rotateAfter
		return nil
	}
}

// WithInboundLimits bounds the inbound exchanges running at once, in total
// (default DefaultMaxInbound) and per peer (default
// DefaultMaxInboundPerPeer). Exchanges over a limit are refused at once with
// ABORT BUSY. When the node builds its own host, its resource manager holds
// the exchange's service scope to the same limits (see resources.go and
// SetServiceLimits).
func WithInboundLimits(total, perPeer int) Option {
	return func(c *config) error {
		if total < 1 || perPeer < 1 {
			return errors.New("inbound limits must be at least 1")
		}
		c.maxInbound, c.maxPerPeer = total, perPeer
		return nil
	}
}

// WithTrustPolicy sets the policy for received exchange-key records.
// Default TrustTOFU: first contacts and rotations are accepted (a rotation is
// authenticated by the peer's identity key, which the record's signature
// proves); an unaccounted change of a verified peer is refused. Nil restores
// the default. See trust.go.
func WithTrustPolicy(p TrustPolicy) Option {
	return func(c *config) error {
		if p == nil {
			p = TrustTOFU
		}
		c.trust = p
		return nil
	}
}

// WithRequirePQ, when on, makes the node offer and accept only
// post-quantum suites (protocol.Suite.PostQuantum): the classical suites
// are dropped from WithSuites (or the defaults), the node's own
// exchange-key record covers only the post-quantum ones (an older record
// with a classical key is rotated at start), and an exchange with a peer
// that supports none of them fails with protocol.ErrNoCommonSuite.
// WithSuites with only classical suites is then an error of New. Default
// off.
func WithRequirePQ(on bool) Option {
	return func(c *config) error {
		c.requirePQ = on
		return nil
	}
}

// finish checks the options together, once all are applied.
func (c *config) finish() error {
	if c.requirePQ {
		var pq []protocol.Suite
		for _, s := range c.suites {
			if s.PostQuantum() {
				pq = append(pq, s)
			}
		}
		if len(pq) == 0 {
			return fmt.Errorf("WithRequirePQ: none of the suites %v is post-quantum", c.suites)
		}
		c.suites = pq
	}
	return nil
}

// WithClock sets the node's clock, for tests. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("WithClock: nil clock")
		}
		c.now = now
		return nil
	}
}
