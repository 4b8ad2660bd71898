package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/peerstore"
)

// TestStoreUpgradeSaid: a repo whose store an older p2pkex wrote (schema
// version 2, peerstore's fixture) is upgraded on the first command that
// opens it, which says so on stderr, once; stdout stays the command's.
func TestStoreUpgradeSaid(t *testing.T) {
	fixture := func(store string) {
		require.NoError(t, os.Mkdir(store, 0o700))
		for _, name := range []string{peerstore.BoltFileName, peerstore.KeysFileName} {
			b, err := os.ReadFile(filepath.Join("..", "..", "peerstore", "testdata", "v2store", name))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(store, name), b, 0o600))
		}
	}
	dir := t.TempDir()
	fixture(filepath.Join(dir, storeDir))
	// The repo's identity.key is the identity the fixture's store holds
	// (read from a copy, so that the repo's store is still version 2).
	cp := filepath.Join(t.TempDir(), "copy")
	fixture(cp)
	st, err := peerstore.OpenBolt(cp)
	require.NoError(t, err)
	id, err := st.Identity()
	require.NoError(t, err)
	require.NoError(t, st.Close())
	b, err := crypto.MarshalPrivateKey(id)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, identityFile), b, 0o400))

	idCmd := func() (string, string) {
		var out, errOut strings.Builder
		require.Equal(t, 0, run(context.Background(), []string{"p2pkex", "id", "--repo", dir}, &out, &errOut), errOut.String())
		return out.String(), errOut.String()
	}
	out, errOut := idCmd()
	require.Equal(t, "p2pkex: upgrading the store of repo "+dir+" from schema version 2 to 3 (once)\n", errOut)
	want, err := peer.IDFromPrivateKey(id)
	require.NoError(t, err)
	require.Contains(t, out, want.String())

	out2, errOut := idCmd()
	require.Empty(t, errOut, "upgraded once")
	require.Equal(t, out, out2)
}
