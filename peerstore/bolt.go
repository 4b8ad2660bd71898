package peerstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/p2pkex/p2pkex/internal/failpoint"
)

// The bbolt store's layout, schema version 1. Values are protobuf messages
// of package peerstore/pb.
//
//	meta/version           8 bytes, big-endian schema version
//	meta/identity          crypto.MarshalPrivateKey of the identity key
//	exchange/current       pb.ExchangeKey
//	exchange/previous      pb.ExchangeKey, in its grace period
//	peers/<peer ID bytes>  pb.PeerKey
//	sessions/<peer ID bytes>/<epoch, 8 bytes big-endian>  pb.SessionKey
//
// The epoch keys sort numerically, so a peer's active session is the last
// key of its bucket and the oldest is the first.
var (
	bucketMeta     = []byte("meta")
	bucketExchange = []byte("exchange")
	bucketPeers    = []byte("peers")
	bucketSessions = []byte("sessions")

	keyVersion  = []byte("version")
	keyIdentity = []byte("identity")
	keyCurrent  = []byte("current")
	keyPrevious = []byte("previous")
)

const schemaVersion = 1

const (
	// BoltFileName is the name of the store's file inside the directory given
	// to OpenBolt.
	BoltFileName = "store.db"
	// DefaultLockTimeout is how long OpenBolt waits for the file lock before
	// it gives up with ErrLocked.
	DefaultLockTimeout = 100 * time.Millisecond
)

type boltConfig struct {
	lockTimeout time.Duration
}

// BoltOption configures OpenBolt.
type BoltOption func(*boltConfig) error

// WithLockTimeout sets how long OpenBolt waits for another process to release
// the store's file lock (default DefaultLockTimeout). It must be positive:
// waiting forever is not offered.
func WithLockTimeout(d time.Duration) BoltOption {
	return func(c *boltConfig) error {
		if d <= 0 {
			return fmt.Errorf("peerstore: lock timeout must be positive, not %v", d)
		}
		c.lockTimeout = d
		return nil
	}
}

// boltStore is the bbolt Store. The read-write mutex guards closed: every
// method holds it shared for its whole transaction, Close holds it
// exclusively, so Close waits for the methods in flight and none starts
// after it.
type boltStore struct {
	mu     sync.RWMutex
	closed bool
	db     *bolt.DB
}

// OpenBolt opens the store in directory dir, creating dir (mode 0700) and its
// file BoltFileName (mode 0600) if they do not exist.
//
// The store's private keys are protected by file permissions only, so
// OpenBolt refuses a directory that group or others can write to, and a file
// that group or others can access at all. It holds an exclusive lock on the
// file while open: if another process (or another Store in this process)
// has the store open, OpenBolt fails after the lock timeout with an error
// wrapping ErrLocked. A file that is not a bbolt database of this package, or
// whose layout is broken, gives an error wrapping ErrCorrupt.
//
// Every write is one bbolt transaction, synced to disk before the method
// returns. Times read back are the instants that were stored, in the local
// time zone.
func OpenBolt(dir string, opts ...BoltOption) (Store, error) {
	cfg := boltConfig{lockTimeout: DefaultLockTimeout}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return nil, errors.New("peerstore: empty directory name")
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, BoltFileName)
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      cfg.lockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open %s: %w: %w", path, ErrCorrupt, err)
	case errors.As(err, new(*fs.PathError)):
		return nil, fmt.Errorf("peerstore: %w", err) // it names the file
	case err != nil:
		return nil, fmt.Errorf("peerstore: open %s: %w", path, err)
	}
	if err := initSchema(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &boltStore{db: db}, nil
}

// prepareDir creates dir, or checks that it is a directory only its owner
// may write to.
func prepareDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("peerstore: create store directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("peerstore: store directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("peerstore: store directory %s is not a directory", dir)
	case runtime.GOOS != "windows" && fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("peerstore: store directory %s is writable by group or others (mode %04o); run chmod 700 on it",
			dir, fi.Mode().Perm())
	}
	return nil
}

// checkFile checks an existing store file: a regular file only its owner may
// access.
func checkFile(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("peerstore: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("peerstore: %s is not a regular file", path)
	case runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("peerstore: %s is accessible by group or others (mode %04o); run chmod 600 on it",
			path, fi.Mode().Perm())
	}
	return nil
}

// initSchema creates the buckets of a new store, or checks those of an
// existing one.
func initSchema(db *bolt.DB) error {
	fresh := false
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return corrupt("no meta bucket")
			}
			fresh = true
			return nil
		}
		v := meta.Get(keyVersion)
		if len(v) != 8 {
			return corrupt("schema version is %d bytes, want 8", len(v))
		}
		if n := binary.BigEndian.Uint64(v); n != schemaVersion {
			return fmt.Errorf("peerstore: store has schema version %d; this build reads version %d", n, schemaVersion)
		}
		for _, name := range [][]byte{bucketExchange, bucketPeers, bucketSessions} {
			if tx.Bucket(name) == nil {
				return corrupt("bucket %q missing", name)
			}
		}
		return nil
	})
	if err != nil || !fresh {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyVersion, binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketExchange, bucketPeers, bucketSessions} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *boltStore) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.View(fn)
}

func (s *boltStore) update(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.Update(fn)
}

// bucket returns a top-level bucket; initSchema made them all, so a missing
// one means the file was damaged.
func bucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, corrupt("bucket %q missing", name)
	}
	return b, nil
}

// peerSessions returns the session bucket of p, or nil if there is none.
func peerSessions(tx *bolt.Tx, p peer.ID) (*bolt.Bucket, error) {
	all, err := bucket(tx, bucketSessions)
	if err != nil {
		return nil, err
	}
	b := all.Bucket([]byte(p))
	if b == nil && all.Get([]byte(p)) != nil {
		return nil, corrupt("sessions of %s: value where a bucket belongs", p)
	}
	return b, nil
}

func (s *boltStore) Identity() (crypto.PrivKey, error) {
	var k crypto.PrivKey
	err := s.view(func(tx *bolt.Tx) error {
		meta, err := bucket(tx, bucketMeta)
		if err != nil {
			return err
		}
		v := meta.Get(keyIdentity)
		if v == nil {
			return ErrNotFound
		}
		k, err = decodeIdentity(v)
		return err
	})
	return k, err
}

func (s *boltStore) SetIdentity(k crypto.PrivKey) error {
	if k == nil {
		return errors.New("peerstore: nil identity key")
	}
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	defer wipe(b) // bbolt needs b until the transaction ends
	return s.update(func(tx *bolt.Tx) error {
		meta, err := bucket(tx, bucketMeta)
		if err != nil {
			return err
		}
		if meta.Get(keyIdentity) != nil {
			return ErrExists
		}
		return meta.Put(keyIdentity, b)
	})
}

func (s *boltStore) ExchangeKeys() (cur *ExchangeKey, prev *ExchangeKey, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketExchange)
		if err != nil {
			return err
		}
		v := b.Get(keyCurrent)
		if v == nil {
			return ErrNotFound
		}
		if cur, err = decodeExchangeKey(v); err != nil {
			return err
		}
		if v := b.Get(keyPrevious); v != nil {
			if prev, err = decodeExchangeKey(v); err != nil {
				wipeExchangeKey(cur)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return cur, prev, nil
}

// RotateExchangeKey overwrites "previous" with the current key. bbolt copies
// on write, so the destroyed key's bytes can stay in a free page of the file
// until bbolt reuses it: the file's permissions are what protects them.
func (s *boltStore) RotateExchangeKey(next ExchangeKey, now time.Time, grace time.Duration) error {
	failpoint.Inject(failpoint.RotateBeforeWrite)
	next.Retire = time.Time{}
	nb, err := encodeExchangeKey(&next)
	if err != nil {
		return err
	}
	var prevBuf []byte
	defer func() { wipe(nb, prevBuf) }()
	err = s.update(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketExchange)
		if err != nil {
			return err
		}
		var cur *ExchangeKey
		if v := b.Get(keyCurrent); v != nil {
			if cur, err = decodeExchangeKey(v); err != nil {
				return err
			}
			defer wipeExchangeKey(cur)
		}
		if err := checkRotate(cur, &next, grace); err != nil {
			return err
		}
		if cur == nil {
			// No current key, so there is no previous one either.
			if err := b.Delete(keyPrevious); err != nil {
				return err
			}
		} else {
			cur.Retire = now.Add(grace)
			if prevBuf, err = encodeExchangeKey(cur); err != nil {
				return err
			}
			if err := b.Put(keyPrevious, prevBuf); err != nil {
				return err
			}
		}
		if err := b.Put(keyCurrent, nb); err != nil {
			return err
		}
		failpoint.Inject(failpoint.RotateAfterWrite)
		return nil
	})
	if err == nil {
		failpoint.Inject(failpoint.RotateAfterCommit)
	}
	return err
}

func (s *boltStore) PruneExchangeKeys(now time.Time) (bool, error) {
	// Look first, so that the common case (nothing to prune) costs no write.
	due := func(tx *bolt.Tx) (bool, error) {
		b, err := bucket(tx, bucketExchange)
		if err != nil {
			return false, err
		}
		v := b.Get(keyPrevious)
		if v == nil {
			return false, nil
		}
		prev, err := decodeExchangeKey(v)
		if err != nil {
			return false, err
		}
		wipeExchangeKey(prev)
		return !now.Before(prev.Retire), nil
	}
	var pruned bool
	err := s.view(func(tx *bolt.Tx) (err error) {
		pruned, err = due(tx)
		return err
	})
	if err != nil || !pruned {
		return false, err
	}
	err = s.update(func(tx *bolt.Tx) (err error) {
		if pruned, err = due(tx); err != nil || !pruned {
			return err
		}
		return tx.Bucket(bucketExchange).Delete(keyPrevious)
	})
	if err != nil {
		return false, err
	}
	return pruned, nil
}

func (s *boltStore) Peer(p peer.ID) (*PeerKey, error) {
	var pk *PeerKey
	err := s.view(func(tx *bolt.Tx) (err error) {
		pk, err = getPeer(tx, p)
		if err == nil && pk == nil {
			err = ErrNotFound
		}
		return err
	})
	return pk, err
}

// getPeer returns the stored record of p, or nil if there is none.
func getPeer(tx *bolt.Tx, p peer.ID) (*PeerKey, error) {
	b, err := bucket(tx, bucketPeers)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(p))
	if v == nil {
		return nil, nil
	}
	return decodePeerKey([]byte(p), v)
}

func putPeer(tx *bolt.Tx, pk *PeerKey) error {
	v, err := encodePeerKey(pk)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketPeers).Put([]byte(pk.Peer), v)
}

func (s *boltStore) Peers() ([]PeerKey, error) {
	var out []PeerKey
	err := s.view(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketPeers)
		if err != nil {
			return err
		}
		out = []PeerKey{}
		// bbolt iterates in byte order of the keys, which is peer ID order.
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return corrupt("peers: bucket where a value belongs")
			}
			pk, err := decodePeerKey(k, v)
			if err != nil {
				return err
			}
			out = append(out, *pk)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *boltStore) SetTrust(p peer.ID, t TrustState) error {
	if err := checkTrust(t); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		pk, err := getPeer(tx, p)
		if err != nil {
			return err
		}
		if pk == nil {
			return ErrNotFound
		}
		pk.Trust = t
		return putPeer(tx, pk)
	})
}

func (s *boltStore) CommitExchange(c Commit) error {
	failpoint.Inject(failpoint.CommitBeforeWrite)
	defer clear(c.Session.Key[:]) // c is our copy; the store holds its own
	if err := checkCommit(&c); err != nil {
		return err
	}
	var secrets [][]byte
	defer func() { wipe(secrets...) }()
	err := s.update(func(tx *bolt.Tx) error {
		if err := commitTx(tx, &c, &secrets); err != nil {
			return err
		}
		failpoint.Inject(failpoint.CommitAfterWrite)
		return nil
	})
	if err == nil {
		failpoint.Inject(failpoint.CommitAfterCommit)
	}
	return err
}

// commitTx is CommitExchange inside transaction tx. The encoded session keys
// it writes are appended to secrets, for the caller to overwrite once the
// transaction has ended (bbolt needs them until then).
func commitTx(tx *bolt.Tx, c *Commit, secrets *[][]byte) error {
	p := c.Session.Peer
	all, err := bucket(tx, bucketSessions)
	if err != nil {
		return err
	}
	sb, err := peerSessions(tx, p)
	if err != nil {
		return err
	}
	if c.Session.Epoch == 0 {
		return ErrStaleEpoch
	}
	if sb != nil {
		if k, _ := sb.Cursor().Last(); k != nil {
			active, err := decodeEpoch(k)
			if err != nil {
				return err
			}
			if c.Session.Epoch <= active {
				return ErrStaleEpoch
			}
		}
	} else if sb, err = all.CreateBucket([]byte(p)); err != nil {
		return err
	}

	old, err := getPeer(tx, p)
	if err != nil {
		return err
	}
	if rec := newPeerRecord(old, c); rec != nil {
		if err := putPeer(tx, rec); err != nil {
			return err
		}
	}

	v, err := encodeSession(&c.Session)
	if err != nil {
		return err
	}
	*secrets = append(*secrets, v)
	if err := sb.Put(encodeEpoch(c.Session.Epoch), v); err != nil {
		return err
	}

	// Keep the KeepEpochs newest epochs.
	var epochs [][]byte
	cur := sb.Cursor()
	for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
		epochs = append(epochs, bytes.Clone(k))
	}
	for i := 0; i < len(epochs)-KeepEpochs; i++ {
		if err := deleteSession(sb, epochs[i]); err != nil {
			return err
		}
	}
	return nil
}

// deleteSession destroys the session key of one epoch in a peer's session
// bucket sb. Every path that removes a session key (epoch pruning, Forget)
// goes through it.
func deleteSession(sb *bolt.Bucket, epoch []byte) error {
	return sb.Delete(epoch)
}

// deletePeer removes the stored record (and trust state) of p. Every path
// that removes a peer's record goes through it.
func deletePeer(tx *bolt.Tx, p peer.ID) error {
	b, err := bucket(tx, bucketPeers)
	if err != nil {
		return err
	}
	return b.Delete([]byte(p))
}

// Forget removes p's record, trust state and session keys in one
// transaction, through deletePeer and deleteSession.
func (s *boltStore) Forget(p peer.ID) (ForgetResult, error) {
	if err := checkPeerID(p); err != nil {
		return ForgetResult{}, err
	}
	var res ForgetResult
	err := s.update(func(tx *bolt.Tx) error {
		res = ForgetResult{}
		pk, err := getPeer(tx, p)
		if err != nil {
			return err
		}
		if pk != nil {
			res.Record, res.Trust = true, pk.Trust
			if err := deletePeer(tx, p); err != nil {
				return err
			}
		}
		sb, err := peerSessions(tx, p)
		if err != nil || sb == nil {
			return err
		}
		var epochs [][]byte
		cur := sb.Cursor()
		for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
			epochs = append(epochs, bytes.Clone(k))
		}
		for _, k := range epochs {
			if err := deleteSession(sb, k); err != nil {
				return err
			}
		}
		res.Sessions = len(epochs)
		return tx.Bucket(bucketSessions).DeleteBucket([]byte(p))
	})
	if err != nil {
		return ForgetResult{}, err
	}
	return res, nil
}

func (s *boltStore) ActiveSession(p peer.ID) (*SessionKey, error) {
	var sk *SessionKey
	err := s.view(func(tx *bolt.Tx) error {
		b, err := peerSessions(tx, p)
		if err != nil {
			return err
		}
		if b == nil {
			return ErrNotFound
		}
		k, v := b.Cursor().Last()
		if k == nil {
			return ErrNotFound
		}
		sk, err = decodeSession([]byte(p), k, v)
		return err
	})
	return sk, err
}

func (s *boltStore) Session(p peer.ID, epoch uint64) (*SessionKey, error) {
	var sk *SessionKey
	err := s.view(func(tx *bolt.Tx) error {
		b, err := peerSessions(tx, p)
		if err != nil {
			return err
		}
		if b == nil {
			return ErrNotFound
		}
		k := encodeEpoch(epoch)
		v := b.Get(k)
		if v == nil {
			return ErrNotFound
		}
		sk, err = decodeSession([]byte(p), k, v)
		return err
	})
	return sk, err
}

func (s *boltStore) Sessions(p peer.ID) ([]SessionKey, error) {
	var out []SessionKey
	err := s.view(func(tx *bolt.Tx) error {
		b, err := peerSessions(tx, p)
		if err != nil {
			return err
		}
		if b == nil {
			return ErrNotFound
		}
		err = b.ForEach(func(k, v []byte) error {
			sk, err := decodeSession([]byte(p), k, v)
			if err != nil {
				return err
			}
			out = append(out, *sk)
			return nil
		})
		if err == nil && len(out) == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		for i := range out {
			clear(out[i].Key[:])
		}
		return nil, err
	}
	return out, nil
}

// Close waits for the methods in flight and closes the file, releasing its
// lock.
func (s *boltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}
