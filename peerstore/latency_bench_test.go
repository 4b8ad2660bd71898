package peerstore

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkBoltLookupLatency is BenchmarkBoltLookup with every lookup timed
// on its own, so that it reports the tail as well as the mean: p50-ns and
// p99-ns per lookup (the peer's record and active session) in a store of
// benchPeers peers. docs/PERFORMANCE.md quotes p99 against its target.
func BenchmarkBoltLookupLatency(b *testing.B) {
	bs := newBenchStore(b)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		p := bs.peers[pick(i)]
		i++
		t := time.Now()
		if _, err := bs.st.Peer(p); err != nil {
			b.Fatal(err)
		}
		if _, err := bs.st.ActiveSession(p); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	reportLatencies(b, lat)
}

// reportLatencies reports the p50, p99 and largest of lat, one timed
// operation each, as p50-ns, p99-ns and max-ns.
func reportLatencies(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[min(int(float64(len(lat))*q), len(lat)-1)].Nanoseconds()) }
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
}
