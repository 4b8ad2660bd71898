package peerstore_test

import (
	"crypto/rand"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"

	"github.com/p2pkex/p2pkex/internal/procstat"
	"github.com/p2pkex/p2pkex/peerstore"
)

// BenchmarkStoreCPU is the store's CPU per exchange as the responder of
// `p2pkex bench --concurrency 64` (keys known) pays it: 64 known peers
// (a 1,400-byte record each), each running exchanges one after the other,
// each exchange the store calls of the node's responder path — Peer twice
// (admission, then the machine's known record), ActiveSession, then
// CommitExchange with no new record — and nothing else, so that the
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
	ids := make([]peer.ID, peers)
	for i := range ids {
		var err error
		if ids[i], err = test.RandPeerID(); err != nil {
			b.Fatal(err)
		}
	}
	setup := func(st peerstore.Store) []uint64 {
		epochs := make([]uint64, peers)
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
		return epochs
	}
	// run returns the process's CPU time per exchange.
	run := func(b *testing.B, st peerstore.Store, epochs []uint64) time.Duration {
		var next atomic.Int64
		var failed atomic.Pointer[error]
		var wg sync.WaitGroup
		cpu0 := procstat.CPU()
		for i := range peers {
			wg.Go(func() {
				p := ids[i]
				fail := func(err error) { failed.Store(&err) }
				for next.Add(1) <= exchanges && failed.Load() == nil {
					for range 2 {
						if _, err := st.Peer(p); err != nil {
							fail(err)
						}
					}
					act, err := st.ActiveSession(p)
					if err != nil {
						fail(err)
						continue
					}
					clear(act.Key[:])
					epochs[i]++
					now := time.Now()
					s := peerstore.SessionKey{Peer: p, Epoch: epochs[i], Suite: 1, Created: now}
					rand.Read(s.Key[:])
					if err := st.CommitExchange(peerstore.Commit{Session: s, Seen: now}); err != nil {
						fail(err)
					}
				}
			})
		}
		wg.Wait()
		if errp := failed.Load(); errp != nil {
			b.Fatal(*errp)
		}
		return (procstat.CPU() - cpu0) / exchanges
	}
	bolt, err := peerstore.OpenBolt(filepath.Join(b.TempDir(), "store"))
	if err != nil {
		b.Fatal(err)
	}
	defer bolt.Close()
	mem := peerstore.NewMemory()
	defer mem.Close()
	boltEpochs, memEpochs := setup(bolt), setup(mem)
	var diffs, boltCPU, memCPU []float64
	round := 0
	for b.Loop() {
		var cb, cm time.Duration
		if round%2 == 0 {
			cm = run(b, mem, memEpochs)
			cb = run(b, bolt, boltEpochs)
		} else {
			cb = run(b, bolt, boltEpochs)
			cm = run(b, mem, memEpochs)
		}
		round++
		us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		diffs, boltCPU, memCPU = append(diffs, us(cb-cm)), append(boltCPU, us(cb)), append(memCPU, us(cm))
	}
	median := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(median(diffs), "bolt-minus-memory-cpu-µs/exch")
	b.ReportMetric(slices.Min(diffs), "bolt-minus-memory-min")
	b.ReportMetric(slices.Max(diffs), "bolt-minus-memory-max")
	b.ReportMetric(median(boltCPU), "bolt-cpu-µs/exch")
	b.ReportMetric(median(memCPU), "memory-cpu-µs/exch")
}
