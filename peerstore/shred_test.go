package peerstore_test

// Destroyed means unrecoverable from the store's files (issue 12): these
// tests read the raw bytes of every file in the store's directory after a
// secret was destroyed — by rotating an exchange key out of use, by pruning
// a session epoch, by deleting a peer's sessions — and after a SIGKILL in
// the middle of each, and look for the secret in the clear and sealed under
// a key still in the key file (storetest.RequireNoSecretInFiles).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/internal/childproc"
	"github.com/p2pkex/p2pkex/internal/failpoint"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
	"github.com/p2pkex/p2pkex/protocol"
)

// shredFixture is a store with an identity, a current exchange key of both
// suites (seq 1), a few bystander peers and the peer under test with
// sessions.
type shredFixture struct {
	dir      string
	identity crypto.PrivKey
	peer     peer.ID
}

func newShredFixture(t *testing.T, epochs uint64) *shredFixture {
	t.Helper()
	f := &shredFixture{dir: filepath.Join(t.TempDir(), "store"), peer: storetest.RandPeerID(t)}
	st, err := peerstore.OpenBolt(f.dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	f.identity, _, err = crypto.GenerateEd25519Key(nil)
	require.NoError(t, err)
	require.NoError(t, st.SetIdentity(f.identity))
	require.NoError(t, st.RotateExchangeKey(f.exchangeKey(t, 1), time.Now(), 0))
	for range 20 {
		commitEpoch(t, st, storetest.RandPeerID(t), 1)
	}
	for e := uint64(1); e <= epochs; e++ {
		commitEpoch(t, st, f.peer, e)
	}
	return f
}

// exchangeKey makes a real exchange key of both suites.
func (f *shredFixture) exchangeKey(t *testing.T, seq uint64) peerstore.ExchangeKey {
	t.Helper()
	now := time.Now()
	xk, err := protocol.NewExchangeKey(f.identity, protocol.DefaultSuites(), seq, now, 24*time.Hour)
	require.NoError(t, err)
	priv, err := xk.PrivateKeys()
	require.NoError(t, err)
	k := peerstore.ExchangeKey{Seq: seq, Record: xk.Envelope, Created: now}
	for _, s := range xk.Suites() {
		k.Keys = append(k.Keys, peerstore.SuiteKey{Suite: uint16(s), Private: priv[s]})
	}
	require.Len(t, k.Keys, 2, "both suites")
	return k
}

func commitEpoch(t *testing.T, st peerstore.Store, p peer.ID, epoch uint64) {
	t.Helper()
	s := peerstore.SessionKey{Peer: p, Epoch: epoch, Suite: 1, Created: time.Now()}
	copy(s.Key[:], storetest.RandBytes(t, peerstore.KeySize))
	copy(s.ID[:], storetest.RandBytes(t, peerstore.KeyIDSize))
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: s, Seen: time.Now()}))
}

func exchangeSecrets(k *peerstore.ExchangeKey) [][]byte {
	var out [][]byte
	for _, sk := range k.Keys {
		out = append(out, bytes.Clone(sk.Private))
	}
	return out
}

func sessionSecrets(ss []peerstore.SessionKey) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, bytes.Clone(s.Key[:]))
	}
	return out
}

// shredOps are the operations that destroy secrets. Each returns the
// secrets it destroys (read before) and those that must survive it.
var shredOps = []struct {
	name   string
	epochs uint64 // sessions of the peer under test before
	// secrets reads the store before the operation.
	secrets func(t *testing.T, st peerstore.Store, f *shredFixture) (destroyed, kept [][]byte)
	run     func(t *testing.T, st peerstore.Store, f *shredFixture) error
}{
	{
		name: "rotate", epochs: 1,
		secrets: func(t *testing.T, st peerstore.Store, _ *shredFixture) ([][]byte, [][]byte) {
			cur, _, err := st.ExchangeKeys()
			require.NoError(t, err)
			return exchangeSecrets(cur), nil
		},
		// As the node rotates: no grace period (nothing opens with the
		// previous key; node.go).
		run: func(t *testing.T, st peerstore.Store, f *shredFixture) error {
			return st.RotateExchangeKey(f.exchangeKey(t, 2), time.Now(), 0)
		},
	},
	{
		name: "prune-session", epochs: peerstore.KeepEpochs,
		secrets: func(t *testing.T, st peerstore.Store, f *shredFixture) ([][]byte, [][]byte) {
			ss, err := st.Sessions(f.peer)
			require.NoError(t, err)
			return sessionSecrets(ss[:1]), sessionSecrets(ss[1:])
		},
		run: func(t *testing.T, st peerstore.Store, f *shredFixture) error {
			s := peerstore.SessionKey{Peer: f.peer, Epoch: peerstore.KeepEpochs + 1, Suite: 1, Created: time.Now()}
			copy(s.Key[:], storetest.RandBytes(t, peerstore.KeySize))
			return st.CommitExchange(peerstore.Commit{Session: s, Seen: time.Now()})
		},
	},
	{
		name: "delete-sessions", epochs: peerstore.KeepEpochs,
		secrets: func(t *testing.T, st peerstore.Store, f *shredFixture) ([][]byte, [][]byte) {
			ss, err := st.Sessions(f.peer)
			require.NoError(t, err)
			return sessionSecrets(ss), nil
		},
		run: func(t *testing.T, st peerstore.Store, f *shredFixture) error {
			n, err := peerstore.DeletePeerSessions(st, f.peer)
			if err == nil && n != peerstore.KeepEpochs {
				err = errors.New("wrong number of sessions deleted")
			}
			return err
		},
	},
	{
		// Forget: a peer's record, trust and session keys, in one
		// transaction through the same delete path as delete-sessions.
		name: "forget", epochs: peerstore.KeepEpochs,
		secrets: func(t *testing.T, st peerstore.Store, f *shredFixture) ([][]byte, [][]byte) {
			ss, err := st.Sessions(f.peer)
			require.NoError(t, err)
			return sessionSecrets(ss), nil
		},
		run: func(t *testing.T, st peerstore.Store, f *shredFixture) error {
			res, err := st.Forget(f.peer)
			if err == nil && res.Sessions != peerstore.KeepEpochs {
				err = fmt.Errorf("forget removed %d sessions, want %d", res.Sessions, peerstore.KeepEpochs)
			}
			return err
		},
	},
}

// TestShredRawBytes: once the method returns, and after Close, no piece of
// a destroyed secret is in any file; the secrets kept are still there
// through the API, and sealed in the files.
func TestShredRawBytes(t *testing.T) {
	for _, op := range shredOps {
		t.Run(op.name, func(t *testing.T) {
			f := newShredFixture(t, op.epochs)
			st, err := peerstore.OpenBolt(f.dir)
			require.NoError(t, err)
			defer st.Close()
			destroyed, kept := op.secrets(t, st, f)
			cur, _, err := st.ExchangeKeys()
			require.NoError(t, err)
			// Live secrets are sealed at rest (recoverable, of course, with
			// the key file: that is what it is for).
			live := append(kept, exchangeSecrets(cur)...)
			require.Empty(t, storetest.FindSecretsInFiles(t, f.dir, live...), "live secrets in the clear")
			found := map[int]bool{}
			for _, r := range storetest.RecoverableSecrets(t, f.dir, live...) {
				found[r.Secret] = true
			}
			require.Len(t, found, len(live), "the attacker of RequireNoSecretInFiles finds every live secret")

			require.NoError(t, op.run(t, st, f))
			storetest.RequireNoSecretInFiles(t, f.dir, op.name+", store open", destroyed...)
			require.NoError(t, st.Close())
			storetest.RequireNoSecretInFiles(t, f.dir, op.name+", store closed", destroyed...)
			requireKept(t, f, kept)
		})
	}
}

// requireKept reopens the store and checks that the kept session keys are
// still there.
func requireKept(t *testing.T, f *shredFixture, kept [][]byte) {
	t.Helper()
	st, err := peerstore.OpenBolt(f.dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	if len(kept) == 0 {
		return
	}
	ss, err := st.Sessions(f.peer)
	require.NoError(t, err)
	have := sessionSecrets(ss)
	for i, k := range kept {
		require.Contains(t, have, k, "kept session %d lost", i)
	}
}

const (
	envShredChild = "P2PKEX_SHRED_CHILD" // the operation, in the child
	envShredDir   = "P2PKEX_SHRED_DIR"
	envShredPeer  = "P2PKEX_SHRED_PEER"
)

// TestShredCrashChild is the child of TestShredCrash; run directly, it skips.
func TestShredCrashChild(t *testing.T) {
	name := os.Getenv(envShredChild)
	if name == "" {
		t.Skip("child process of TestShredCrash")
	}
	p, err := peer.Decode(os.Getenv(envShredPeer))
	require.NoError(t, err)
	st, err := peerstore.OpenBolt(os.Getenv(envShredDir))
	require.NoError(t, err)
	cur, _, err := st.ExchangeKeys()
	require.NoError(t, err)
	id, err := st.Identity()
	require.NoError(t, err)
	f := &shredFixture{dir: os.Getenv(envShredDir), identity: id, peer: p}
	for _, op := range shredOps {
		if op.name == name {
			err = op.run(t, st, f)
		}
	}
	t.Fatalf("failpoint %s not reached (%v, seq %d)", os.Getenv(failpoint.EnvVar), err, cur.Seq)
}

// TestShredCrash kills a child in the middle of each operation, at each
// failpoint it passes: before the commit nothing may be lost; after it, the
// destroyed secrets must be unrecoverable once the store was opened again.
func TestShredCrash(t *testing.T) {
	exe := childproc.Exe(t)
	points := map[string][]struct {
		fp        string
		committed bool
	}{
		"rotate": {
			{failpoint.RotateAfterWrite, false}, {failpoint.RotateAfterCommit, true}, {failpoint.ShredAfterWipe, true},
		},
		"prune-session": {
			{failpoint.CommitAfterWrite, false}, {failpoint.CommitAfterCommit, true}, {failpoint.ShredAfterWipe, true},
		},
		"delete-sessions": {
			{failpoint.DeleteSessionsAfterWrite, false}, {failpoint.DeleteSessionsAfterCommit, true}, {failpoint.ShredAfterWipe, true},
		},
		"forget": {
			{failpoint.DeleteSessionsAfterWrite, false}, {failpoint.DeleteSessionsAfterCommit, true}, {failpoint.ShredAfterWipe, true},
		},
	}
	for _, op := range shredOps {
		for _, pt := range points[op.name] {
			t.Run(op.name+"/"+pt.fp, func(t *testing.T) {
				t.Parallel()
				f := newShredFixture(t, op.epochs)
				st, err := peerstore.OpenBolt(f.dir)
				require.NoError(t, err)
				destroyed, kept := op.secrets(t, st, f)
				before, _, err := st.ExchangeKeys()
				require.NoError(t, err)
				beforeSessions, _ := st.Sessions(f.peer)
				require.NoError(t, st.Close())

				cmd := childproc.Command(t.Context(), exe, "TestShredCrashChild", envShredChild+"="+op.name, envShredDir+"="+f.dir,
					envShredPeer+"="+f.peer.String(), failpoint.EnvVar+"="+pt.fp)
				out, err := cmd.CombinedOutput()
				require.True(t, childproc.Killed(err), "child did not die at %s: %v\n%s", pt.fp, err, out)

				checkBolt(t, f.dir)
				if pt.committed && pt.fp != failpoint.ShredAfterWipe {
					// The crash left the keys of the destroyed secrets in
					// the key file; opening the store wipes them.
					require.NotEmpty(t, storetest.RecoverableSecrets(t, f.dir, destroyed...),
						"killed after the commit and before the wipe, the secret is still recoverable (else this test cannot fail)")
				}
				st, err = peerstore.OpenBolt(f.dir)
				require.NoError(t, err)
				after, _, err := st.ExchangeKeys()
				require.NoError(t, err)
				afterSessions, _ := st.Sessions(f.peer)
				storetest.RequireLookupAgrees(t, st, f.peer, op.name+" killed at "+pt.fp+", reopened")
				require.NoError(t, st.Close())
				if !pt.committed {
					// Nothing lost: wholly the old state.
					storetest.RequireExchangeKeyEqual(t, before, after)
					require.Equal(t, sessionSecrets(beforeSessions), sessionSecrets(afterSessions))
					return
				}
				storetest.RequireNoSecretInFiles(t, f.dir, op.name+" killed at "+pt.fp+", reopened", destroyed...)
				requireKept(t, f, kept)
				if op.name == "rotate" {
					require.Equal(t, before.Seq+1, after.Seq)
				}
			})
		}
	}
}

// checkBolt runs bbolt's consistency check over the store file as the
// crash left it.
func checkBolt(t *testing.T, dir string) { storetest.RequireBoltConsistent(t, dir) }
