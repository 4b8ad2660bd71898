package peerstore_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"

	"github.com/p2pkex/p2pkex/peerstore"
)

// BenchmarkCommitUnderLoad is the store's share of issue 15's load without
// the network: 64 peers, each running "exchanges" one after the other —
// about a millisecond of CPU (X25519 operations, standing for an
// exchange's crypto), then the commit of its next epoch — so that the
// CPUs are busy while commits wait for the disk, as in `p2pkex bench
// --concurrency 64`. Each round runs the same count of exchanges on the
// memory store and on bbolt, alternating which goes first; it reports the
// rate ratio bbolt/memory (median of the rounds, and the lowest and
// highest), and the rates. b.N counts rounds.
func BenchmarkCommitUnderLoad(b *testing.B) {
	const (
		peers     = 64
		exchanges = 1500 // per store and round
		ecdhOps   = 10   // per exchange: about 1 ms of CPU here
	)
	ids := make([]peer.ID, peers)
	for i := range ids {
		var err error
		if ids[i], err = test.RandPeerID(); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, st peerstore.Store, epochs []uint64) float64 {
		var next atomic.Int64
		var failed atomic.Pointer[error]
		var wg sync.WaitGroup
		start := time.Now()
		for i := range peers {
			wg.Go(func() {
				priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
				pub := priv.PublicKey()
				for next.Add(1) <= exchanges && failed.Load() == nil {
					for range ecdhOps {
						if _, err := priv.ECDH(pub); err != nil {
							failed.Store(&err)
						}
					}
					epochs[i]++
					s := peerstore.SessionKey{Peer: ids[i], Epoch: epochs[i], Suite: 1, Created: time.Now()}
					rand.Read(s.Key[:])
					if err := st.CommitExchange(peerstore.Commit{Session: s, Seen: time.Now()}); err != nil {
						failed.Store(&err)
					}
				}
			})
		}
		wg.Wait()
		if errp := failed.Load(); errp != nil {
			b.Fatal(*errp)
		}
		return exchanges / time.Since(start).Seconds()
	}
	bolt, err := peerstore.OpenBolt(filepath.Join(b.TempDir(), "store"))
	if err != nil {
		b.Fatal(err)
	}
	defer bolt.Close()
	mem := peerstore.NewMemory()
	defer mem.Close()
	boltEpochs, memEpochs := make([]uint64, peers), make([]uint64, peers)
	var ratios, boltRates, memRates []float64
	round := 0
	for b.Loop() {
		var rb, rm float64
		if round%2 == 0 {
			rm = run(b, mem, memEpochs)
			rb = run(b, bolt, boltEpochs)
		} else {
			rb = run(b, bolt, boltEpochs)
			rm = run(b, mem, memEpochs)
		}
		round++
		ratios, boltRates, memRates = append(ratios, rb/rm), append(boltRates, rb), append(memRates, rm)
	}
	median := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(median(ratios), "bolt/memory")
	b.ReportMetric(slices.Min(ratios), "bolt/memory-min")
	b.ReportMetric(slices.Max(ratios), "bolt/memory-max")
	b.ReportMetric(median(boltRates), "bolt-exchanges/s")
	b.ReportMetric(median(memRates), "memory-exchanges/s")
}
