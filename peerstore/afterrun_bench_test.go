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
// OpenBolt alone (open-ms), Lookup the latency of the record and active
// session of a random peer (p50-ns, p99-ns).
func BenchmarkBoltAfterRun(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "store")
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

	b.Run("Open", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			t := time.Now()
			st, err := peerstore.OpenBolt(dir)
			total += time.Since(t)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e6, "open-ms")
		b.ReportMetric(float64(dbBytes+keyBytes)/afterRunPeers, "bytes/peer")
	})
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
		b.Run(c.name, func(b *testing.B) {
			st, err := peerstore.OpenBolt(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			lat := make([]time.Duration, 0, b.N)
			runtime.GC() // the build's garbage is not the lookups'
			i := 0
			for b.Loop() {
				p := peers[(i*7919)%afterRunPeers]
				i++
				t := time.Now()
				if err := c.read(st, p); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			peerstore.ReportLatencies(b, lat)
		})
	}
}
