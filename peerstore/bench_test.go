package peerstore

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"

	"github.com/p2pkex/p2pkex/internal/procstat"
)

// benchPeers is the size of the stores the benchmarks run on.
const benchPeers = 100_000

// benchRecordSize is about the size of a signed exchange-key record of the
// default suite (an X-Wing public key is 1216 bytes).
const benchRecordSize = 1400

type benchStore struct {
	st     Store
	dir    string
	peers  []peer.ID
	epochs []uint64 // active epoch per peer
}

// newBenchStore fills a bbolt store in b.TempDir with benchPeers peers, each
// with a record and one session, in large transactions.
func newBenchStore(b *testing.B) *benchStore {
	b.Helper()
	start := time.Now()
	dir := b.TempDir()
	st, err := OpenBolt(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	bs := &benchStore{st: st, dir: dir, peers: make([]peer.ID, benchPeers), epochs: make([]uint64, benchPeers)}
	for i := range bs.peers {
		bs.peers[i] = test.RandPeerIDFatal(b)
		bs.epochs[i] = 1
	}
	// Loading in key order writes each page once; random order would rewrite
	// most of the file in every batch.
	slices.Sort(bs.peers)
	record := make([]byte, benchRecordSize)
	rand.Read(record)
	now := time.Now()
	const batch = 10_000
	commits := make([]Commit, 0, batch)
	for i, p := range bs.peers {
		commits = append(commits, Commit{
			Session: benchSession(p, 1, now),
			PeerKey: &PeerKey{Peer: p, Seq: 1, Record: record, Fingerprint: record[:34], Trust: TrustFirstUse},
			Seen:    now,
		})
		if len(commits) == batch || i == len(bs.peers)-1 {
			if err := bulkCommit(st, commits); err != nil {
				b.Fatal(err)
			}
			commits = commits[:0]
		}
	}
	fi, err := os.Stat(filepath.Join(dir, BoltFileName))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d peers, %.0f MB file, %v", benchPeers, float64(fi.Size())/1e6, time.Since(start).Round(time.Millisecond))
	return bs
}

// bulkCommit runs many commits in one transaction; only the benchmarks'
// setup uses it.
func bulkCommit(st Store, cs []Commit) error {
	s := st.(*boltStore)
	return s.write("", func(w *writeTx) error {
		for i := range cs {
			if err := checkCommit(&cs[i]); err != nil {
				return err
			}
			if err := commitTx(w, &cs[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func benchSession(p peer.ID, epoch uint64, now time.Time) SessionKey {
	s := SessionKey{Peer: p, Epoch: epoch, Suite: 0x0a, Created: now}
	rand.Read(s.Key[:])
	rand.Read(s.ID[:])
	return s
}

// pick spreads the iterations over the peers in an order unrelated to the
// key order.
func pick(i int) int { return (i * 7919) % benchPeers }

// BenchmarkBoltLookup is what sending a message costs the store: the peer's
// record and active session.
func BenchmarkBoltLookup(b *testing.B) {
	bs := newBenchStore(b)
	i := 0
	for b.Loop() {
		p := bs.peers[pick(i)]
		i++
		if _, err := bs.st.Peer(p); err != nil {
			b.Fatal(err)
		}
		if _, err := bs.st.ActiveSession(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBoltCommit is the end of an exchange: one new epoch, synced to
// disk, without (Session) and with (Record) a new peer record.
func BenchmarkBoltCommit(b *testing.B) {
	bs := newBenchStore(b)
	record := make([]byte, benchRecordSize)
	rand.Read(record)
	i := 0
	run := func(b *testing.B, withRecord bool) {
		for b.Loop() {
			j := pick(i)
			i++
			p := bs.peers[j]
			bs.epochs[j]++
			c := Commit{Session: benchSession(p, bs.epochs[j], time.Now()), Seen: time.Now()}
			if withRecord {
				c.PeerKey = &PeerKey{Peer: p, Seq: bs.epochs[j], Record: record, Fingerprint: record[:34], Trust: TrustFirstUse}
			}
			if err := bs.st.CommitExchange(c); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("Session", func(b *testing.B) { run(b, false) })
	b.Run("Record", func(b *testing.B) { run(b, true) })
}

// BenchmarkBoltOpen is a restart: close the store and open it again.
func BenchmarkBoltOpen(b *testing.B) {
	bs := newBenchStore(b)
	st := bs.st
	for b.Loop() {
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		var err error
		if st, err = OpenBolt(bs.dir); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { st.Close() })
}

// BenchmarkBoltCommitParallel is the end of 64 exchanges in flight: 64
// goroutines committing new epochs of peers of their own at once, which
// group commit (batch.go) puts in shared transactions. It reports the
// commits per transaction and the fdatasyncs per commit (of the key file,
// and in all).
func BenchmarkBoltCommitParallel(b *testing.B) {
	dir := b.TempDir()
	st, err := OpenBolt(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	s := st.(*boltStore)
	var next atomic.Uint64
	pageWrites := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	writes0 := pageWrites()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p, err := test.RandPeerID()
		if err != nil {
			b.Error(err)
			return
		}
		var epoch uint64
		for pb.Next() {
			epoch++
			next.Add(1)
			if err := st.CommitExchange(Commit{Session: benchSession(p, epoch, time.Now()), Seen: time.Now()}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	if s.batch.batches > 0 {
		b.ReportMetric(float64(s.batch.commits)/float64(s.batch.batches), "commits/tx")
		// bbolt syncs store.db twice per transaction (data pages, then
		// the meta page); the key file's syncs are counted.
		b.ReportMetric(float64(s.keys.syncs.Load())/float64(s.batch.commits), "keysyncs/commit")
		b.ReportMetric((float64(s.keys.syncs.Load())+2*float64(s.batch.batches))/float64(s.batch.commits), "syncs/commit")
		// Pages bbolt wrote (each dirty page once per transaction, the
		// freelist and the meta page included).
		b.ReportMetric(float64(pageWrites()-writes0)/float64(s.batch.commits), "pagewrites/commit")
	}
}

// BenchmarkBoltCommitPaced is the store's side of `p2pkex bench
// --concurrency 64` on a quiet machine, without the CPU load: 64 peers,
// each committing its next epoch every 40 ms or so (about 1,500 commits a
// second in all, the bench's rate there; docs/PERFORMANCE.md), so that
// commits arrive as they do under the load while the store's own CPU is
// the process's. It reports the process's CPU per commit (the syncs'
// kernel time included), the commits per transaction, the syncs per
// commit and the commit's latency (p50). b.N counts commits.
func BenchmarkBoltCommitPaced(b *testing.B) {
	const (
		peers    = 64
		interval = 40 * time.Millisecond
	)
	st, err := OpenBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	s := st.(*boltStore)
	ids := make([]peer.ID, peers)
	for i := range ids {
		ids[i] = test.RandPeerIDFatal(b)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, peers)
	b.ResetTimer()
	cpu0 := procstat.CPU()
	var wg sync.WaitGroup
	for i := range peers {
		wg.Go(func() {
			// Spread the peers' first commits over one interval.
			time.Sleep(time.Duration(i) * interval / peers)
			for epoch := uint64(1); next.Add(1) <= int64(b.N); epoch++ {
				start := time.Now()
				if err := st.CommitExchange(Commit{Session: benchSession(ids[i], epoch, start), Seen: start}); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(start))
				time.Sleep(interval)
			}
		})
	}
	wg.Wait()
	cpu := procstat.CPU() - cpu0
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	if s.batch.batches > 0 && len(all) > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(s.batch.commits), "cpu-µs/commit")
		b.ReportMetric(float64(s.batch.commits)/float64(s.batch.batches), "commits/tx")
		b.ReportMetric((float64(s.keys.syncs.Load())+2*float64(s.batch.batches))/float64(s.batch.commits), "syncs/commit")
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "ms-p50")
	}
}

// BenchmarkFdatasync is what one sync costs the process on the file system
// of the test's temporary directory: a 4 KiB page overwritten in a 4 MiB
// file, then fdatasync, as bbolt and the key file do at every commit. It
// reports the process's CPU per sync (the kernel's share of it mostly):
// the cost that the group commit divides among the commits of a batch.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.CreateTemp(b.TempDir(), "sync")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 4<<20)); err != nil {
		b.Fatal(err)
	}
	if err := fdatasync(f); err != nil {
		b.Fatal(err)
	}
	page := make([]byte, 4096)
	rand.Read(page)
	cpu0 := procstat.CPU()
	i := 0
	for b.Loop() {
		if _, err := f.WriteAt(page, int64(i%1024)*4096); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64((procstat.CPU()-cpu0).Microseconds())/float64(i), "cpu-µs/sync")
}

// BenchmarkBoltCommitBatch is the commits' own work in the transactions of
// the group commit at 64 exchanges in flight (batch.go): 64 known peers,
// each with a stored record of benchRecordSize bytes and KeepEpochs
// epochs, commit their next epoch, 64 commits to a transaction. KeysKnown
// brings no record (the common case: the commit keeps the stored record
// and prunes the oldest epoch); SameRecord brings the record the store
// holds (the peer sent it again); NewRecord brings a new one (a rotation:
// the record is rewritten). bbolt's syncs are off (the group commit's
// benchmarks above count them): what is left is CPU, and cpu-ns/op counts
// the process's. b.N counts commits.
func BenchmarkBoltCommitBatch(b *testing.B) {
	const peers = 64
	for _, kind := range []string{"KeysKnown", "SameRecord", "NewRecord"} {
		b.Run(kind, func(b *testing.B) {
			st, err := OpenBolt(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			s := st.(*boltStore)
			s.db.NoSync = true
			ids := make([]peer.ID, peers)
			records := make([][]byte, peers)
			seqs := make([]uint64, peers)
			epochs := make([]uint64, peers)
			now := time.Now()
			var cs []Commit
			for i := range ids {
				ids[i] = test.RandPeerIDFatal(b)
				records[i] = make([]byte, benchRecordSize)
				rand.Read(records[i])
				seqs[i] = 1
				for range KeepEpochs {
					epochs[i]++
					cs = append(cs, Commit{
						Session: benchSession(ids[i], epochs[i], now),
						PeerKey: &PeerKey{Peer: ids[i], Seq: 1, Record: records[i], Fingerprint: records[i][:34], Trust: TrustFirstUse},
						Seen:    now,
					})
				}
			}
			if err := bulkCommit(st, cs); err != nil {
				b.Fatal(err)
			}
			cs = cs[:0]
			b.ReportAllocs()
			cpu0 := procstat.CPU()
			i := 0
			for b.Loop() {
				j := i % peers
				i++
				epochs[j]++
				c := Commit{Session: benchSession(ids[j], epochs[j], now), Seen: now}
				switch kind {
				case "SameRecord":
					c.PeerKey = &PeerKey{Peer: ids[j], Seq: seqs[j], Record: records[j], Fingerprint: records[j][:34], Trust: TrustFirstUse}
				case "NewRecord":
					seqs[j]++
					c.PeerKey = &PeerKey{Peer: ids[j], Seq: seqs[j], Record: records[j], Fingerprint: records[j][:34], Trust: TrustFirstUse}
				}
				cs = append(cs, c)
				if len(cs) == peers {
					if err := bulkCommit(st, cs); err != nil {
						b.Fatal(err)
					}
					cs = cs[:0]
				}
			}
			if err := bulkCommit(st, cs); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64((procstat.CPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
