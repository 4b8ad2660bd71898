package peerstore_test

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
)

// testdata/v1store holds a store written by the schema-version-1 code
// (commit 2bea372's peerstore): three exchange-key rotations with a grace
// period (seq 1 destroyed, 2 previous, 3 current; both of two suites) and
// five peers with five epochs each (epochs 1 and 2 pruned). secrets.json
// lists the live and the destroyed secrets in hex. In that file every live
// secret is in the clear, and one destroyed one still lingers in a free
// page (the bug of issue 12).

func v1Store(t *testing.T) (dir string, live, destroyed [][]byte) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "store")
	require.NoError(t, os.Mkdir(dir, 0o700))
	b, err := os.ReadFile("testdata/v1store/store.db")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, peerstore.BoltFileName), b, 0o600))
	var sec struct{ Live, Destroyed []string }
	js, err := os.ReadFile("testdata/v1store/secrets.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(js, &sec))
	dec := func(hs []string) [][]byte {
		var out [][]byte
		for _, h := range hs {
			b, err := hex.DecodeString(h)
			require.NoError(t, err)
			out = append(out, b)
		}
		return out
	}
	return dir, dec(sec.Live), dec(sec.Destroyed)
}

// TestMigrateV1: a version-1 store opens; every live secret reads back the
// same through the API, and afterwards no file holds any secret in the
// clear, nor a destroyed one recoverably.
func TestMigrateV1(t *testing.T) {
	dir, live, destroyed := v1Store(t)
	require.Len(t, storetest.FindSecretsInFiles(t, dir, live...), len(live), "the fixture holds its live secrets in the clear")

	st, err := peerstore.OpenBolt(dir)
	require.NoError(t, err)
	var got [][]byte
	cur, prev, err := st.ExchangeKeys()
	require.NoError(t, err)
	require.EqualValues(t, 3, cur.Seq)
	require.NotNil(t, prev)
	require.EqualValues(t, 2, prev.Seq)
	got = append(got, exchangeSecrets(prev)...)
	got = append(got, exchangeSecrets(cur)...)
	peers, err := st.Peers()
	require.NoError(t, err)
	require.Len(t, peers, 5)
	for _, p := range peers {
		storetest.RequireLookupAgrees(t, st, p.Peer, "migrated from version 1")
		ss, err := st.Sessions(p.Peer)
		require.NoError(t, err)
		require.Len(t, ss, peerstore.KeepEpochs)
		got = append(got, sessionSecrets(ss)...)
	}
	require.ElementsMatch(t, live, got, "every live secret migrated")
	require.NoError(t, st.Close())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{peerstore.BoltFileName, peerstore.KeysFileName}, names, "no temporary file left")
	require.Empty(t, storetest.FindSecretsInFiles(t, dir, live...), "live secrets in the clear after the migration")
	storetest.RequireNoSecretInFiles(t, dir, "destroyed before the migration", destroyed...)

	// And it works as a version-2 store: destroying a migrated secret.
	st, err = peerstore.OpenBolt(dir)
	require.NoError(t, err)
	pruned, err := st.PruneExchangeKeys(prev.Retire)
	require.NoError(t, err)
	require.True(t, pruned)
	require.NoError(t, st.Close())
	storetest.RequireNoSecretInFiles(t, dir, "migrated previous key, pruned", exchangeSecrets(prev)...)
}

// TestMigrateV1Interrupted: a migration that died before its rename left
// its new file behind; the next open starts again and succeeds.
func TestMigrateV1Interrupted(t *testing.T) {
	dir, live, _ := v1Store(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, peerstore.BoltFileName+".migrate"), []byte("partial"), 0o600))
	// A key file with keys that nothing will name.
	keys := make([]byte, 32*4)
	copy(keys, "p2pkex/keys/v1\x00\x00\x02")
	copy(keys[32:], storetest.RandBytes(t, 96))
	require.NoError(t, os.WriteFile(filepath.Join(dir, peerstore.KeysFileName), keys, 0o600))
	st, err := peerstore.OpenBolt(dir)
	require.NoError(t, err)
	cur, _, err := st.ExchangeKeys()
	require.NoError(t, err)
	require.Contains(t, live, cur.Keys[0].Private)
	require.NoError(t, st.Close())
	_, err = os.Stat(filepath.Join(dir, peerstore.BoltFileName+".migrate"))
	require.True(t, os.IsNotExist(err))
	require.Empty(t, storetest.FindSecretsInFiles(t, dir, live...))
	b, err := os.ReadFile(filepath.Join(dir, peerstore.KeysFileName))
	require.NoError(t, err)
	require.NotContains(t, string(b), string(keys[32:64]), "stale key wiped")
}

// testdata/v2store holds a store written by the schema-version-2 code
// (commit fcf5a6a's peerstore, with the generator genv2_test.go of that
// commit): an identity, an exchange key, and eight peers — with a record
// and one to five epochs (pruned to three), trust verified, trust changed
// with a second record, sessions without a record, a record without
// sessions (DeletePeerSessions), and one forgotten. peers.json is what
// Lookup must give for each (Record false and Epoch 0: not found).

type v2Peer struct {
	Peer        string
	Record      bool
	Seq         uint64
	Fingerprint string
	Trust       uint8
	Epoch       uint64
}

func v2Store(t *testing.T) (dir string, want []v2Peer) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "store")
	require.NoError(t, os.Mkdir(dir, 0o700))
	for _, name := range []string{peerstore.BoltFileName, peerstore.KeysFileName} {
		b, err := os.ReadFile(filepath.Join("testdata/v2store", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	js, err := os.ReadFile("testdata/v2store/peers.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(js, &want))
	return dir, want
}

// rawVersion reads the schema version and whether bucket state exists,
// bypassing the store.
func rawVersion(t *testing.T, dir string) (version uint64, state bool) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, peerstore.BoltFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("version")))
		state = tx.Bucket([]byte("state")) != nil
		return nil
	}))
	return version, state
}

// TestMigrateV2: a version-2 store opens as version 3, and Lookup gives
// for every peer what the version-2 code stored (and what Peer and
// ActiveSession say), before and after a reopen; the store then works.
func TestMigrateV2(t *testing.T) {
	dir, want := v2Store(t)
	v, state := rawVersion(t, dir)
	require.EqualValues(t, 2, v, "the fixture is a version-2 store")
	require.False(t, state)

	check := func(st peerstore.Store, what string) {
		for _, w := range want {
			p, err := peer.Decode(w.Peer)
			require.NoError(t, err)
			storetest.RequireLookupAgrees(t, st, p, what)
			got, err := st.Lookup(p)
			if !w.Record && w.Epoch == 0 {
				require.ErrorIs(t, err, peerstore.ErrNotFound, "%s: %s", what, w.Peer)
				continue
			}
			require.NoError(t, err, "%s: %s", what, w.Peer)
			require.Equal(t, w.Record, got.Record, w.Peer)
			require.Equal(t, w.Seq, got.Seq, w.Peer)
			require.Equal(t, w.Fingerprint, hex.EncodeToString(got.Fingerprint), w.Peer)
			require.EqualValues(t, w.Trust, got.Trust, w.Peer)
			require.Equal(t, w.Epoch, got.Epoch, w.Peer)
		}
	}
	st, err := peerstore.OpenBolt(dir)
	require.NoError(t, err)
	check(st, "migrated")
	_, err = st.Identity()
	require.NoError(t, err)
	_, _, err = st.ExchangeKeys()
	require.NoError(t, err, "the sealed keys still open")
	require.NoError(t, st.Close())
	v, state = rawVersion(t, dir)
	require.EqualValues(t, 3, v)
	require.True(t, state)

	st, err = peerstore.OpenBolt(dir)
	require.NoError(t, err)
	defer st.Close()
	check(st, "reopened")
	// And it works as a version-3 store.
	p, err := peer.Decode(want[0].Peer)
	require.NoError(t, err)
	s := peerstore.SessionKey{Peer: p, Epoch: want[0].Epoch + 1, Suite: 0x0a, Created: time.Now()}
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: s, Seen: time.Now()}))
	storetest.RequireLookupAgrees(t, st, p, "commit after the migration")
	got, err := st.Lookup(p)
	require.NoError(t, err)
	require.Equal(t, want[0].Epoch+1, got.Epoch)
}

// TestMigrateV2Atomic: a version-2 store whose migration fails (a record
// that does not decode) is left a version-2 store without bucket state,
// and the open fails with ErrCorrupt.
func TestMigrateV2Atomic(t *testing.T) {
	dir, want := v2Store(t)
	p, err := peer.Decode(want[len(want)-1].Peer)
	require.NoError(t, err)
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("peers")).Put([]byte(p), []byte{0xff, 0xff})
	})
	_, err = peerstore.OpenBolt(dir)
	require.ErrorIs(t, err, peerstore.ErrCorrupt)
	v, state := rawVersion(t, dir)
	require.EqualValues(t, 2, v)
	require.False(t, state)
}

// TestMigrationNotice: OpenBolt tells WithMigrationNotice's function which
// versions a migration goes between, and only when it migrates.
func TestMigrationNotice(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) string
		from  int
	}{
		{"v1", func(t *testing.T) string { dir, _, _ := v1Store(t); return dir }, 1},
		{"v2", func(t *testing.T) string { dir, _ := v2Store(t); return dir }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.store(t)
			var calls [][2]int
			v, _ := rawVersion(t, dir)
			require.EqualValues(t, tc.from, v)
			notice := peerstore.WithMigrationNotice(func(from, to int) {
				calls = append(calls, [2]int{from, to})
			})
			st, err := peerstore.OpenBolt(dir, notice)
			require.NoError(t, err)
			require.NoError(t, st.Close())
			require.Equal(t, [][2]int{{tc.from, 3}}, calls)

			st, err = peerstore.OpenBolt(dir, notice)
			require.NoError(t, err)
			require.NoError(t, st.Close())
			require.Len(t, calls, 1, "no notice for a store of this version")
		})
	}
	st, err := peerstore.OpenBolt(filepath.Join(t.TempDir(), "new"), peerstore.WithMigrationNotice(func(from, to int) {
		t.Errorf("notice %d -> %d for a new store", from, to)
	}))
	require.NoError(t, err)
	require.NoError(t, st.Close())
}
