package peerstore_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
)

// TestBoltWithoutWarm runs the conformance suite on bbolt stores opened and
// reopened with WithoutWarm, as the one-shot commands open them: skipping
// the walk of the state tree must change nothing a caller can see.
func TestBoltWithoutWarm(t *testing.T) {
	var dirs sync.Map // peerstore.Store -> string
	open := func(t *testing.T) peerstore.Store {
		dir := filepath.Join(t.TempDir(), "store")
		st, err := peerstore.OpenBolt(dir, peerstore.WithoutWarm())
		require.NoError(t, err)
		dirs.Store(st, dir)
		return st
	}
	reopen := func(t *testing.T, old peerstore.Store) peerstore.Store {
		dir, ok := dirs.Load(old)
		require.True(t, ok)
		require.NoError(t, old.Close())
		st, err := peerstore.OpenBolt(dir.(string), peerstore.WithoutWarm())
		require.NoError(t, err)
		dirs.Store(st, dir)
		return st
	}
	storetest.TestStore(t, open, reopen)
}
