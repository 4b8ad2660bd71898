package inbox

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func newPeer(t *testing.T) peer.ID {
	t.Helper()
	_, pk, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := peer.IDFromPublicKey(pk)
	require.NoError(t, err)
	return id
}

type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

func texts(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Data))
	}
	return out
}

func TestAddListReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	alice, bob := newPeer(t), newPeer(t)
	b, err := Open(path, Limits{})
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	at := time.Now().Add(-time.Minute)
	seq, err := b.Add(Message{From: alice, Epoch: 3, KeyID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, Time: at, Data: []byte("hello")})
	require.NoError(t, err)
	require.Equal(t, uint64(1), seq)
	_, err = b.Add(Message{From: bob, Epoch: 1, Data: []byte{}})
	require.NoError(t, err)
	_, err = b.Add(Message{From: alice, Epoch: 4, Data: []byte("again\x00\xff")})
	require.NoError(t, err)

	// A reader cannot open the file while the writer holds it.
	_, err = OpenReadOnly(path, Limits{}, WithLockTimeout(50*time.Millisecond))
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, b.Close())

	r, err := OpenReadOnly(path, Limits{})
	require.NoError(t, err)
	defer r.Close()
	all, err := r.List("", 0)
	require.NoError(t, err)
	require.Len(t, all, 3)
	m := all[0]
	require.Equal(t, uint64(1), m.Seq)
	require.Equal(t, alice, m.From)
	require.Equal(t, uint64(3), m.Epoch)
	require.Equal(t, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, m.KeyID)
	require.True(t, m.Time.Equal(at), "time %v, want %v", m.Time, at)
	require.Equal(t, []string{"hello", "", "again\x00\xff"}, texts(all))

	fromAlice, err := r.List(alice, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"hello", "again\x00\xff"}, texts(fromAlice))
	after, err := r.List("", 2)
	require.NoError(t, err)
	require.Equal(t, []string{"again\x00\xff"}, texts(after))
	_, err = r.Add(Message{From: alice, Data: []byte("x")})
	require.ErrorIs(t, err, ErrReadOnly)
}

func TestBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	p := newPeer(t)
	var c clock
	b, err := Open(path, Limits{MaxCount: 3, MaxAge: time.Hour}, WithClock(c.now))
	require.NoError(t, err)
	for i := range 5 {
		_, err := b.Add(Message{From: p, Data: fmt.Appendf(nil, "m%d", i)})
		require.NoError(t, err)
	}
	// Count: only the newest three.
	all, err := b.List("", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"m2", "m3", "m4"}, texts(all))
	require.Equal(t, uint64(3), all[0].Seq)

	// Age: 40 minutes on, one more; 30 more minutes and the first three
	// are over an hour old: readers skip them at once, Prune deletes them.
	c.advance(40 * time.Minute)
	_, err = b.Add(Message{From: p, Data: []byte("m5")})
	require.NoError(t, err)
	c.advance(30 * time.Minute)
	all, err = b.List("", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"m5"}, texts(all))
	require.NoError(t, b.Prune())
	require.NoError(t, b.db.View(func(tx *bolt.Tx) error {
		require.Equal(t, 1, tx.Bucket(bucketMsgs).Stats().KeyN)
		return nil
	}))
	require.NoError(t, b.Close())

	// Reopened with a smaller age bound: pruned at open. Seqs are never
	// reused.
	c.advance(time.Minute)
	b, err = Open(path, Limits{MaxCount: 3, MaxAge: time.Minute}, WithClock(c.now))
	require.NoError(t, err)
	defer b.Close()
	all, err = b.List("", 0)
	require.NoError(t, err)
	require.Empty(t, all)
	seq, err := b.Add(Message{From: p, Data: []byte("m6")})
	require.NoError(t, err)
	require.Equal(t, uint64(7), seq)
}

func TestChanged(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), FileName), Limits{})
	require.NoError(t, err)
	defer b.Close()
	ch := b.Changed()
	select {
	case <-ch:
		t.Fatal("changed before an Add")
	default:
	}
	_, err = b.Add(Message{From: newPeer(t), Data: []byte("x")})
	require.NoError(t, err)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Add did not signal")
	}
}

func TestRefusesOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	b, err := Open(path, Limits{})
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, os.Chmod(path, 0o644))
	_, err = Open(path, Limits{})
	require.ErrorContains(t, err, "accessible by group or others")

	_, err = OpenReadOnly(filepath.Join(dir, "missing.db"), Limits{})
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)

	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, make([]byte, 8192), 0o600))
	_, err = Open(junk, Limits{})
	require.ErrorIs(t, err, ErrCorrupt)
}
