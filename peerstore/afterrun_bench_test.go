package peerstore_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// afterRunPeers and afterRunWriters: the store BenchmarkBoltAfterRun
// measures is what 100,000 first contacts leave, committed 64 at a time.
const (
	afterRunPeers   = 100_000
	afterRunWriters = 64
)

// BenchmarkBoltAfterRun measures the bbolt store as a run of first contacts
// leaves it (issue 15: open time and lookups "measured after such a run
// rather than on a synthetic store"): afterRunPeers new peers, each
// committed as the node commits a first contact (node.install: the
// session of epoch 1 and the peer's record, in one CommitExchange), by
// afterRunWriters goroutines at once, so through the group commit, in the
// order they finish, as a loaded responder commits them. The record is a
// real signed exchange-key record of the default suites (one, stored for
// every peer: the store neither parses nor checks it). Unlike
// BenchmarkBoltOpen's store (sorted keys, 10,000 commits per transaction),
// the pages are those of many small transactions in random key order.
//
// The setup logs the build (commits per second and per transaction, syncs
// per commit) and the store's size per peer; Open reports the time of
// OpenBolt alone (open-ms, and first-open-ms: the first of them, the one a
// cold page cache shows), Lookup the latency of the record and active
// session of a random peer (p50-ns, p99-ns), State that of Store.Lookup.
// Lookup and State open the store themselves and report that open too
// (open-ms), and the major page faults (getrusage ru_majflt: pages read
// from disk) of the open (open-majflt) and of their reads (majflt), so
// that a slow tail shows whether the disk was in it, and the latency of
// their first read (first-ns). OpenWithoutWarm, LookupWithoutWarm and
// StateWithoutWarm are the same with peerstore.WithoutWarm, as the
// one-shot commands open the store: to measure one of them cold, run it
// alone (-test.bench 'BoltAfterRun/StateWithoutWarm') after dropping the
// page cache, since each run warms the cache for the next.
//
// With $P2PKEX_AFTERRUN_DIR set, the store is built in that directory
// (with the list of its peers, peers.bin) and kept, and a later run finds
// it there and skips the build: so that the page cache can be dropped
// between the build and the reads (as root: sync; echo 3 >
// /proc/sys/vm/drop_caches), to measure a cold start, and so that two
// builds of the store code can be compared on the same kind of store. A
// store of an older schema is migrated by its first open (Open's first
// open then includes the migration).
func BenchmarkBoltAfterRun(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "store")
	peersFile := ""
	if keep := os.Getenv("P2PKEX_AFTERRUN_DIR"); keep != "" {
		dir, peersFile = filepath.Join(keep, "store"), filepath.Join(keep, "peers.bin")
		if peers, err := readPeers(peersFile); err == nil {
			b.Logf("reusing the store in %s (%d peers)", keep, len(peers))
			afterRunReads(b, dir, peers)
			return
		}
	}
	st, err := peerstore.OpenBolt(dir)
	if err != nil {
		b.Fatal(err)
	}
	id, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	xk, err := protocol.NewExchangeKey(id, protocol.DefaultSuites(), 1, time.Now(), 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	record := xk.Envelope
	fp := protocol.FingerprintOf(record)
	peers := make([]peer.ID, afterRunPeers)
	for i := range peers {
		if peers[i], err = test.RandPeerID(); err != nil {
			b.Fatal(err)
		}
	}

	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range afterRunWriters {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= afterRunPeers || failed.Load() != nil {
					return
				}
				now := time.Now()
				s := peerstore.SessionKey{Peer: peers[i], Epoch: 1, Suite: uint16(protocol.SuiteMLKEM768X25519), Created: now}
				rand.Read(s.Key[:])
				rand.Read(s.ID[:])
				c := peerstore.Commit{Session: s, Seen: now, PeerKey: &peerstore.PeerKey{
					Peer: peers[i], Seq: 1, Record: record, Fingerprint: fp[:],
					Trust: peerstore.TrustFirstUse, FirstSeen: now, LastSeen: now,
				}}
				if err := st.CommitExchange(c); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if errp := failed.Load(); errp != nil {
		b.Fatal(*errp)
	}
	build := time.Since(start)
	batches, commits := peerstore.GroupCommits(st)
	keySyncs := peerstore.KeyFileSyncs(st)
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	var dbBytes, keyBytes int64
	for name, to := range map[string]*int64{peerstore.BoltFileName: &dbBytes, peerstore.KeysFileName: &keyBytes} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		*to = fi.Size()
	}
	b.Logf("built: %d first contacts in %v (%.0f/s), %.1f commits per transaction, %.3f key-file syncs and %.3f store.db syncs per commit",
		commits, build.Round(time.Millisecond), float64(commits)/build.Seconds(), float64(commits)/float64(batches),
		float64(keySyncs)/float64(commits), 2*float64(batches)/float64(commits))
	b.Logf("size: store.db %.1f MB, store.keys %.2f MB, %.0f bytes per known peer (%.0f + %.0f; the record is %d bytes)",
		float64(dbBytes)/1e6, float64(keyBytes)/1e6, float64(dbBytes+keyBytes)/afterRunPeers,
		float64(dbBytes)/afterRunPeers, float64(keyBytes)/afterRunPeers, len(record))
	if peersFile != "" {
		if err := writePeers(peersFile, peers); err != nil {
			b.Fatal(err)
		}
	}
	afterRunReads(b, dir, peers)
}

// afterRunReads runs BenchmarkBoltAfterRun's sub-benchmarks on the store
// in dir, whose peers are peers.
func afterRunReads(b *testing.B, dir string, peers []peer.ID) {
	// $P2PKEX_AFTERRUN_IDLE: how long Lookup and State wait between the
	// open and the reads, as a daemon waits for its first exchanges; on a
	// machine that reclaims idle page cache (docs/performance/store.md),
	// what the open read may be gone by then.
	var idle time.Duration
	if v := os.Getenv("P2PKEX_AFTERRUN_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil {
			b.Fatalf("P2PKEX_AFTERRUN_IDLE: %v", err)
		}
	}
	// Each of Open, Lookup and State runs twice: as the daemon opens the
	// store (with the walk of the state tree, warmState), and with
	// WithoutWarm, as a one-shot command does.
	warmths := []struct {
		suffix string
		opts   []peerstore.BoltOption
	}{{"", nil}, {"WithoutWarm", []peerstore.BoltOption{peerstore.WithoutWarm()}}}
	for _, w := range warmths {
		b.Run("Open"+w.suffix, func(b *testing.B) {
			afterRunOpen(b, dir, w.opts)
		})
	}
	// Lookup: the record and the active session, copied and opened (what a
	// caller of the API's keys or export-key reads); State: Store.Lookup,
	// what an exchange reads of a known peer (its record's state and active
	// epoch, no copy, no key opened).
	for _, c := range []struct {
		name string
		read func(st peerstore.Store, p peer.ID) error
	}{
		{"Lookup", func(st peerstore.Store, p peer.ID) error {
			if _, err := st.Peer(p); err != nil {
				return err
			}
			_, err := st.ActiveSession(p)
			return err
		}},
		{"State", func(st peerstore.Store, p peer.ID) error {
			ps, err := st.Lookup(p)
			if err == nil && (!ps.Record || ps.Epoch == 0) {
				err = fmt.Errorf("Lookup(%s): record %v, epoch %d", p, ps.Record, ps.Epoch)
			}
			return err
		}},
	} {
		for _, w := range warmths {
			b.Run(c.name+w.suffix, func(b *testing.B) {
				afterRunRead(b, dir, peers, w.opts, idle, c.read)
			})
		}
	}
}

// afterRunOpen times OpenBolt(dir, opts...) and Close.
func afterRunOpen(b *testing.B, dir string, opts []peerstore.BoltOption) {
	var total, first time.Duration
	flt0 := majorFaults()
	var firstFlt int64
	for b.Loop() {
		t := time.Now()
		st, err := peerstore.OpenBolt(dir, opts...)
		d := time.Since(t)
		if first == 0 {
			first, firstFlt = d, majorFaults()-flt0
		}
		total += d
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e6, "open-ms")
	b.ReportMetric(float64(first.Nanoseconds())/1e6, "first-open-ms")
	b.ReportMetric(float64(firstFlt), "first-open-majflt")
}

// afterRunRead opens the store in dir with opts, waits idle, and times
// read on peers, one at a time; it reports the open (open-ms), the first
// read (first-ns: with WithoutWarm, the one that faults in the most
// pages) and the latencies of all of them.
func afterRunRead(b *testing.B, dir string, peers []peer.ID, opts []peerstore.BoltOption, idle time.Duration, read func(peerstore.Store, peer.ID) error) {
	runtime.GC() // the build's garbage is not the lookups'
	flt0, t := majorFaults(), time.Now()
	st, err := peerstore.OpenBolt(dir, opts...)
	open, flt1 := time.Since(t), majorFaults()
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if idle != 0 {
		time.Sleep(idle)
	}
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		p := peers[(i*7919)%len(peers)]
		i++
		t := time.Now()
		if err := read(st, p); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.ReportMetric(float64(majorFaults()-flt1), "majflt")
	b.ReportMetric(float64(flt1-flt0), "open-majflt")
	b.ReportMetric(float64(open.Nanoseconds())/1e6, "open-ms")
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[0].Nanoseconds()), "first-ns")
	}
	peerstore.ReportLatencies(b, lat)
}

// writePeers and readPeers keep the peers of a kept store: each ID's
// bytes, after its length in one byte.
func writePeers(path string, peers []peer.ID) error {
	var out []byte
	for _, p := range peers {
		out = append(out, byte(len(p)))
		out = append(out, p...)
	}
	return os.WriteFile(path, out, 0o600)
}

func readPeers(path string) ([]peer.ID, error) {
	in, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var peers []peer.ID
	for len(in) > 0 {
		n := int(in[0])
		if len(in) < 1+n {
			return nil, fmt.Errorf("%s: truncated", path)
		}
		peers = append(peers, peer.ID(in[1:1+n]))
		in = in[1+n:]
	}
	return peers, nil
}
