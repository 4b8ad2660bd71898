package node

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pkex/p2pkex/protocol"
)

// MetricsTracer receives what a node measures. The node feeds it from its
// own events (see Subscribe), from one goroutine; implementations need not
// be safe for concurrent use by one node, but a tracer shared by several
// nodes must be. [NewMetricsTracer] is the Prometheus implementation.
type MetricsTracer interface {
	// ExchangeFinished: an exchange ended with result ("ok" or the failure
	// class, see ExchangeResult); took is zero when it failed before its
	// first phase (a stream that did not open, say).
	ExchangeFinished(result string, took time.Duration)
	// PhaseFinished: an exchange left a phase after took.
	PhaseFinished(phase protocol.Phase, took time.Duration)
	// Notice: a notice of the given type and frame size was sent (sent) or
	// received.
	Notice(sent bool, notice string, size int)
	// PeerDiscovered: discovery found a peer by source.
	PeerDiscovered(source DiscoverySource)
	// MessageRefused: an incoming message was refused.
	MessageRefused()
	// TrustEvent: a trust event (EventTrustChanged) of the given change
	// ("first_use", "store_reset", "unaccounted", "identity_changed",
	// "suite_downgrade") and outcome ("accepted" or "refused").
	TrustEvent(change, outcome string)
}

// WithMetrics records the node's metrics with Prometheus in reg: exchanges
// by result, exchange and phase durations, notices and their bytes by
// direction and type, discovered peers, refused messages and trust events
// by change and outcome (all named
// "p2pkex_..."). When the node builds its own host, libp2p's own metrics go
// to reg too (do not also pass libp2p.PrometheusRegisterer). Default: no
// metrics, neither the node's nor libp2p's (see libp2pMetrics).
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *config) error {
		if reg == nil {
			return errors.New("WithMetrics: nil registerer")
		}
		c.metrics = NewMetricsTracer(reg)
		c.libp2pMetrics = true
		if reg != prometheus.DefaultRegisterer {
			c.libp2pOpts = append(c.libp2pOpts, libp2p.PrometheusRegisterer(reg))
		}
		return nil
	}
}

// libp2pMetrics is the libp2p option that turns libp2p's metrics off in the
// node's own host unless they were asked for: by WithMetrics, or by a
// libp2p.PrometheusRegisterer among the options of WithLibp2pOptions (which
// go before it). go-libp2p records metrics by default, into
// prometheus.DefaultRegisterer, whether or not anything collects them, and
// its resource manager then reports every stream and reservation through a
// trace that formats a timestamp each time: together about 5 % of the CPU
// of an exchange under load (docs/PERFORMANCE.md). WithMetricsTracer alone
// does not turn them on: it asks for the node's metrics only.
func libp2pMetrics(cfg *config) libp2p.Option {
	return func(lc *libp2p.Config) error {
		if !cfg.libp2pMetrics && lc.PrometheusRegisterer == nil {
			lc.DisableMetrics = true
		}
		return nil
	}
}

// WithMetricsTracer sends the node's metrics to t. Default: none.
func WithMetricsTracer(t MetricsTracer) Option {
	return func(c *config) error {
		c.metrics = t
		return nil
	}
}

// ExchangeResult classifies how an exchange ended, for metrics: "ok",
// "timeout", "cancelled", "busy" (the peer or this node was over its
// limit), "conflict" (simultaneous start, resolved by the tie-break),
// "aborted" (the peer sent ABORT), "refused" (the trust policy, a rollback
// of the peer's record, another identity answering at the peer's address,
// a suite downgrade: docs/SECURITY.md, "Trust"), "closed" or "error".
func ExchangeResult(err error) string {
	var ae *protocol.AbortError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, protocol.ErrKeyRejected), errors.Is(err, protocol.ErrRollback), errors.Is(err, ErrIdentityChanged),
		errors.Is(err, protocol.ErrDowngrade):
		return "refused"
	case errors.Is(err, protocol.ErrBusy):
		return "busy"
	case errors.Is(err, protocol.ErrConflict):
		return "conflict"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, protocol.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &ae):
		return "aborted"
	}
	return "error"
}

// startMetrics feeds the node's events to its tracer until the node
// closes. Nil-safe: without a tracer it does nothing.
func (n *Node) startMetrics() {
	t := n.cfg.metrics
	if t == nil {
		return
	}
	events, _ := n.Subscribe(4 * DefaultSubscriptionBuffer)
	go feedMetrics(t, events) // ends when the node closes its subscriptions
}

func feedMetrics(t MetricsTracer, events <-chan Event) {
	type running struct{ start, phase time.Time }
	// Exchanges with one peer never interleave: one entry per peer.
	ex := map[peer.ID]*running{}
	for e := range events {
		switch e.Kind {
		case EventStep:
			s := e.Step
			switch s.Kind {
			case protocol.EventPhaseEntered:
				r := ex[e.Peer]
				if r == nil || s.Phase == protocol.Phase1 {
					r = &running{start: e.Time}
					ex[e.Peer] = r
				}
				r.phase = e.Time
			case protocol.EventPhaseLeft:
				if r := ex[e.Peer]; r != nil && !r.phase.IsZero() {
					t.PhaseFinished(s.Phase, e.Time.Sub(r.phase))
					r.phase = time.Time{}
				}
			case protocol.EventNoticeSent, protocol.EventNoticeReceived:
				t.Notice(s.Kind == protocol.EventNoticeSent, noticeName(s), s.Size)
			}
		case EventDone, EventFailed:
			var took time.Duration
			if r := ex[e.Peer]; r != nil {
				took = e.Time.Sub(r.start)
				delete(ex, e.Peer)
			}
			t.ExchangeFinished(ExchangeResult(e.Err), took)
		case EventDiscovered:
			t.PeerDiscovered(e.Source)
		case EventMessageRefused:
			t.MessageRefused()
		case EventTrustChanged:
			if e.Trust != nil {
				t.TrustEvent(e.Trust.Change.label(), trustOutcome(e.Trust))
			}
		}
	}
}

func noticeName(s protocol.Event) string { return s.Notice.String() }

func trustOutcome(c *TrustChange) string {
	if c.Refused {
		return "refused"
	}
	return "accepted"
}

// promTracer is the Prometheus MetricsTracer.
type promTracer struct {
	exchanges   *prometheus.CounterVec
	exchangeDur *prometheus.HistogramVec
	phaseDur    *prometheus.HistogramVec
	notices     *prometheus.CounterVec
	noticeBytes *prometheus.CounterVec
	discovered  *prometheus.CounterVec
	refused     prometheus.Counter
	trust       *prometheus.CounterVec
}

// NewMetricsTracer returns a MetricsTracer that records in reg. Nodes that
// share reg share the collectors (as libp2p's own metrics do).
func NewMetricsTracer(reg prometheus.Registerer) MetricsTracer {
	const ns = "p2pkex"
	durations := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	t := &promTracer{
		exchanges: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "exchanges_total",
			Help: "Key exchanges finished, by result (ok, timeout, busy, aborted, refused, error, ...).",
		}, []string{"result"})),
		exchangeDur: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "exchange_duration_seconds",
			Help: "Time from phase 1 to the end of a key exchange, by result.", Buckets: durations,
		}, []string{"result"})),
		phaseDur: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "phase_duration_seconds",
			Help: "Time spent in each phase of a key exchange.", Buckets: durations,
		}, []string{"phase"})),
		notices: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "notices_total",
			Help: "Notices sent and received, by direction and notice type.",
		}, []string{"direction", "type"})),
		noticeBytes: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "notice_bytes_total",
			Help: "Bytes of notice frames sent and received, by direction and notice type.",
		}, []string{"direction", "type"})),
		discovered: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "discovered_peers_total",
			Help: "Peers found by discovery, by source (mdns, dht).",
		}, []string{"source"})),
		refused: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "messages_refused_total",
			Help: "Incoming messages refused (no key, replay, tampering, ...).",
		})),
		trust: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "trust_events_total",
			Help: "Trust events (first use, store reset, unaccounted change, identity changed, suite downgrade), by change and outcome (accepted, refused).",
		}, []string{"change", "outcome"})),
	}
	return t
}

// register registers c with reg, or returns the collector already
// registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		log.Warnw("metrics: cannot register collector", "err", err)
	}
	return c
}

func (t *promTracer) ExchangeFinished(result string, took time.Duration) {
	t.exchanges.WithLabelValues(result).Inc()
	if took > 0 {
		t.exchangeDur.WithLabelValues(result).Observe(took.Seconds())
	}
}

func (t *promTracer) PhaseFinished(phase protocol.Phase, took time.Duration) {
	t.phaseDur.WithLabelValues(phaseLabel(phase)).Observe(took.Seconds())
}

func (t *promTracer) Notice(sent bool, notice string, size int) {
	dir := "received"
	if sent {
		dir = "sent"
	}
	t.notices.WithLabelValues(dir, notice).Inc()
	t.noticeBytes.WithLabelValues(dir, notice).Add(float64(size))
}

func (t *promTracer) PeerDiscovered(source DiscoverySource) {
	t.discovered.WithLabelValues(source.String()).Inc()
}

func (t *promTracer) MessageRefused() { t.refused.Inc() }

func (t *promTracer) TrustEvent(change, outcome string) {
	t.trust.WithLabelValues(change, outcome).Inc()
}

func phaseLabel(p protocol.Phase) string {
	switch p {
	case protocol.Phase1:
		return "1"
	case protocol.Phase2:
		return "2"
	case protocol.Phase3:
		return "3"
	}
	return p.String()
}
