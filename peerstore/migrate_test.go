package peerstore_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

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
