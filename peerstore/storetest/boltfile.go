package storetest

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/p2pkex/p2pkex/peerstore"
)

// RequireBoltConsistent runs bbolt's own consistency check (tx.Check) over
// the store file under dir as it is, read-only: a crash test calls it on
// what a killed process left, before anything opens the store again.
func RequireBoltConsistent(t testing.TB, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, peerstore.BoltFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}))
}
