package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
)

// metricValue sums the samples of a counter or the counts of a histogram
// named name whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Both nodes record in one registry: the collectors are shared.
	a, b := newNode(t, WithMetrics(reg)), newNode(t, WithMetrics(reg))
	introduce(a, b)
	exchange(t, a, b)
	exchange(t, a, b)

	// Two exchanges, each finished on both sides; the events reach the
	// tracer asynchronously.
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "p2pkex_exchanges_total", map[string]string{"result": "ok"}) == 4
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 4.0, metricValue(t, reg, "p2pkex_exchange_duration_seconds", nil))
	require.Equal(t, 4.0, metricValue(t, reg, "p2pkex_notices_total", map[string]string{"direction": "sent", "type": "START"})+
		metricValue(t, reg, "p2pkex_notices_total", map[string]string{"direction": "sent", "type": "CONTINUE"}))
	require.Equal(t, 2.0, metricValue(t, reg, "p2pkex_notices_total", map[string]string{"direction": "received", "type": "START"}))
	require.Positive(t, metricValue(t, reg, "p2pkex_notice_bytes_total", map[string]string{"direction": "sent", "type": "PART"}))
	// Phase 2 ran only in the first exchange (both keys travelled).
	require.Equal(t, 4.0, metricValue(t, reg, "p2pkex_phase_duration_seconds", map[string]string{"phase": "1"}))
	require.Equal(t, 4.0, metricValue(t, reg, "p2pkex_phase_duration_seconds", map[string]string{"phase": "3"}))

	// libp2p's own metrics went to the registry too.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var libp2pMetrics bool
	for _, mf := range mfs {
		libp2pMetrics = libp2pMetrics || strings.HasPrefix(mf.GetName(), "libp2p_")
	}
	require.True(t, libp2pMetrics, "no libp2p_ metrics in the registry")
}

func TestExchangeResult(t *testing.T) {
	require.Equal(t, "ok", ExchangeResult(nil))
	require.Equal(t, "busy", ExchangeResult(protocol.ErrBusy))
	require.Equal(t, "timeout", ExchangeResult(protocol.ErrTimeout))
	require.Equal(t, "closed", ExchangeResult(ErrClosed))
	require.Equal(t, "error", ExchangeResult(protocol.ErrMalformed))
	require.Equal(t, "refused", ExchangeResult(protocol.ErrKeyRejected))
	require.Equal(t, "refused", ExchangeResult(fmt.Errorf("phase 2: %w", protocol.ErrRollback)))
	require.Equal(t, "refused", ExchangeResult(fmt.Errorf("open stream: %w", &IdentityChangeError{Refused: true})))
	require.Equal(t, "refused", ExchangeResult(fmt.Errorf("phase 1: %w", protocol.ErrDowngrade)))
}

// Without WithMetrics the node has no tracer and runs as before.
func TestNoMetrics(t *testing.T) {
	a := newNode(t)
	require.Nil(t, a.cfg.metrics)
}
