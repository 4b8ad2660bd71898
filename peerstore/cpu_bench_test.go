package peerstore_test

import (
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/p2pkex/p2pkex/internal/procstat"
	"github.com/p2pkex/p2pkex/peerstore"
)

// BenchmarkStoreCPU is the store's CPU per exchange as the responder of
// `p2pkex bench --concurrency 64` (keys known) pays it: 64 known peers
// (a 1,400-byte record each), each running exchanges one after the other,
// each exchange the store calls of the node's responder path — Lookup
// twice (admission, then the machine's record state and epoch; since the
// machine takes admission's read for an exchange that follows a commit in
// flight, the bench's responder makes about 1.2 per exchange, and two are
// the bound), then CommitExchange with no new record — and nothing else,
// so that the
// process's CPU is the store's. Each round runs the same count on the
// memory store and on bbolt, alternating which goes first; it reports the
// CPU per exchange of each (median of the rounds) and the median of the
// rounds' differences, bbolt minus memory: what bbolt adds to every
// exchange. b.N counts rounds.
func BenchmarkStoreCPU(b *testing.B) {
	const (
		peers      = 64
		exchanges  = 3000 // per store and round
		recordSize = 1400
	)
	ids := randPeerIDs(b, peers)
	setup := func(st peerstore.Store, epochs []uint64) {
		now := time.Now()
		for i, p := range ids {
			rec := make([]byte, recordSize)
			rand.Read(rec)
			pk := &peerstore.PeerKey{Peer: p, Seq: 1, Record: rec, Fingerprint: rec[:34], Trust: peerstore.TrustFirstUse, FirstSeen: now, LastSeen: now}
			epochs[i] = 1
			s := peerstore.SessionKey{Peer: p, Epoch: 1, Suite: 1, Created: now}
			rand.Read(s.Key[:])
			if err := st.CommitExchange(peerstore.Commit{Session: s, PeerKey: pk, Seen: now}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// round returns the process's CPU time per exchange, in µs.
	round := func(st peerstore.Store, epochs []uint64) float64 {
		cpu0 := procstat.CPU()
		perPeer(b, exchanges, epochs, func(i int, epoch uint64) error {
			p := ids[i]
			for range 2 {
				if _, err := st.Lookup(p); err != nil {
					return err
				}
			}
			now := time.Now()
			s := peerstore.SessionKey{Peer: p, Epoch: epoch, Suite: 1, Created: now}
			rand.Read(s.Key[:])
			return st.CommitExchange(peerstore.Commit{Session: s, Seen: now})
		})
		return float64(procstat.CPU()-cpu0) / float64(time.Microsecond) / exchanges
	}
	memCPU, boltCPU := alternateStores(b, peers, setup, round)
	diffs := make([]float64, len(memCPU))
	for i := range diffs {
		diffs[i] = boltCPU[i] - memCPU[i]
	}
	b.ReportMetric(median(diffs), "bolt-minus-memory-cpu-µs/exch")
	b.ReportMetric(slices.Min(diffs), "bolt-minus-memory-min")
	b.ReportMetric(slices.Max(diffs), "bolt-minus-memory-max")
	b.ReportMetric(median(boltCPU), "bolt-cpu-µs/exch")
	b.ReportMetric(median(memCPU), "memory-cpu-µs/exch")
}
