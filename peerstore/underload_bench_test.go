package peerstore_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
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

// BenchmarkCommitUnderLoad is the store's share of issue 15's load without
// the network: 64 peers, each running "exchanges" one after the other —
// about a millisecond of CPU (X25519 operations, standing for an
// exchange's crypto), then the commit of its epoch — so that the CPUs are
// busy while commits wait for the disk, as in `p2pkex bench --concurrency
// 64`. The commit is pipelined as the node's responder does it
// (node/pipeline.go): it runs in the background while the peer's next
// exchange does its work, and that exchange waits for it only at its end.
// Each round runs the same count of exchanges on the
// memory store and on bbolt, alternating which goes first; it reports the
// rate ratio bbolt/memory (median of the rounds, and the lowest and
// highest), and the rates. b.N counts rounds.
func BenchmarkCommitUnderLoad(b *testing.B) {
	const (
		peers     = 64
		exchanges = 1500 // per store and round
		ecdhOps   = 10   // per exchange: about 1 ms of CPU here
	)
	ids := randPeerIDs(b, peers)
	cpu := map[bool][]float64{} // CPU per exchange of each round, by "is bbolt"
	run := func(st peerstore.Store, epochs []uint64) float64 {
		start, cpu0 := time.Now(), procstat.CPU()
		keys := make([]*ecdh.PrivateKey, peers)
		for i := range keys {
			keys[i], _ = ecdh.X25519().GenerateKey(rand.Reader)
		}
		pending := make([]chan error, peers) // each peer's commit in flight
		perPeer(b, exchanges, epochs, func(i int, epoch uint64) error {
			for range ecdhOps {
				if _, err := keys[i].ECDH(keys[i].PublicKey()); err != nil {
					return err
				}
			}
			if pending[i] != nil {
				if err := <-pending[i]; err != nil {
					return err
				}
			}
			s := peerstore.SessionKey{Peer: ids[i], Epoch: epoch, Suite: 1, Created: time.Now()}
			rand.Read(s.Key[:])
			done := make(chan error, 1)
			pending[i] = done
			go func() { done <- st.CommitExchange(peerstore.Commit{Session: s, Seen: time.Now()}) }()
			return nil
		})
		for _, done := range pending {
			if done != nil {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		}
		rate := exchanges / time.Since(start).Seconds()
		isBolt := fmt.Sprintf("%T", st) == "*peerstore.boltStore"
		cpu[isBolt] = append(cpu[isBolt], float64(procstat.CPU()-cpu0)/exchanges)
		return rate
	}
	memRates, boltRates := alternateStores(b, peers, nil, run)
	ratios := make([]float64, len(memRates))
	for i := range ratios {
		ratios[i] = boltRates[i] / memRates[i]
	}
	b.ReportMetric(median(ratios), "bolt/memory")
	b.ReportMetric(slices.Min(ratios), "bolt/memory-min")
	b.ReportMetric(slices.Max(ratios), "bolt/memory-max")
	cpuRatios := make([]float64, len(cpu[true]))
	for i := range cpuRatios {
		cpuRatios[i] = cpu[true][i] / cpu[false][i]
	}
	b.ReportMetric(median(cpuRatios), "bolt/memory-cpu")
	b.ReportMetric(median(boltRates), "bolt-exchanges/s")
	b.ReportMetric(median(memRates), "memory-exchanges/s")
}

// randPeerIDs returns n new peer IDs.
func randPeerIDs(b *testing.B, n int) []peer.ID {
	ids := make([]peer.ID, n)
	for i := range ids {
		var err error
		if ids[i], err = test.RandPeerID(); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

// perPeer runs exchanges calls of exchange spread over one goroutine per
// peer (len(epochs) of them), each peer's one after the other; exchange
// gets the peer's index and its next epoch. The first error ends the run.
func perPeer(b *testing.B, exchanges int, epochs []uint64, exchange func(i int, epoch uint64) error) {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for i := range epochs {
		wg.Go(func() {
			for next.Add(1) <= int64(exchanges) && failed.Load() == nil {
				epochs[i]++
				if err := exchange(i, epochs[i]); err != nil {
					failed.Store(&err)
				}
			}
		})
	}
	wg.Wait()
	if errp := failed.Load(); errp != nil {
		b.Fatal(*errp)
	}
}

// alternateStores runs round once on a memory store and once on a bbolt
// store per b.Loop round, alternating which goes first, and returns the
// rounds' results of each. Each store has its own epochs, one per peer,
// after setup (if not nil) ran on it.
func alternateStores(b *testing.B, peers int, setup func(st peerstore.Store, epochs []uint64), round func(st peerstore.Store, epochs []uint64) float64) (mem, bolt []float64) {
	boltStore, err := peerstore.OpenBolt(filepath.Join(b.TempDir(), "store"))
	if err != nil {
		b.Fatal(err)
	}
	defer boltStore.Close()
	memStore := peerstore.NewMemory()
	defer memStore.Close()
	boltEpochs, memEpochs := make([]uint64, peers), make([]uint64, peers)
	if setup != nil {
		setup(boltStore, boltEpochs)
		setup(memStore, memEpochs)
	}
	n := 0
	for b.Loop() {
		var rb, rm float64
		if n%2 == 0 {
			rm = round(memStore, memEpochs)
			rb = round(boltStore, boltEpochs)
		} else {
			rb = round(boltStore, boltEpochs)
			rm = round(memStore, memEpochs)
		}
		n++
		mem, bolt = append(mem, rm), append(bolt, rb)
	}
	// How the group commit did: bbolt syncs store.db twice per
	// transaction; the key file's syncs are counted.
	if batches, commits := peerstore.GroupCommits(boltStore); batches > 0 {
		b.ReportMetric(float64(commits)/float64(batches), "bolt-commits/tx")
		b.ReportMetric((float64(peerstore.KeyFileSyncs(boltStore))+2*float64(batches))/float64(commits), "bolt-syncs/commit")
	}
	return mem, bolt
}

func median(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
