package peerstore_test

// Group commit (batch.go): concurrent commits share transactions, and a
// SIGKILL inside a shared transaction loses no answered commit and leaves no
// destroyed secret recoverable.

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/internal/failpoint"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
)

// TestBoltGroupCommit: commits that arrive together are written in fewer
// transactions than there are commits, and every one is there. (Without
// group commit each is a transaction of its own.) A store used one commit
// at a time never makes a leader wait for more callers; concurrent
// commits with a pause between a writer's commits do (without the wait,
// no leader waits).
func TestBoltGroupCommit(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "store"))
	alone := storetest.RandPeerID(t)
	for e := uint64(1); e <= peerstore.KeepEpochs+3; e++ {
		commitEpoch(t, st, alone, e)
	}
	batches, commits := peerstore.GroupCommits(st)
	require.EqualValues(t, peerstore.KeepEpochs+3, batches)
	require.EqualValues(t, batches, commits)
	require.Zero(t, peerstore.GroupCommitWaits(st), "one commit at a time: a leader waited")

	const writers, epochs = 32, 4
	var wg sync.WaitGroup
	errs := make([]error, writers)
	peers := make([]peer.ID, writers)
	start := make(chan struct{})
	for i := range writers {
		peers[i] = storetest.RandPeerID(t)
		wg.Go(func() {
			<-start
			for e := uint64(1); e <= epochs && errs[i] == nil; e++ {
				s := peerstore.SessionKey{Peer: peers[i], Epoch: e, Suite: 1, Created: time.Now()}
				copy(s.Key[:], storetest.RandBytes(t, peerstore.KeySize))
				errs[i] = st.CommitExchange(peerstore.Commit{Session: s, Seen: time.Now()})
				// A writer's next exchange: its cycle is longer than its
				// commit's latency, which leaves the leaders slack to wait.
				time.Sleep(time.Millisecond)
			}
		})
	}
	close(start)
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	b0, c0 := batches, commits
	batches, commits = peerstore.GroupCommits(st)
	batches, commits = batches-b0, commits-c0
	require.EqualValues(t, writers*epochs, commits)
	require.Less(t, batches, commits, "no two commits shared a transaction")
	require.Positive(t, peerstore.GroupCommitWaits(st), "no leader waited for more callers")
	t.Logf("%d commits in %d transactions, %d leaders waited", commits, batches, peerstore.GroupCommitWaits(st))
	for _, p := range peers {
		act, err := st.ActiveSession(p)
		require.NoError(t, err)
		require.EqualValues(t, epochs, act.Epoch)
	}
}

// TestBoltKeyPool: once the pool of synced keys is filled, a commit takes
// its slot from it and costs no sync of the key file before the commit;
// the one sync after it destroys the pruned key and refills the pool. A
// closed store has no key in its key file that nothing names (Close wipes
// the pool). Without the pool a commit that prunes syncs the key file
// twice.
func TestBoltKeyPool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	st := openBolt(t, dir)
	p := storetest.RandPeerID(t)
	for e := uint64(1); e <= peerstore.KeepEpochs+1; e++ {
		commitEpoch(t, st, p, e)
	}
	require.Positive(t, peerstore.KeyPool(st), "the pool is filled after a commit")
	for e := uint64(peerstore.KeepEpochs + 2); e <= peerstore.KeepEpochs+12; e++ {
		before := peerstore.KeyFileSyncs(st)
		commitEpoch(t, st, p, e)
		require.EqualValues(t, 1, peerstore.KeyFileSyncs(st)-before, "epoch %d: key-file syncs of a commit that prunes", e)
	}
	ss, err := st.Sessions(p)
	require.NoError(t, err)
	require.Len(t, ss, peerstore.KeepEpochs)
	require.NoError(t, st.Close())
	unnamed, err := peerstore.UnnamedKeySlots(dir)
	require.NoError(t, err)
	require.Zero(t, unnamed, "keys that nothing names in a closed store")

	// Reopened (clean: no walk), it finds its free slots when it needs
	// them and keeps every session.
	st = openBolt(t, dir)
	commitEpoch(t, st, p, peerstore.KeepEpochs+13)
	q := storetest.RandPeerID(t)
	commitEpoch(t, st, q, 1)
	ss, err = st.Sessions(p)
	require.NoError(t, err)
	require.EqualValues(t, peerstore.KeepEpochs+13, ss[len(ss)-1].Epoch)
	require.NoError(t, st.Close())
	unnamed, err = peerstore.UnnamedKeySlots(dir)
	require.NoError(t, err)
	require.Zero(t, unnamed)
}

// TestBoltGroupCommitWait: how long a leader waits for more callers
// (batch.go): not at all if it leads an idle store, if every caller seen
// lately is queued, if batchFull callers are, or if callers wait for
// their answers as long as their cycle; else half the difference, at most
// maxBatchWait.
func TestBoltGroupCommitWait(t *testing.T) {
	const cycle, lat = 20 * time.Millisecond, 4 * time.Millisecond
	// A leader that found no commit under way waits only after a batch of
	// several callers: commits overlap.
	require.Zero(t, peerstore.WaitBefore(false, 1, 1, 64, cycle, lat), "an idle store's leader waited")
	require.Equal(t, (cycle-lat)/2, peerstore.WaitBefore(false, 5, 1, 64, cycle, lat), "after a batch of five, a leader did not wait")
	require.Zero(t, peerstore.WaitBefore(false, 5, 1, 1, cycle, lat), "its only caller is queued, and the leader waited")
	require.Zero(t, peerstore.WaitBefore(true, 1, peerstore.BatchFull, 1000, cycle, lat), "a full queue's leader waited")
	require.Zero(t, peerstore.WaitBefore(true, 1, 2, 2, cycle, lat), "every caller that could come is queued, and the leader waited")
	require.Zero(t, peerstore.WaitBefore(true, 5, 1, 64, 0, 0), "no cycle known, and the leader waited")
	require.Zero(t, peerstore.WaitBefore(true, 5, 1, 64, lat, lat), "no slack, and the leader waited")
	require.Zero(t, peerstore.WaitBefore(true, 5, 1, 64, lat, cycle), "no slack, and the leader waited")
	require.Equal(t, (cycle-lat)/2, peerstore.WaitBefore(true, 1, 1, 64, cycle, lat))
	require.Equal(t, (cycle-lat)/2, peerstore.WaitBefore(true, 1, 63, 1000, cycle, lat))
	require.Equal(t, peerstore.MaxBatchWait, peerstore.WaitBefore(true, 1, 1, 64, time.Hour, lat))
}

const (
	envBatchChild = "P2PKEX_BATCH_CHILD" // the store directory, in the child
	envBatchPeers = "P2PKEX_BATCH_PEERS" // the peers, comma-separated
	envBatchPause = "P2PKEX_BATCH_PAUSE" // a pause between a writer's commits, if set

	batchTry  = "TRY"  // TRY <peer index> <epoch> <key hex>: about to commit
	batchDone = "DONE" // DONE <peer index> <epoch>: CommitExchange returned nil

	batchEpochs = 40 // epochs each writer of the child tries
)

// TestShredCrashBatchChild is the child of TestShredCrashBatch; run
// directly, it skips. One writer per peer commits epoch after epoch, all at
// once, and reports each commit before it tries it and once it returned;
// the armed failpoint kills it inside a batch.
func TestShredCrashBatchChild(t *testing.T) {
	dir := os.Getenv(envBatchChild)
	if dir == "" {
		t.Skip("child process of TestShredCrashBatch")
	}
	var peers []peer.ID
	for _, s := range strings.Split(os.Getenv(envBatchPeers), ",") {
		p, err := peer.Decode(s)
		require.NoError(t, err)
		peers = append(peers, p)
	}
	st, err := peerstore.OpenBolt(dir)
	require.NoError(t, err)
	// With a pause between its commits a writer has a cycle longer than
	// its commit's latency, so that leaders wait (failpoint BatchWait).
	pause, _ := time.ParseDuration(os.Getenv(envBatchPause))
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...) // unbuffered: each line is out before the next step
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, p := range peers {
		wg.Go(func() {
			<-start
			for e := uint64(peerstore.KeepEpochs + 1); e <= peerstore.KeepEpochs+batchEpochs; e++ {
				s := peerstore.SessionKey{Peer: p, Epoch: e, Suite: 1, Created: time.Now()}
				copy(s.Key[:], storetest.RandBytes(t, peerstore.KeySize))
				say("%s %d %d %x", batchTry, i, e, s.Key[:])
				if err := st.CommitExchange(peerstore.Commit{Session: s, Seen: time.Now()}); err != nil {
					say("ERR %d %d %v", i, e, err)
					return
				}
				say("%s %d %d", batchDone, i, e)
				time.Sleep(pause)
			}
		})
	}
	close(start)
	wg.Wait()
	batches, commits := peerstore.GroupCommits(st)
	t.Fatalf("failpoint %s not reached (%d commits in %d transactions)", os.Getenv(failpoint.EnvVar), commits, batches)
}

// TestShredCrashBatch kills a process inside a group commit of several
// callers: after the writes and before the shared commit, after the
// commit and before the callers were answered and the pruned keys wiped,
// in that wipe before its sync, and while the next leader waits for more
// callers. After reopening, for every writer: each commit it was answered for is
// there; at most the one it was waiting for is there besides; the epochs
// kept are the newest KeepEpochs of what is there; and no key of an epoch
// that is not kept (pruned, or never committed) is recoverable from the
// files.
func TestShredCrashBatch(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("crash tests need SIGKILL")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	// BatchAfterOverwrite: killed in the step after the shared commit that
	// destroys the pruned keys and refills the pool of synced keys (new
	// keys and zeros written to store.keys, not yet synced; shred.go).
	// BatchWait: killed while a leader that was handed the lead waits for
	// more callers (batch.go), the batch before it committed.
	for _, fp := range []string{failpoint.BatchAfterWrite, failpoint.BatchAfterCommit, failpoint.BatchAfterOverwrite, failpoint.BatchWait} {
		t.Run(fp, func(t *testing.T) {
			t.Parallel()
			const writers = 12
			dir := filepath.Join(t.TempDir(), "store")
			st, err := peerstore.OpenBolt(dir)
			require.NoError(t, err)
			peers := make([]peer.ID, writers)
			ids := make([]string, writers)
			keys := make([]map[uint64][]byte, writers) // by writer, by epoch
			for i := range peers {
				peers[i] = storetest.RandPeerID(t)
				ids[i] = peers[i].String()
				keys[i] = map[uint64][]byte{}
				for e := uint64(1); e <= peerstore.KeepEpochs; e++ {
					commitEpoch(t, st, peers[i], e)
				}
				ss, err := st.Sessions(peers[i])
				require.NoError(t, err)
				for _, s := range ss {
					keys[i][s.Epoch] = bytes.Clone(s.Key[:])
				}
			}
			require.NoError(t, st.Close())

			cmd := exec.Command(exe, "-test.run=^TestShredCrashBatchChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envBatchChild+"="+dir, envBatchPeers+"="+strings.Join(ids, ","),
				failpoint.EnvVar+"="+fp)
			if fp == failpoint.BatchWait {
				cmd.Env = append(cmd.Env, envBatchPause+"=2ms")
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.Output()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "child: %s%s", stdout, stderr.String())
			ws, ok := ee.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL,
				"child did not die at %s: %v\n%s%s", fp, err, stdout, stderr.String())

			answered := make([]uint64, writers) // the last epoch each writer was answered for
			tried := make([]uint64, writers)
			sc := bufio.NewScanner(bytes.NewReader(stdout))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) < 3 {
					continue
				}
				i, err1 := strconv.Atoi(f[1])
				e, err2 := strconv.ParseUint(f[2], 10, 64)
				if err1 != nil || err2 != nil || i < 0 || i >= writers {
					continue
				}
				switch f[0] {
				case batchTry:
					k, err := hex.DecodeString(f[3])
					require.NoError(t, err)
					keys[i][e] = k
					tried[i] = max(tried[i], e)
				case batchDone:
					answered[i] = max(answered[i], e)
				case "ERR":
					t.Fatalf("child: commit failed: %s", sc.Text())
				}
			}
			if fp == failpoint.BatchAfterCommit {
				// Killed before the pruned keys' slots were wiped: they are
				// still recoverable until the store is opened again (else
				// the check below could not fail).
				var pruned [][]byte
				for i := range writers {
					for e := uint64(1); e+peerstore.KeepEpochs <= tried[i]; e++ {
						pruned = append(pruned, keys[i][e])
					}
				}
				require.NotEmpty(t, storetest.RecoverableSecrets(t, dir, pruned...))
			}

			// The crash left keys that nothing names (the pool, the keys of
			// an uncommitted batch or of pruned epochs); the next open
			// wipes them (else the count after it could not fail).
			unnamed, err := peerstore.UnnamedKeySlots(dir)
			require.NoError(t, err)
			require.Positive(t, unnamed, "unnamed key slots right after the kill")

			checkBolt(t, dir)
			st, err = peerstore.OpenBolt(dir)
			require.NoError(t, err)
			var gone [][]byte
			inBatch := 0 // writers whose unanswered commit is there
			for i, p := range peers {
				// Bucket state was written in the killed transactions too.
				storetest.RequireLookupAgrees(t, st, p, fmt.Sprintf("writer %d after the kill at %s", i, fp))
				ss, err := st.Sessions(p)
				require.NoError(t, err)
				require.Len(t, ss, peerstore.KeepEpochs, "writer %d", i)
				active := ss[len(ss)-1].Epoch
				base := max(answered[i], peerstore.KeepEpochs) // what it was answered for (or had before)
				require.GreaterOrEqual(t, active, base, "writer %d: an answered commit is lost", i)
				require.LessOrEqual(t, active, base+1, "writer %d: a commit it never made", i)
				if active > base {
					inBatch++
				}
				for j, s := range ss {
					want := active - uint64(len(ss)-1-j)
					require.Equal(t, want, s.Epoch, "writer %d: epochs kept", i)
					require.Equal(t, keys[i][s.Epoch], s.Key[:], "writer %d epoch %d: key", i, s.Epoch)
				}
				for e, k := range keys[i] {
					if e+peerstore.KeepEpochs <= active || e > active {
						gone = append(gone, k)
					}
				}
			}
			// Killed before its commit, the batch left nothing; but the batch
			// before it may have committed and not yet answered (the lead
			// passes on before the wipe), so unanswered commits may be
			// there after either failpoint; the bounds above hold for both.
			if fp == failpoint.BatchAfterCommit || fp == failpoint.BatchAfterOverwrite {
				require.GreaterOrEqual(t, inBatch, 2, "the killed batch committed two or more writers' epochs")
			}
			require.NoError(t, st.Close())
			storetest.RequireNoSecretInFiles(t, dir, "killed at "+fp+", reopened", gone...)
			unnamed, err = peerstore.UnnamedKeySlots(dir)
			require.NoError(t, err)
			require.Zero(t, unnamed, "unnamed key slots after the reopen")
		})
	}
}
