package peerstore_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/pb"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
)

func openBolt(t *testing.T, dir string, opts ...peerstore.BoltOption) peerstore.Store {
	t.Helper()
	st, err := peerstore.OpenBolt(dir, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func TestBolt(t *testing.T) {
	var dirs sync.Map // peerstore.Store -> string
	open := func(t *testing.T) peerstore.Store {
		dir := filepath.Join(t.TempDir(), "store")
		st, err := peerstore.OpenBolt(dir)
		require.NoError(t, err)
		dirs.Store(st, dir)
		return st
	}
	reopen := func(t *testing.T, old peerstore.Store) peerstore.Store {
		dir, ok := dirs.Load(old)
		require.True(t, ok)
		require.NoError(t, old.Close())
		st, err := peerstore.OpenBolt(dir.(string))
		require.NoError(t, err)
		dirs.Store(st, dir)
		return st
	}
	storetest.TestStore(t, open, reopen)
}

func TestBoltModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "store")
	openBolt(t, dir)

	fi, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "directory mode")
	fi, err = os.Stat(filepath.Join(dir, peerstore.BoltFileName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "file mode")
	fi, err = os.Stat(filepath.Join(dir, peerstore.KeysFileName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "key file mode")
}

func TestBoltRefusesLoosePermissions(t *testing.T) {
	t.Run("Directory", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o770))
		_, err := peerstore.OpenBolt(dir)
		require.ErrorContains(t, err, "writable by group or others")
		require.NoError(t, os.Chmod(dir, 0o755)) // readable is fine: the file is 0600
		st := openBolt(t, dir)
		require.NoError(t, st.Close())
	})
	t.Run("File", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, openBolt(t, dir).Close())
		path := filepath.Join(dir, peerstore.BoltFileName)
		require.NoError(t, os.Chmod(path, 0o640))
		_, err := peerstore.OpenBolt(dir)
		require.ErrorContains(t, err, "accessible by group or others")
	})
	t.Run("FileNotRegular", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.Mkdir(filepath.Join(dir, peerstore.BoltFileName), 0o700))
		_, err := peerstore.OpenBolt(dir)
		require.ErrorContains(t, err, "not a regular file")
	})
}

func TestBoltBadDirectory(t *testing.T) {
	t.Run("Empty", func(t *testing.T) {
		_, err := peerstore.OpenBolt("")
		require.Error(t, err)
	})
	t.Run("RegularFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(path, []byte("x"), 0o600))
		_, err := peerstore.OpenBolt(path)
		require.ErrorContains(t, err, "not a directory")
		_, err = peerstore.OpenBolt(filepath.Join(path, "sub"))
		require.ErrorContains(t, err, "not a directory")
	})
	t.Run("Unreadable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0))
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		_, err := peerstore.OpenBolt(dir)
		require.ErrorIs(t, err, os.ErrPermission)
		require.ErrorContains(t, err, dir)
	})
}

func TestBoltLocked(t *testing.T) {
	dir := t.TempDir()
	st := openBolt(t, dir)

	_, err := peerstore.OpenBolt(dir, peerstore.WithLockTimeout(time.Millisecond))
	require.ErrorIs(t, err, peerstore.ErrLocked)
	require.ErrorContains(t, err, filepath.Join(dir, peerstore.BoltFileName))

	// With the default timeout too: the second opener must not hang. The
	// generous bound only turns a hang into a clear failure.
	done := make(chan error, 1)
	go func() {
		_, err := peerstore.OpenBolt(dir)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, peerstore.ErrLocked)
	case <-time.After(30 * time.Second):
		t.Fatal("second OpenBolt hangs")
	}

	// Closing releases the lock.
	require.NoError(t, st.Close())
	require.NoError(t, openBolt(t, dir).Close())

	_, err = peerstore.OpenBolt(dir, peerstore.WithLockTimeout(0))
	require.Error(t, err, "a zero lock timeout would wait forever")
}

// rawUpdate changes the store in dir with bbolt directly.
func rawUpdate(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, peerstore.BoltFileName), 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestBoltCorrupt(t *testing.T) {
	garbage := []byte{0xff, 0xff, 0xff}
	p := storetest.RandPeerID(t)
	epoch1 := binary.BigEndian.AppendUint64(nil, 1)
	goodSession := &pb.SessionKey{Key: make([]byte, 32), KeyId: make([]byte, 8)}
	sealedSlot1 := make([]byte, 8+12+16+32) // a sealed key of slot 1, as sealedSlot reads it
	sealedSlot1[7] = 1
	put := func(path ...[]byte) func([]byte) func(*bolt.Tx) error {
		return func(v []byte) func(*bolt.Tx) error {
			return func(tx *bolt.Tx) error {
				b := tx.Bucket(path[0])
				for _, name := range path[1 : len(path)-1] {
					var err error
					if b, err = b.CreateBucketIfNotExists(name); err != nil {
						return err
					}
				}
				return b.Put(path[len(path)-1], v)
			}
		}
	}
	putSession := put([]byte("sessions"), []byte(p), epoch1)
	putPeer := put([]byte("peers"), []byte(p))
	putState := put([]byte("state"), []byte(p))
	state := func(flags, trust byte, seq, epoch uint64, fp ...byte) []byte {
		v := append([]byte{flags, trust}, binary.BigEndian.AppendUint64(nil, seq)...)
		return append(binary.BigEndian.AppendUint64(v, epoch), fp...)
	}

	identity := func(st peerstore.Store) error { _, err := st.Identity(); return err }
	exchangeKeys := func(st peerstore.Store) error { _, _, err := st.ExchangeKeys(); return err }
	rotate := func(st peerstore.Store) error {
		return st.RotateExchangeKey(peerstore.ExchangeKey{Seq: 100}, time.Now(), time.Hour)
	}
	prune := func(st peerstore.Store) error { _, err := st.PruneExchangeKeys(time.Now()); return err }
	getPeer := func(st peerstore.Store) error { _, err := st.Peer(p); return err }
	peers := func(st peerstore.Store) error { _, err := st.Peers(); return err }
	setTrust := func(st peerstore.Store) error { return st.SetTrust(p, peerstore.TrustVerified) }
	commit := func(st peerstore.Store) error {
		return st.CommitExchange(peerstore.Commit{Session: peerstore.SessionKey{Peer: p, Epoch: 1 << 40}})
	}
	active := func(st peerstore.Store) error { _, err := st.ActiveSession(p); return err }
	session := func(st peerstore.Store) error { _, err := st.Session(p, 1); return err }
	sessions := func(st peerstore.Store) error { _, err := st.Sessions(p); return err }
	lookup := func(st peerstore.Store) error { _, err := st.Lookup(p); return err }
	list := func(st peerstore.Store) error { _, err := st.ListPeers("", 10); return err }
	// both applies two mutations.
	both := func(a, b func(*bolt.Tx) error) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			if err := a(tx); err != nil {
				return err
			}
			return b(tx)
		}
	}

	tests := []struct {
		name   string
		mutate func(*bolt.Tx) error
		calls  []func(peerstore.Store) error
	}{
		{"Identity", put([]byte("meta"), []byte("identity"))(garbage), []func(peerstore.Store) error{identity}},
		{"IdentityKeyType", put([]byte("meta"), []byte("identity"))([]byte{0x08, 0x63, 0x12, 0x00}), []func(peerstore.Store) error{identity}},
		{"ExchangeCurrent", put([]byte("exchange"), []byte("current"))(garbage), []func(peerstore.Store) error{exchangeKeys, rotate}},
		{"ExchangePrevious", func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("exchange"))
			if err := b.Put([]byte("current"), marshal(t, &pb.ExchangeKey{Seq: 1})); err != nil {
				return err
			}
			return b.Put([]byte("previous"), garbage)
		}, []func(peerstore.Store) error{exchangeKeys, prune}},
		{"ExchangeSuite", put([]byte("exchange"), []byte("current"))(marshal(t, &pb.ExchangeKey{Keys: []*pb.SuiteKey{{Suite: 1 << 16}}})), []func(peerstore.Store) error{exchangeKeys}},
		{"State", putState(garbage), []func(peerstore.Store) error{lookup, commit, list}},
		{"StateFlags", putState(state(3, 1, 1, 1)), []func(peerstore.Store) error{lookup, commit, list}},
		{"StateTrustRange", putState(state(1, 4, 1, 1)), []func(peerstore.Store) error{lookup, commit, list}},
		{"StateTrustWithoutRecord", putState(state(0, 1, 0, 1)), []func(peerstore.Store) error{lookup, commit, list}},
		{"StateFingerprintWithoutRecord", putState(state(0, 0, 0, 1, 7)), []func(peerstore.Store) error{lookup, list}},
		{"StateNotAPeerID", put([]byte("state"), []byte("not a peer ID"))(state(0, 0, 0, 1)), []func(peerstore.Store) error{list}},
		{"StateEpochWithoutSessions", putState(state(0, 0, 0, 1)), []func(peerstore.Store) error{list}},
		{"StateEpochWithoutSession", both(putState(state(0, 0, 0, 2)), putSession(marshal(t, goodSession))), []func(peerstore.Store) error{list}},
		{"StateSession", both(putState(state(0, 0, 0, 1)), putSession(garbage)), []func(peerstore.Store) error{list, active}},
		{"StateSessionPlaintext", both(putState(state(0, 0, 0, 1)), putSession(marshal(t, goodSession))), []func(peerstore.Store) error{list, active}},
		{"StateSessionTime", both(putState(state(0, 0, 0, 1)), putSession(marshal(t, &pb.SessionKey{Sealed: sealedSlot1, KeyId: make([]byte, 8), Created: &pb.Time{Nanos: -1}}))), []func(peerstore.Store) error{list}},
		{"StateEmpty", putState(state(0, 0, 0, 0)), []func(peerstore.Store) error{lookup, commit, list}},
		{"Peer", putPeer(garbage), []func(peerstore.Store) error{getPeer, peers, setTrust, commit}},
		{"PeerTrustZero", putPeer(marshal(t, &pb.PeerKey{})), []func(peerstore.Store) error{getPeer, peers}},
		{"PeerTrustRange", putPeer(marshal(t, &pb.PeerKey{Trust: 4})), []func(peerstore.Store) error{getPeer, peers, setTrust}},
		{"PeerTime", putPeer(marshal(t, &pb.PeerKey{Trust: 1, LastSeen: &pb.Time{Nanos: 1e9}})), []func(peerstore.Store) error{getPeer, peers}},
		{"PeerNotAPeerID", put([]byte("peers"), []byte("not a peer ID"))(marshal(t, &pb.PeerKey{Trust: 1})), []func(peerstore.Store) error{peers}},
		{"PeerIsBucket", func(tx *bolt.Tx) error {
			_, err := tx.Bucket([]byte("peers")).CreateBucket([]byte(p))
			return err
		}, []func(peerstore.Store) error{peers}},
		{"Session", putSession(garbage), []func(peerstore.Store) error{active, session, sessions}},
		{"SessionKeySize", putSession(marshal(t, &pb.SessionKey{Key: make([]byte, 31), KeyId: make([]byte, 8)})), []func(peerstore.Store) error{active, session, sessions}},
		{"SessionKeyIDSize", putSession(marshal(t, &pb.SessionKey{Key: make([]byte, 32), KeyId: make([]byte, 9)})), []func(peerstore.Store) error{active, session, sessions}},
		{"SessionSuite", putSession(marshal(t, &pb.SessionKey{Key: make([]byte, 32), KeyId: make([]byte, 8), Suite: 1 << 16})), []func(peerstore.Store) error{active}},
		{"SessionEpochKey", put([]byte("sessions"), []byte(p), []byte("epoch"))(marshal(t, goodSession)), []func(peerstore.Store) error{active, sessions, commit}},
		{"SessionEpochZero", put([]byte("sessions"), []byte(p), make([]byte, 8))(marshal(t, goodSession)), []func(peerstore.Store) error{active, sessions, commit}},
		{"SessionsNotBucket", put([]byte("sessions"), []byte(p))(garbage), []func(peerstore.Store) error{active, session, sessions, commit}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, openBolt(t, dir).Close())
			rawUpdate(t, dir, tc.mutate)
			st := openBolt(t, dir)
			for i, call := range tc.calls {
				require.ErrorIs(t, call(st), peerstore.ErrCorrupt, "call %d", i)
			}
		})
	}
}

func TestBoltCorruptFile(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*bolt.Tx) error
		notErr error // when set, the error must not wrap ErrCorrupt
	}{
		{"VersionSize", func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte{1}) }, nil},
		{"VersionMissing", func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("version")) }, nil},
		{"BucketMissing", func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("peers")) }, nil},
		{"StateBucketMissing", func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("state")) }, nil},
		{"NoMetaButData", func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("meta")) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, openBolt(t, dir).Close())
			rawUpdate(t, dir, tc.mutate)
			_, err := peerstore.OpenBolt(dir)
			require.ErrorIs(t, err, peerstore.ErrCorrupt)
		})
	}

	t.Run("NewerSchema", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, openBolt(t, dir).Close())
		rawUpdate(t, dir, func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint64(nil, 4))
		})
		_, err := peerstore.OpenBolt(dir)
		require.ErrorContains(t, err, "schema version 4")
		require.NotErrorIs(t, err, peerstore.ErrCorrupt)
	})

	t.Run("NotBolt", func(t *testing.T) {
		for _, content := range [][]byte{
			bytes.Repeat([]byte{0x42}, 64<<10),
			func() []byte { b := make([]byte, 64<<10); rand.Read(b); return b }(),
		} {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, peerstore.BoltFileName), content, 0o600))
			_, err := peerstore.OpenBolt(dir)
			require.ErrorIs(t, err, peerstore.ErrCorrupt)
		}
	})
}

// TestBoltIdentityEncoding checks that the identity goes to disk in the
// documented encoding (crypto.MarshalPrivateKey).
func TestBoltIdentityEncoding(t *testing.T) {
	dir := t.TempDir()
	st := openBolt(t, dir)
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, st.SetIdentity(k))
	require.NoError(t, st.Close())

	want, err := crypto.MarshalPrivateKey(k)
	require.NoError(t, err)
	db, err := bolt.Open(filepath.Join(dir, peerstore.BoltFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		require.Equal(t, want, tx.Bucket([]byte("meta")).Get([]byte("identity")))
		return nil
	}))
}

// TestBoltMissingKeyFile: a store file copied without its key file is
// refused with a message that names the missing file, and left as it was.
func TestBoltMissingKeyFile(t *testing.T) {
	dir := t.TempDir()
	st := openBolt(t, dir)
	require.NoError(t, st.CommitExchange(peerstore.Commit{Session: peerstore.SessionKey{Peer: storetest.RandPeerID(t), Epoch: 1}}))
	require.NoError(t, st.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, peerstore.KeysFileName)))
	_, err := peerstore.OpenBolt(dir)
	require.ErrorIs(t, err, peerstore.ErrCorrupt)
	require.ErrorContains(t, err, peerstore.KeysFileName+" is missing")
	_, err = os.Stat(filepath.Join(dir, peerstore.KeysFileName))
	require.True(t, os.IsNotExist(err), "no empty key file left behind")
}
