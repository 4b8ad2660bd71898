package node

// Crash safety (issue 3, item 7). A child process — this test binary,
// re-executed — runs a node on a bbolt store and is killed with SIGKILL at a
// failpoint of package internal/failpoint, while it commits a session key
// (as initiator or as responder) or rotates its exchange key. The parent
// runs the honest peer, checks that the child's store reopens with each
// piece of state wholly old or wholly new, then reopens the store in a node
// of its own and checks that an exchange with the honest peer converges.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/p2pkex/p2pkex/internal/childproc"
	"github.com/p2pkex/p2pkex/internal/failpoint"
	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
	"github.com/p2pkex/p2pkex/protocol"
)

// The child's instructions, passed in its environment (failpoint.EnvVar arms
// the failpoint).
const (
	envCrashChild  = "P2PKEX_CRASH_CHILD"  // "1" in the child
	envCrashDir    = "P2PKEX_CRASH_DIR"    // the child's bbolt store directory
	envCrashAction = "P2PKEX_CRASH_ACTION" // one of the crash* actions
	envCrashPeer   = "P2PKEX_CRASH_PEER"   // the honest peer's address, for crashInitiate

	// crashAddrPrefix starts the stdout line on which a responding child
	// tells the parent its address.
	crashAddrPrefix = "P2PKEX_CRASH_ADDR="
	// crashMsgPrefix starts the stdout line on which a receiving child
	// reports a message it accepted.
	crashMsgPrefix = "P2PKEX_CRASH_MSG="
)

// What the child does at the failpoint.
const (
	crashInitiate = "initiate" // run an exchange with the honest peer as initiator
	crashRespond  = "respond"  // serve the honest peer's exchange as responder
	// crashRespondNext serves two exchanges of the honest peer on one
	// kept stream, the first with both records known: its commit, slowed
	// down, runs in the background while the next exchange runs up to the
	// held PART_RECEIVED (pipeline.go).
	crashRespondNext = "respond-next"
	crashRotate      = "rotate"  // rotate the exchange key
	crashReceive     = "receive" // receive messages until killed (TestCrashReplay)
)

// crashChildTimeout bounds a child that never reaches its failpoint.
const crashChildTimeout = 15 * time.Second

// TestCrashChild is the child process of TestCrash; run directly, it skips.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envCrashChild) != "1" {
		t.Skip("child process of TestCrash")
	}
	armed := os.Getenv(failpoint.EnvVar)
	store, err := ps.OpenBolt(os.Getenv(envCrashDir))
	require.NoError(t, err)
	defer store.Close()
	var nodeStore ps.Store = store
	if os.Getenv(envCrashAction) == crashRespondNext {
		// Time for the next exchange to reach the hold before the
		// failpoint, inside the bolt store's commit, kills the child.
		nodeStore = slowCommitStore{Store: store, delay: 500 * time.Millisecond}
	}
	n, err := New(context.Background(), WithStore(nodeStore), WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), crashChildTimeout)
	defer cancel()

	switch action := os.Getenv(envCrashAction); action {
	case crashRotate:
		err = n.RotateExchangeKey()
	case crashReceive:
		msgs, stop := n.Messages(0)
		defer stop()
		_, err = os.Stdout.WriteString(crashAddrPrefix + n.Addrs()[0].String() + "\n")
		require.NoError(t, err)
		for err == nil {
			select {
			case m := <-msgs:
				_, err = os.Stdout.WriteString(crashMsgPrefix + string(m.Data) + "\n")
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	case crashInitiate:
		var ai *peer.AddrInfo
		ai, err = peer.AddrInfoFromString(os.Getenv(envCrashPeer))
		require.NoError(t, err)
		n.Host().Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		_, err = n.Exchange(ctx, ai.ID)
	case crashRespond, crashRespondNext:
		events, stop := n.Subscribe(0)
		defer stop()
		_, err = os.Stdout.WriteString(crashAddrPrefix + n.Addrs()[0].String() + "\n")
		require.NoError(t, err)
		for err == nil {
			select {
			case e := <-events:
				switch e.Kind {
				case EventDone:
					err = errors.New("exchange finished")
				case EventFailed:
					err = e.Err
				}
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	default:
		t.Fatalf("unknown action %q", action)
	}
	t.Fatalf("failpoint %q not reached; %v", armed, err)
}

// TestCrash kills a child at every failpoint; see the top of this file.
func TestCrash(t *testing.T) {
	exe := childproc.Exe(t)
	// Subtests run in parallel, after this function returns: check for
	// leaks once they all ended.
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, running) })
	for _, c := range []struct{ failpoint, action string }{
		{failpoint.CommitBeforeWrite, crashInitiate},
		{failpoint.CommitAfterWrite, crashInitiate},
		{failpoint.CommitAfterCommit, crashInitiate},
		{failpoint.CommitBeforeWrite, crashRespond},
		{failpoint.CommitAfterWrite, crashRespond},
		{failpoint.CommitAfterCommit, crashRespond},
		{failpoint.CommitBeforeWrite, crashRespondNext},
		{failpoint.RotateBeforeWrite, crashRotate},
		{failpoint.RotateAfterWrite, crashRotate},
		{failpoint.RotateAfterCommit, crashRotate},
		{failpoint.ShredAfterWipe, crashRotate},
	} {
		t.Run(c.failpoint+"/"+c.action, func(t *testing.T) {
			t.Parallel()
			crashCase(t, exe, c.failpoint, c.action)
		})
	}
}

// crashState is what the child's store holds about itself and the honest
// peer.
type crashState struct {
	cur, prev *ps.ExchangeKey
	peer      *ps.PeerKey     // the honest peer's record
	sessions  []ps.SessionKey // with the honest peer, oldest first
}

func readCrashState(t *testing.T, store ps.Store, honest peer.ID) crashState {
	t.Helper()
	var st crashState
	var err error
	st.cur, st.prev, err = store.ExchangeKeys()
	require.NoError(t, err)
	st.peer, err = store.Peer(honest)
	require.NoError(t, err)
	st.sessions, err = store.Sessions(honest)
	require.NoError(t, err)
	return st
}

func crashCase(t *testing.T, exe, fp, action string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listen := WithListenAddrs("/ip4/127.0.0.1/tcp/0")

	honestStore, err := ps.OpenBolt(filepath.Join(t.TempDir(), "honest"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, honestStore.Close()) })
	honest, err := New(ctx, WithStore(honestStore), listen)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, honest.Close()) })

	// Before the crash: the child's identity and the honest peer agreed
	// epoch 1, and one of them rotated its exchange key since, so that the
	// crashing commit also stores the honest peer's new record, or the
	// crashing rotation has a previous key to replace.
	childDir := filepath.Join(t.TempDir(), "child")
	childStore, err := ps.OpenBolt(childDir)
	require.NoError(t, err)
	c0, err := New(ctx, WithStore(childStore), listen)
	if err != nil {
		childStore.Close()
		require.NoError(t, err)
	}
	t.Cleanup(func() { c0.Close(); childStore.Close() }) // if the setup fails; both idempotent
	childID := c0.ID()
	introduce(c0, honest)
	// KeepEpochs epochs, so that the crashing commit also prunes the
	// oldest one: its key must be destroyed with the commit.
	for range ps.KeepEpochs {
		exchange(t, c0, honest)
	}
	switch action {
	case crashRotate:
		require.NoError(t, c0.RotateExchangeKey())
	case crashRespondNext:
		// Both records known: the crashing commit is pipelined.
	default:
		require.NoError(t, honest.RotateExchangeKey())
	}
	before := readCrashState(t, childStore, honest.ID())
	require.Len(t, before.sessions, ps.KeepEpochs)
	require.Nil(t, before.prev, "no previous exchange key is kept")
	// The secrets a committed crash destroys: the pruned epoch's key, the
	// rotated-out exchange private keys (both suites).
	var destroyed [][]byte
	if action == crashRotate {
		for _, sk := range before.cur.Keys {
			destroyed = append(destroyed, bytes.Clone(sk.Private))
		}
		require.Len(t, destroyed, 2, "both suites")
	} else {
		destroyed = append(destroyed, bytes.Clone(before.sessions[0].Key[:]))
	}
	require.NoError(t, c0.Close())
	require.NoError(t, childStore.Close())
	require.NoError(t, honest.Host().Network().ClosePeer(childID))
	honest.Host().Peerstore().ClearAddrs(childID)

	// The crash.
	honestEvents, stopEvents := honest.Subscribe(0)
	defer stopEvents()
	runCrashChild(t, ctx, exe, fp, action, childDir, honest)

	// What the honest peer made of the crashed exchange.
	var honestInfo *KeyInfo
	if action != crashRotate {
	wait:
		for {
			select {
			case e, ok := <-honestEvents:
				require.True(t, ok, "honest peer's events ended")
				if e.Peer != childID {
					continue
				}
				if e.Kind == EventDone {
					honestInfo = e.Info
					break wait
				}
				if e.Kind == EventFailed {
					t.Logf("honest peer: exchange failed: %v", e.Err)
					break wait
				}
			case <-ctx.Done():
				t.Fatal("honest peer never finished the exchange")
			}
		}
	}
	stopEvents()

	// Reopen: the file passes bbolt's consistency check and the store opens.
	storetest.RequireBoltConsistent(t, childDir)
	committed := fp == failpoint.CommitAfterCommit || fp == failpoint.RotateAfterCommit || fp == failpoint.ShredAfterWipe
	if committed && fp != failpoint.ShredAfterWipe {
		// Killed between the commit and the wipe of the destroyed keys'
		// slots: still recoverable from the files until the store is
		// opened again (peerstore/shred.go). This shows the check below
		// can fail.
		require.NotEmpty(t, storetest.RecoverableSecrets(t, childDir, destroyed...))
	}
	reopened, err := ps.OpenBolt(childDir)
	require.NoError(t, err)
	defer func() { require.NoError(t, reopened.Close()) }()
	after := readCrashState(t, reopened, honest.ID())
	identity, err := reopened.Identity()
	require.NoError(t, err)
	requireLoads(t, identity, after.cur)
	requireLoads(t, identity, after.prev)

	oldState := func() {
		require.Equal(t, before.cur, after.cur, "exchange key")
		require.Equal(t, before.prev, after.prev, "previous exchange key")
		require.Equal(t, before.peer, after.peer, "peer record")
		requireSessions(t, before.sessions, after.sessions)
	}
	switch fp {
	case failpoint.CommitBeforeWrite, failpoint.CommitAfterWrite, failpoint.RotateBeforeWrite, failpoint.RotateAfterWrite:
		// Wholly old: neither the epoch nor the record it brought, nor the
		// new exchange key.
		oldState()

	case failpoint.CommitAfterCommit:
		// Wholly new: the epoch and the record arrived together, and the
		// oldest epoch was pruned.
		require.Equal(t, before.cur, after.cur)
		require.Equal(t, before.prev, after.prev)
		require.Len(t, after.sessions, ps.KeepEpochs)
		requireSessions(t, before.sessions[1:], after.sessions[:ps.KeepEpochs-1])
		s := after.sessions[ps.KeepEpochs-1]
		require.EqualValues(t, ps.KeepEpochs+1, s.Epoch)
		rec := honest.ExchangeKey()
		require.Equal(t, rec.Seq, after.peer.Seq, "the record the epoch's phase 2 brought")
		require.Equal(t, rec.Envelope, after.peer.Record)
		require.Equal(t, rec.Fingerprint[:], after.peer.Fingerprint)
		require.Equal(t, before.peer.FirstSeen, after.peer.FirstSeen)
		require.True(t, after.peer.LastSeen.Equal(s.Created), "record and session written by one commit")
		if honestInfo != nil {
			require.Equal(t, s.Epoch, honestInfo.Epoch)
			hk, err := honestStore.Session(childID, s.Epoch)
			require.NoError(t, err)
			require.True(t, hk.Key.Equal(&s.Key), "the child committed the honest peer's key")
			require.Equal(t, hk.ID, s.ID)
		} else {
			// The child committed after sending its confirmation, which
			// died with it before it reached the wire: the honest peer
			// stays at the old epoch until the next exchange.
			t.Log("honest peer did not install the epoch the child committed")
		}

	case failpoint.RotateAfterCommit, failpoint.ShredAfterWipe:
		// Wholly new: a new current key, and the old one destroyed (no
		// grace period: node.go).
		require.Equal(t, before.cur.Seq+1, after.cur.Seq)
		require.True(t, after.cur.Retire.IsZero())
		require.Nil(t, after.prev)
		require.Equal(t, before.peer, after.peer)
		requireSessions(t, before.sessions, after.sessions)

	default:
		t.Fatalf("no assertions for failpoint %q", fp)
	}
	if committed {
		// Nothing destroyed remains: not in the clear, not recoverable
		// with the key file, in any file of the child's store.
		storetest.RequireNoSecretInFiles(t, childDir, "destroyed by the crashed "+action, destroyed...)
	}

	// Both converge on the next exchange.
	honestEpoch := uint64(0)
	if act, err := honestStore.ActiveSession(childID); err == nil {
		honestEpoch = act.Epoch
	}
	childEpoch := after.sessions[len(after.sessions)-1].Epoch
	if action == crashRespondNext {
		// The child held its PART_RECEIVED of the next exchange until the
		// commit it died in: the honest peer is at most one epoch ahead
		// (the one the child was committing), never two.
		require.LessOrEqual(t, honestEpoch, childEpoch+1, "the honest peer's epoch after the child died committing epoch %d", childEpoch+1)
	}
	c1, err := New(ctx, WithStore(reopened), listen)
	require.NoError(t, err)
	defer func() { require.NoError(t, c1.Close()) }()
	require.Equal(t, childID, c1.ID())
	require.Equal(t, after.cur.Seq, c1.ExchangeKey().Seq, "the node runs on the stored key")
	introduce(c1, honest)
	info := exchange(t, c1, honest)
	require.Greater(t, info.Epoch, max(childEpoch, honestEpoch))
	hrec, err := honestStore.Peer(childID)
	require.NoError(t, err)
	fp1 := c1.Fingerprint()
	require.Equal(t, fp1[:], hrec.Fingerprint, "the honest peer holds the child's current record")
	crec, err := reopened.Peer(honest.ID())
	require.NoError(t, err)
	fp2 := honest.Fingerprint()
	require.Equal(t, fp2[:], crec.Fingerprint, "the child holds the honest peer's current record")
}

// runCrashChild runs the child with failpoint fp armed and returns once it
// died of SIGKILL; any other end fails the test.
func runCrashChild(t *testing.T, ctx context.Context, exe, fp, action, dir string, honest *Node) {
	t.Helper()
	cmd := childproc.Command(ctx, exe, "TestCrashChild",
		envCrashChild+"=1",
		failpoint.EnvVar+"="+fp,
		envCrashDir+"="+dir,
		envCrashAction+"="+action,
		envCrashPeer+"="+honest.Addrs()[0].String(),
	)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())

	var out strings.Builder
	addr := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), crashAddrPrefix); ok {
				select {
				case addr <- a:
				default:
				}
				continue
			}
			out.WriteString(sc.Text() + "\n")
		}
	}()

	if action == crashRespond || action == crashRespondNext {
		select {
		case a := <-addr:
			ai, err := peer.AddrInfoFromString(a)
			require.NoError(t, err)
			honest.Host().Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
			// The child dies at its commit; whether this side gets its key
			// depends on how far the child's last notice got.
			if _, err := honest.Exchange(ctx, ai.ID); err != nil {
				t.Logf("honest initiator: %v", err)
			}
			if action == crashRespondNext {
				// The next exchange, on the kept stream, while the child
				// commits the first: it cannot complete.
				info, err := honest.Exchange(ctx, ai.ID)
				require.Error(t, err, "an exchange completed while the child was committing the one before: %+v", info)
				t.Logf("honest initiator, next exchange: %v", err)
			}
		case <-read:
		}
	}

	<-read
	if err = cmd.Wait(); childproc.Killed(err) {
		return
	}
	t.Fatalf("child did not die at failpoint %s (%v)\nstdout:\n%s\nstderr:\n%s", fp, err, out.String(), stderr.String())
}

// requireLoads checks that a stored exchange key (nil: none) is one the
// node can load: its record is signed by identity and its private keys
// match it.
func requireLoads(t *testing.T, identity crypto.PrivKey, k *ps.ExchangeKey) {
	t.Helper()
	if k == nil {
		return
	}
	priv := map[protocol.Suite][]byte{}
	for _, sk := range k.Keys {
		priv[protocol.Suite(sk.Suite)] = sk.Private
	}
	xk, err := protocol.LoadExchangeKey(identity, k.Record, priv)
	require.NoError(t, err)
	require.Equal(t, k.Seq, xk.Seq)
}

// requireSessions compares session keys, the keys in constant time.
func requireSessions(t *testing.T, want, got []ps.SessionKey) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		require.True(t, w.Key.Equal(&g.Key), "session %d: key", i)
		w.Key, g.Key = ps.Key{}, ps.Key{}
		require.Equal(t, w, g, "session %d", i)
	}
}

// TestCrashReplay: a receiver accepts a message, is killed with SIGKILL,
// and comes back on the same store: the recorded message, replayed, is
// refused, and the sender's next Send converges.
func TestCrashReplay(t *testing.T) {
	exe := childproc.Exe(t)
	leakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := newNode(t)
	dir := filepath.Join(t.TempDir(), "receiver")

	cmd := childproc.Command(ctx, exe, "TestCrashChild", envCrashChild+"=1", envCrashDir+"="+dir, envCrashAction+"="+crashReceive)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &childproc.Buffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(prefix string) string {
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "child ended: %s", stderr.String())
				if v, found := strings.CutPrefix(l, prefix); found {
					return v
				}
			case <-ctx.Done():
				t.Fatal("child silent")
			}
		}
	}
	ai, err := peer.AddrInfoFromString(next(crashAddrPrefix))
	require.NoError(t, err)
	a.Host().Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	info, err := a.Exchange(ctx, ai.ID)
	require.NoError(t, err)
	f := seal(t, a, ai.ID, "once")
	require.NoError(t, sendRaw(t, a, ai.ID, f))
	require.Equal(t, "once", next(crashMsgPrefix))
	require.ErrorIs(t, sendRaw(t, a, ai.ID, f), ErrReplay)

	require.NoError(t, cmd.Process.Kill()) // SIGKILL
	err = cmd.Wait()
	require.True(t, childproc.Killed(err), "%v", err)
	require.NoError(t, a.Host().Network().ClosePeer(ai.ID))
	a.Host().Peerstore().ClearAddrs(ai.ID)

	storetest.RequireBoltConsistent(t, dir)
	requireReplayRefused(t, a, dir, f, info.Epoch)
}
