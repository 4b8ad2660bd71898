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
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/internal/failpoint"
	"github.com/p2pkex/p2pkex/peerstore/pb"
)

// The bbolt store's layout, schema version 3. Values are protobuf messages
// of package peerstore/pb, but for those of state.
//
//	meta/version           8 bytes, big-endian schema version
//	meta/identity          crypto.MarshalPrivateKey of the identity key
//	exchange/current       pb.ExchangeKey, private keys sealed
//	exchange/previous      pb.ExchangeKey, private keys sealed, in its grace period
//	peers/<peer ID bytes>  pb.PeerKey
//	sessions/<peer ID bytes>/<epoch, 8 bytes big-endian>  pb.SessionKey, key sealed
//	state/<peer ID bytes>  what Lookup returns: flags, trust, seq, epoch, fingerprint (codec.go, encodeState)
//
// state holds one value for every peer that has a record or a session: a
// copy of the record's Seq, Fingerprint and Trust and the active epoch,
// written in the same transaction as what it copies (writeTx.putState).
// It exists so that Lookup, which the node calls on every exchange, reads a
// tree of 100-150 bytes per peer instead of the records' (1.4 KB each,
// two or three to a page) and the sessions': at 100,000 peers the first
// reads after an open would otherwise each fault in pages of a 270 MB file
// (docs/performance/store.md, "A compact tree for Lookup"). Version 2 had
// no state bucket; OpenBolt builds it (migrate.go).
//
// The epoch keys sort numerically, so a peer's active session is the last
// key of its bucket and the oldest is the first.
//
// Every secret that the store ever destroys (exchange private keys, session
// keys) is sealed under a key of its own in the key file beside store.db
// (KeysFileName), which is what makes destroying it possible: see shred.go.
// The identity key is never destroyed and is stored as it is. Version 1
// stored the secrets in the clear; OpenBolt migrates such a store
// (migrate.go).
var (
	bucketMeta     = []byte("meta")
	bucketExchange = []byte("exchange")
	bucketPeers    = []byte("peers")
	bucketSessions = []byte("sessions")
	bucketState    = []byte("state")

	keyVersion  = []byte("version")
	keyIdentity = []byte("identity")
	keyCurrent  = []byte("current")
	keyPrevious = []byte("previous")
)

const schemaVersion = 3

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
	migrating   func(from, to int)
	noWarm      bool // WithoutWarm
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

// WithMigrationNotice has OpenBolt call f, before it migrates a store of an
// older schema version (from) to this build's (to). A migration reads
// every record and writes the store again (seconds at 100,000 peers, once),
// so a program can tell its user why the open takes long. f is not called
// when no migration is needed.
func WithMigrationNotice(f func(from, to int)) BoltOption {
	return func(c *boltConfig) error {
		c.migrating = f
		return nil
	}
}

// WithoutWarm has OpenBolt skip its walk of the tree Lookup reads
// (warmState), which maps that tree's pages so that the first Lookups
// after the open need no page faults. The walk is for a program that goes
// on to serve exchanges with many peers (a daemon); it costs the open a
// page fault per 27 or so known peers: at 100,000 peers 50–200 ms with the
// page cache warm and 0.25–0.4 s from the disk, against 1–8 and 5–20 ms
// without it. A program that opens the store to read or change a few
// peers, or none, and closes it (a one-shot command) should skip it. The
// store behaves the same either way; without the walk only the first read
// of each page is slower (a first Lookup of 0.1–0.5 ms warm, 0.7–2.5 ms
// cold; docs/performance/store.md, "Opening without the warm walk").
func WithoutWarm() BoltOption {
	return func(c *boltConfig) error {
		c.noWarm = true
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
	keys   *keyFile    // the shredding keys of the sealed secrets (shred.go)
	batch  groupCommit // CommitExchange's group commit (batch.go)
	peers  *peerCache  // decoded records for Peer (peercache.go)
}

// OpenBolt opens the store in directory dir, creating dir (mode 0700) and its
// files BoltFileName and KeysFileName (mode 0600) if they do not exist.
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
// returns; concurrent CommitExchange calls may share one (group commit,
// batch.go), each still returning only once its commit is synced. Times read back are the instants that were stored, in the local
// time zone. A destroyed secret (a pruned session key, a replaced exchange
// key) is unrecoverable from the store's files once the method that
// destroyed it returns, or, if the process died in it, once the store is
// opened again (shred.go). A store of an older schema version (1 or 2) is
// migrated (WithMigrationNotice). Unless WithoutWarm is given, OpenBolt
// reads the tree Lookup reads once before it returns (warmState).
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
	keysPath := filepath.Join(dir, KeysFileName)
	for _, p := range []string{path, keysPath} {
		if err := checkFile(p); err != nil {
			return nil, err
		}
	}
	db, err := openDB(path, &cfg)
	if err != nil {
		return nil, err
	}
	// The key file is only touched under store.db's lock.
	version, err := initSchema(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	keys, clean, err := openKeyFile(keysPath)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &boltStore{db: db, keys: keys, peers: newPeerCache()}
	if keys.fresh && version != 1 {
		if err := checkNoSealed(db); err != nil {
			db.Close()
			keys.close()
			return nil, errors.Join(fmt.Errorf("open %s: %w: %s is missing, and it holds the keys of the secrets in %s (copy the two files together)",
				path, ErrCorrupt, KeysFileName, BoltFileName), removeFile(keysPath))
		}
	}
	if version < schemaVersion && cfg.migrating != nil {
		cfg.migrating(int(version), schemaVersion)
	}
	if version == 1 {
		err = s.migrate(dir, &cfg) // migrate.go
	} else {
		// A migration that died before its rename left this behind: it
		// holds only sealed values, whose slots the check below wipes.
		err = removeFile(path + migrateSuffix)
		if err == nil && !clean {
			err = s.recoverKeys()
		} else if err == nil {
			err = keys.use(nil)
		}
		if err == nil && version == 2 {
			readAhead(path)     // migrate.go
			err = migrateV2(db) // migrate.go
		}
	}
	if err == nil && !cfg.noWarm {
		err = warmState(s.db)
	}
	if err != nil {
		s.db.Close()
		keys.failed = true // not checked: the next open checks it again
		keys.close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// openDB opens the bbolt file, mapping its errors to the store's.
func openDB(path string, cfg *boltConfig) (*bolt.DB, error) {
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
	return db, nil
}

// warmState reads every page of bucket state once, so that the first
// Lookups after the open find the pages mapped: without it, each of them
// would fault in the pages of its path through the tree, from the disk if
// the page cache lost them (after a reboot, or on a machine that reclaims
// idle file pages): measured at 100,000 peers, p99 0.35 ms with the page
// cache warm and 0.7 ms cold without the walk, 26–49 µs with it
// (docs/performance/store.md, "A compact tree for Lookup"). The walk
// costs the open one fault per page of the tree (about 150 bytes a peer:
// 3,700 pages at 100,000), 0.05–0.1 s warm and 0.3–0.7 s cold there.
// Pages the process has mapped are also not the idle, unmapped page cache
// that reclaim takes first, so they stay while the daemon waits. A program
// that reads a peer or two and closes the store gains nothing from the
// walk and skips it (WithoutWarm).
//
// The walk is split into key ranges walked at once, one per P: a page
// fault holds its thread (and P) until the disk answers, so one walk
// would read the tree one page at a time.
func warmState(db *bolt.DB) error {
	var first, last []byte
	err := db.View(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketState)
		if err != nil {
			return err
		}
		k, _ := b.Cursor().First()
		first = bytes.Clone(k)
		k, _ = b.Cursor().Last()
		last = bytes.Clone(k)
		return nil
	})
	if err != nil || first == nil {
		return err
	}
	bounds := splitKeys(first, last, runtime.GOMAXPROCS(0))
	errs := make([]error, len(bounds)+1)
	walked := make([]int, len(bounds)+1)
	var wg sync.WaitGroup
	for i := range len(bounds) + 1 {
		from, to := first, []byte(nil)
		if i > 0 {
			from = bounds[i-1]
		}
		if i < len(bounds) {
			to = bounds[i]
		}
		wg.Go(func() {
			errs[i] = db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketState).Cursor()
				for k, _ := c.Seek(from); k != nil && (to == nil || bytes.Compare(k, to) < 0); k, _ = c.Next() {
					walked[i]++
				}
				return nil
			})
		})
	}
	wg.Wait()
	if h := testHookWarmed.Load(); h != nil {
		n := 0
		for _, w := range walked {
			n += w
		}
		(*h)(db.Path(), n)
	}
	return errors.Join(errs...)
}

// testHookWarmed, if set, is called by warmState after its walk of a
// store that holds at least one peer, with the store's file and the
// number of keys the walk visited.
var testHookWarmed atomic.Pointer[func(path string, keys int)]

// splitKeys returns up to n-1 keys that split the keys from first to last
// (first < last) into about equal ranges, if the keys are spread evenly
// in the byte after their common prefix (peer IDs are: they end in a hash
// or a public key). In order, each above first and at most last.
func splitKeys(first, last []byte, n int) [][]byte {
	i := 0
	for i < len(first) && i < len(last) && first[i] == last[i] {
		i++
	}
	if i == len(first) || i == len(last) || n < 2 {
		return nil
	}
	lo, hi := int(first[i]), int(last[i]) // lo < hi
	var out [][]byte
	for j := 1; j < n; j++ {
		c := lo + (hi-lo+1)*j/n
		if c <= lo || (len(out) > 0 && c <= int(out[len(out)-1][i])) {
			continue
		}
		out = append(out, append(bytes.Clone(first[:i]), byte(c)))
	}
	return out
}

// recoverKeys runs after a crash (the key file was not closed cleanly): it
// wipes every shredding slot that no sealed value in bbolt names. Those are
// the slots of secrets whose deletion committed but whose wipe the crash
// prevented, and of secrets sealed for a transaction that never committed.
func (s *boltStore) recoverKeys() error {
	refs := map[uint64]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEachSealed(tx, func(slot uint64) { refs[slot] = true })
	})
	if err != nil {
		return err
	}
	return s.keys.use(func(n uint64) bool { return refs[n] })
}

// forEachSealed calls fn with the slot of every sealed value in the store.
// It reads only the sealed fields: a value that is damaged elsewhere still
// keeps its key (reading it reports the damage), and one that does not
// parse at all names no slot.
func forEachSealed(tx *bolt.Tx, fn func(slot uint64)) error {
	ex, err := bucket(tx, bucketExchange)
	if err != nil {
		return err
	}
	sealedSlotOf := func(b []byte) {
		if n, err := sealedSlot(b, -1); err == nil {
			fn(n)
		}
	}
	for _, name := range [][]byte{keyCurrent, keyPrevious} {
		var m pb.ExchangeKey
		if v := ex.Get(name); v != nil && proto.Unmarshal(v, &m) == nil {
			for _, sk := range m.Keys {
				sealedSlotOf(sk.GetSealed())
			}
		}
	}
	all, err := bucket(tx, bucketSessions)
	if err != nil {
		return err
	}
	return all.ForEachBucket(func(p []byte) error {
		return all.Bucket(p).ForEach(func(k, v []byte) error {
			var m pb.SessionKey
			if v != nil && proto.Unmarshal(v, &m) == nil {
				sealedSlotOf(m.GetSealed())
			}
			return nil
		})
	})
}

// errSealed: checkNoSealed found a sealed value.
var errSealed = errors.New("sealed value")

// checkNoSealed fails with errSealed if the store holds a sealed value.
func checkNoSealed(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		found := false
		if err := forEachSealed(tx, func(uint64) { found = true }); err != nil {
			return err
		}
		if found {
			return errSealed
		}
		return nil
	})
}

// exchangeSlots returns the shredding slots of a stored exchange key.
func exchangeSlots(v []byte) ([]uint64, error) {
	k, sealed, err := decodeExchangeKey(v)
	if err != nil {
		return nil, err
	}
	wipeExchangeKey(k)
	var slots []uint64
	for _, b := range sealed {
		if b == nil {
			return nil, corrupt("exchange key: plaintext private key in a version %d store", schemaVersion)
		}
		n, _ := sealedSlot(b, -1) // decodeExchangeKey checked it
		slots = append(slots, n)
	}
	return slots, nil
}

// sessionSlot returns the shredding slot of a stored session epoch.
func sessionSlot(p, k, v []byte) (uint64, error) {
	sk, sealed, err := decodeSession(p, k, v)
	if err != nil {
		return 0, err
	}
	clear(sk.Key[:])
	if sealed == nil {
		return 0, corrupt("session: plaintext key in a version %d store", schemaVersion)
	}
	return sealedSlot(sealed, KeySize)
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("peerstore: %w", err)
	}
	return nil
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
// existing one, and returns its schema version: 1 or 2 (to be migrated) or
// schemaVersion.
func initSchema(db *bolt.DB) (uint64, error) {
	fresh := false
	var version uint64
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
		if version = binary.BigEndian.Uint64(v); version < 1 || version > schemaVersion {
			return fmt.Errorf("peerstore: store has schema version %d; this build reads versions 1 to %d", version, schemaVersion)
		}
		names := [][]byte{bucketExchange, bucketPeers, bucketSessions}
		if version == schemaVersion {
			names = append(names, bucketState)
		}
		for _, name := range names {
			if tx.Bucket(name) == nil {
				return corrupt("bucket %q missing", name)
			}
		}
		return nil
	})
	if err != nil || !fresh {
		return version, err
	}
	return schemaVersion, db.Update(createSchema)
}

// createSchema makes the buckets of an empty store of version schemaVersion.
func createSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(keyVersion, binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
		return err
	}
	for _, name := range [][]byte{bucketExchange, bucketPeers, bucketSessions, bucketState} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

// view runs a read transaction. It holds the key file's lock shared, so
// that no slot a snapshot names is wiped under it (shred.go).
func (s *boltStore) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.keys.mu.RLock()
	defer s.keys.mu.RUnlock()
	return s.db.View(fn)
}

// writeTx is a write transaction that may seal and destroy secrets. Every
// secret the store writes goes through seal, and every one it destroys
// through shred: the two places that keep the key file in step with bbolt.
type writeTx struct {
	tx       *bolt.Tx
	keys     *keyFile
	cache    *peerCache           // nil in a migration
	txid     uint64               // tx.ID()
	written  map[peer.ID]*PeerKey // records it wrote (nil: deleted), for the cache
	fresh    []uint64             // slots sealed in this transaction: wiped if it fails
	unsynced bool                 // a fresh slot's key is not yet synced (not from the pool)
	dead     []uint64             // slots of the secrets it deleted: destroyed once it committed
}

// seal seals secret for place (kind, where) under a new slot.
func (w *writeTx) seal(kind string, where, secret []byte) ([]byte, error) {
	sealed, slot, synced, err := w.keys.seal(kind, where, secret)
	if err != nil {
		return nil, err
	}
	w.fresh = append(w.fresh, slot)
	w.unsynced = w.unsynced || !synced
	return sealed, nil
}

// beforeCommit is the last step of every write transaction: the keys of
// the slots it names must be on disk before it commits. Those from the
// pool are (shred.go); only a slot written for this transaction costs a
// sync of the key file here.
func (w *writeTx) beforeCommit() error {
	if w.unsynced {
		return w.keys.sync()
	}
	return nil
}

// afterCommit destroys the slots of the secrets the committed transaction
// deleted and refills the pool, in one sync of the key file (recycle); fp
// is a failpoint before that sync ("" for none).
func (w *writeTx) afterCommit(fp string) error {
	if err := w.keys.recycle(w.dead, len(w.fresh), fp); err != nil {
		return fmt.Errorf("destroy deleted keys (the next open retries): %w", err)
	}
	return nil
}

// settle hands the peer records the transaction wrote to the cache once it
// has committed (or failed), and lifts their pending marks (peercache.go).
func (w *writeTx) settle(committed bool) {
	if w.cache != nil && len(w.written) > 0 {
		w.cache.end(w.written, w.txid, committed)
	}
}

// wrote notes that the transaction wrote p's record (nil: deleted it);
// the first time, it marks p pending in the cache, before the commit.
func (w *writeTx) wrote(p peer.ID, pk *PeerKey) {
	if w.cache == nil {
		return
	}
	if _, ok := w.written[p]; !ok {
		if w.written == nil {
			w.written = map[peer.ID]*PeerKey{}
		}
		w.cache.begin(p)
	}
	w.written[p] = pk
}

// shred marks the slots of deleted secrets for wiping after the commit.
func (w *writeTx) shred(slots ...uint64) { w.dead = append(w.dead, slots...) }

// state returns the value in bucket state of the peer whose ID's bytes
// are key, as this transaction sees it (zero if there is none).
func (w *writeTx) state(key []byte) (PeerState, error) {
	b, err := bucket(w.tx, bucketState)
	if err != nil {
		return PeerState{}, err
	}
	v := b.Get(key)
	if v == nil {
		return PeerState{}, nil
	}
	return decodeState(v)
}

// putState stores st as the value in bucket state of peer p (whose ID's
// bytes are key), or deletes it if p has neither a record nor a session. Every write of what Lookup returns
// goes through it, in the transaction that changes what it copies:
// putPeer and deletePeer (the record's fields), commitTx (the record's
// fields and the active epoch) and deleteSession (the active epoch). So
// Lookup reads bucket state alone and sees what Peer and ActiveSession
// would in the same snapshot.
func (w *writeTx) putState(key []byte, st PeerState) error {
	b, err := bucket(w.tx, bucketState)
	if err != nil {
		return err
	}
	if !st.Record && st.Epoch == 0 {
		return b.Delete(key)
	}
	return b.Put(key, encodeState(&st))
}

// deleteEpoch deletes one epoch of a peer's session bucket b, whose value
// is v, and shreds its key. It is the only way a session key leaves the
// store. It leaves bucket state as it is: its callers keep it true
// (deleteSession; commitTx, whose pruning never deletes the active epoch).
// p is a valid peer ID (its callers' methods check it), so the slot is
// sessionSlot's whenever peekSessionSlot reads one.
func (w *writeTx) deleteEpoch(b *bolt.Bucket, p peer.ID, epochKey, v []byte) error {
	slot, ok := peekSessionSlot(v) // no decoding, in the common case
	if _, err := decodeEpoch(epochKey); err != nil || !ok {
		var err error
		if slot, err = sessionSlot([]byte(p), epochKey, v); err != nil {
			return err // it says why
		}
	}
	if err := b.Delete(epochKey); err != nil {
		return err
	}
	w.shred(slot)
	return nil
}

// deleteSession deletes one epoch of a peer's session bucket b and shreds
// its key (deleteEpoch), keeping p's active epoch in bucket state true.
func (w *writeTx) deleteSession(b *bolt.Bucket, p peer.ID, epochKey []byte) error {
	v := b.Get(epochKey)
	if v == nil {
		return nil
	}
	if err := w.deleteEpoch(b, p, epochKey, v); err != nil {
		return err
	}
	// A deletion of the active epoch makes the next highest active.
	st, err := w.state([]byte(p))
	if err != nil {
		return err
	}
	if e, _ := decodeEpoch(epochKey); e != st.Epoch {
		return nil
	}
	st.Epoch = 0
	if k, _ := b.Cursor().Last(); k != nil {
		if st.Epoch, err = decodeEpoch(k); err != nil {
			return err
		}
	}
	return w.putState([]byte(p), st)
}

// deletePeerSessions deletes every session epoch of p, and p's session
// bucket, shredding the keys; it returns how many there were. A store-level
// "forget this peer" must delete the sessions through it, so that their
// keys are destroyed and not only unlinked.
func (w *writeTx) deletePeerSessions(p peer.ID) (int, error) {
	all, err := bucket(w.tx, bucketSessions)
	if err != nil {
		return 0, err
	}
	sb, err := peerSessions(w.tx, p)
	if err != nil || sb == nil {
		return 0, err
	}
	var epochs [][]byte
	if err := sb.ForEach(func(k, _ []byte) error { epochs = append(epochs, bytes.Clone(k)); return nil }); err != nil {
		return 0, err
	}
	for _, k := range epochs {
		if err := w.deleteSession(sb, p, k); err != nil {
			return 0, err
		}
	}
	failpoint.Inject(failpoint.DeleteSessionsAfterWrite)
	return len(epochs), all.DeleteBucket([]byte(p))
}

// deleteExchangeKey deletes the exchange key stored under name and shreds
// its private keys. It is the only way an exchange private key leaves the
// store.
func (w *writeTx) deleteExchangeKey(b *bolt.Bucket, name []byte) error {
	v := b.Get(name)
	if v == nil {
		return nil
	}
	slots, err := exchangeSlots(v)
	if err != nil {
		return err
	}
	if err := b.Delete(name); err != nil {
		return err
	}
	w.shred(slots...)
	return nil
}

// write runs a write transaction. The keys sealed in it are on disk before
// it commits (beforeCommit); the slots of the secrets it deleted are
// destroyed after it committed (afterCommit), after failpoint afterCommit
// ("" for none).
func (s *boltStore) write(afterCommit string, fn func(w *writeTx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	// Before anything can leave a slot that nothing names.
	if err := s.keys.markOpen(); err != nil {
		return err
	}
	w := &writeTx{keys: s.keys, cache: s.peers}
	err := s.db.Update(func(tx *bolt.Tx) error {
		w.tx, w.txid = tx, uint64(tx.ID())
		if err := fn(w); err != nil {
			return err
		}
		return w.beforeCommit()
	})
	w.settle(err == nil)
	if err != nil {
		// Nothing refers to the new slots.
		return errors.Join(err, s.keys.wipe(w.fresh))
	}
	if afterCommit != "" {
		failpoint.Inject(afterCommit)
	}
	return w.afterCommit("")
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
	return s.write("", func(w *writeTx) error {
		meta, err := bucket(w.tx, bucketMeta)
		if err != nil {
			return err
		}
		if meta.Get(keyIdentity) != nil {
			return ErrExists
		}
		return meta.Put(keyIdentity, b)
	})
}

// openExchangeKey decodes a stored exchange key and opens its private keys.
// The caller holds the key file's lock shared (view).
func (s *boltStore) openExchangeKey(v []byte) (*ExchangeKey, error) {
	k, sealed, err := decodeExchangeKey(v)
	if err != nil {
		return nil, err
	}
	for i, b := range sealed {
		if b == nil {
			wipeExchangeKey(k)
			return nil, corrupt("exchange key: plaintext private key in a version %d store", schemaVersion)
		}
		out := make([]byte, len(b)-sealedOverhead)
		if k.Keys[i].Private, err = s.keys.open(out, "exchange", exchangeWhere(k.Seq, k.Keys[i].Suite), b); err != nil {
			wipeExchangeKey(k)
			return nil, err
		}
	}
	return k, nil
}

// sealExchangeKey encodes k with its private keys sealed in w.
func sealExchangeKey(w *writeTx, k *ExchangeKey) ([]byte, error) {
	sealed := make([][]byte, len(k.Keys))
	for i, sk := range k.Keys {
		var err error
		if sealed[i], err = w.seal("exchange", exchangeWhere(k.Seq, sk.Suite), sk.Private); err != nil {
			return nil, err
		}
	}
	return encodeExchangeKey(k, sealed)
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
		if cur, err = s.openExchangeKey(v); err != nil {
			return err
		}
		if v := b.Get(keyPrevious); v != nil {
			if prev, err = s.openExchangeKey(v); err != nil {
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

// RotateExchangeKey stores next as the current key. With a grace period the
// current key becomes the previous one (its sealed private keys move as they
// are); without one it is destroyed with the rotation. The previous key it
// replaces is destroyed.
func (s *boltStore) RotateExchangeKey(next ExchangeKey, now time.Time, grace time.Duration) error {
	failpoint.Inject(failpoint.RotateBeforeWrite)
	next.Retire = time.Time{}
	return s.write(failpoint.RotateAfterCommit, func(w *writeTx) error {
		b, err := bucket(w.tx, bucketExchange)
		if err != nil {
			return err
		}
		var cur *ExchangeKey
		var curSealed [][]byte
		curV := b.Get(keyCurrent)
		if curV != nil {
			if cur, curSealed, err = decodeExchangeKey(curV); err != nil {
				return err
			}
			wipeExchangeKey(cur) // a version-2 value has no plaintext; to be sure
		}
		if err := checkRotate(cur, &next, grace); err != nil {
			return err
		}
		if err := w.deleteExchangeKey(b, keyPrevious); err != nil {
			return err
		}
		if cur != nil && grace > 0 {
			cur.Retire = now.Add(grace)
			v, err := encodeExchangeKey(cur, curSealed)
			if err != nil {
				return err
			}
			if err := b.Put(keyPrevious, v); err != nil {
				return err
			}
		} else if err := w.deleteExchangeKey(b, keyCurrent); err != nil {
			return err
		}
		nb, err := sealExchangeKey(w, &next)
		if err != nil {
			return err
		}
		if err := b.Put(keyCurrent, nb); err != nil {
			return err
		}
		failpoint.Inject(failpoint.RotateAfterWrite)
		return nil
	})
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
		prev, _, err := decodeExchangeKey(v)
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
	err = s.write("", func(w *writeTx) (err error) {
		if pruned, err = due(w.tx); err != nil || !pruned {
			return err
		}
		return w.deleteExchangeKey(w.tx.Bucket(bucketExchange), keyPrevious)
	})
	if err != nil {
		return false, err
	}
	return pruned, nil
}

func (s *boltStore) Peer(p peer.ID) (*PeerKey, error) {
	if pk := s.peers.get(p); pk != nil {
		// Closed is checked as in view: a closed store answers nothing.
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.closed {
			return nil, ErrClosed
		}
		return pk, nil
	}
	var pk *PeerKey
	var snap uint64
	err := s.view(func(tx *bolt.Tx) (err error) {
		snap = uint64(tx.ID())
		pk, err = getPeer(tx, p)
		if err == nil && pk == nil {
			err = ErrNotFound
		}
		return err
	})
	if err == nil {
		s.peers.fill(pk, snap)
	}
	return pk, err
}

// Lookup reads p's value in bucket state, and nothing else: one Get in a
// tree of 100-150 bytes per peer, no record decoded, no session key
// opened. It reads no sealed value, so it does not take the key file's
// lock (view does): a Lookup never waits behind a wipe of the key file
// and its sync.
func (s *boltStore) Lookup(p peer.ID) (PeerState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return PeerState{}, ErrClosed
	}
	var st PeerState
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketState)
		if err != nil {
			return err
		}
		v := b.Get([]byte(p))
		if v == nil {
			return ErrNotFound
		}
		st, err = decodeState(v)
		return err
	})
	if err != nil {
		return PeerState{}, err
	}
	return st, nil
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

// putPeer stores pk as p's record, and its copy in bucket state.
func (w *writeTx) putPeer(pk *PeerKey) error {
	if err := w.putRecord(pk); err != nil {
		return err
	}
	key := []byte(pk.Peer)
	st, err := w.state(key)
	if err != nil {
		return err
	}
	rec := stateOf(pk)
	rec.Epoch = st.Epoch
	return w.putState(key, rec)
}

// putRecord stores pk as p's record, and not its copy in bucket state:
// the caller writes stateOf(pk) there in the same transaction (putPeer;
// commitTx, which writes p's state once for the record and the new epoch).
// Every write of a record goes through it (or deletePeer), which keeps the
// cache of Peer true (peercache.go).
func (w *writeTx) putRecord(pk *PeerKey) error {
	v, err := encodePeerKey(pk)
	if err != nil {
		return err
	}
	if err := w.tx.Bucket(bucketPeers).Put([]byte(pk.Peer), v); err != nil {
		return err
	}
	w.wrote(pk.Peer, readBack(pk))
	return nil
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

// ListPeers walks bucket state from after and, for each peer with a
// session, reads its active epoch's value in place (peekSession): no
// record is read (bucket peers is not touched) and no key is opened, so,
// as Lookup, it takes no lock of the key file. The session buckets of a
// peer's few epochs are inline in the tree of bucket sessions, which the
// walk reads in the same order as bucket state.
func (s *boltStore) ListPeers(after peer.ID, limit int) ([]PeerSummary, error) {
	if err := checkListLimit(limit); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	var out []PeerSummary
	err := s.db.View(func(tx *bolt.Tx) error {
		states, err := bucket(tx, bucketState)
		if err != nil {
			return err
		}
		all, err := bucket(tx, bucketSessions)
		if err != nil {
			return err
		}
		out = make([]PeerSummary, 0, min(limit, 1024))
		c := states.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && after != "" && string(k) == string(after) {
			k, v = c.Next()
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			if v == nil {
				return corrupt("state: bucket where a value belongs")
			}
			p, err := decodePeerID(k)
			if err != nil {
				return err
			}
			st, err := decodeState(v)
			if err != nil {
				return err
			}
			sum := PeerSummary{Peer: p, State: st}
			if st.Epoch > 0 {
				if err := peekActive(all, p, k, st.Epoch, &sum); err != nil {
					return err
				}
			}
			out = append(out, sum)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// peekActive reads the metadata of p's session epoch (p's active one, as
// bucket state says) into sum, without opening its key. key is p's bytes;
// all is bucket sessions.
func peekActive(all *bolt.Bucket, p peer.ID, key []byte, epoch uint64, sum *PeerSummary) error {
	sb := all.Bucket(key)
	if sb == nil {
		return corrupt("state of %s: active epoch %d, but no sessions", p, epoch)
	}
	var ek [8]byte
	binary.BigEndian.PutUint64(ek[:], epoch)
	v := sb.Get(ek[:])
	if v == nil {
		return corrupt("state of %s: active epoch %d, but no such session", p, epoch)
	}
	m, ok := peekSession(v)
	if !ok {
		// decodeSession says why; a value it accepts is one with a
		// plaintext key, which a version-3 store never holds.
		sk, sealed, err := decodeSession(key, ek[:], v)
		if err != nil {
			return err
		}
		clear(sk.Key[:])
		if sealed == nil {
			return corrupt("session: plaintext key in a version %d store", schemaVersion)
		}
		return corrupt("session %s/%d does not decode", p, epoch)
	}
	sum.KeyID, sum.Suite, sum.Created = m.id, m.suite, m.created
	return nil
}

func (s *boltStore) SetTrust(p peer.ID, t TrustState) error {
	if err := checkTrust(t); err != nil {
		return err
	}
	return s.write("", func(w *writeTx) error {
		pk, err := getPeer(w.tx, p)
		if err != nil {
			return err
		}
		if pk == nil {
			return ErrNotFound
		}
		pk.Trust = t
		return w.putPeer(pk)
	})
}

func (s *boltStore) CommitExchange(c Commit) error {
	failpoint.Inject(failpoint.CommitBeforeWrite)
	defer clear(c.Session.Key[:]) // c is our copy; the store holds its own
	if err := checkCommit(&c); err != nil {
		return err
	}
	// Commits that arrive together share a transaction and its syncs
	// (batch.go); each returns once its own is durable.
	return s.writeBatched(string(c.Session.Peer), failpoint.CommitAfterCommit, func(w *writeTx) error {
		if err := commitTx(w, &c); err != nil {
			return err
		}
		failpoint.Inject(failpoint.CommitAfterWrite)
		return nil
	})
}

// commitTx is CommitExchange inside write transaction w.
func commitTx(w *writeTx, c *Commit) error {
	tx := w.tx
	p := c.Session.Peer
	key := []byte(p)
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
	var cur *bolt.Cursor // one for the active epoch and the prune
	if sb != nil {
		cur = sb.Cursor()
		if k, _ := cur.Last(); k != nil {
			active, err := decodeEpoch(k)
			if err != nil {
				return err
			}
			if c.Session.Epoch <= active {
				return ErrStaleEpoch
			}
		}
	} else if sb, err = all.CreateBucket(key); err != nil {
		return err
	}

	// p's state is read and written once: the record's copy, if the
	// commit writes a record, and the new epoch.
	st, err := w.state(key)
	if err != nil {
		return err
	}
	rec, err := commitRecord(tx, key, c)
	if err != nil {
		return err
	}
	if rec != nil {
		if err := w.putRecord(rec); err != nil {
			return err
		}
		st = stateOf(rec)
	}

	ek := encodeEpoch(c.Session.Epoch)
	sealed, err := w.seal("session", sessionWhere(key, ek), c.Session.Key[:])
	if err != nil {
		return err
	}
	v, err := encodeSession(&c.Session, sealed)
	if err != nil {
		return err
	}
	if err := sb.Put(ek, v); err != nil {
		return err
	}
	st.Epoch = c.Session.Epoch // above the active one: checked
	if err := w.putState(key, st); err != nil {
		return err
	}

	// Keep the KeepEpochs newest epochs. Those pruned are the oldest, below
	// the new active epoch, so p's state stays as written above.
	n := 0
	if cur == nil {
		cur = sb.Cursor()
	}
	for k, _ := cur.First(); k != nil; k, _ = cur.Next() { // First: the puts moved the bucket
		n++
	}
	for range n - KeepEpochs {
		k, v := cur.First() // again: the deletion moved the cursor's bucket
		if err := w.deleteEpoch(sb, p, bytes.Clone(k), v); err != nil {
			return err
		}
	}
	return nil
}

// commitRecord returns the record that c writes for its peer
// (newPeerRecord), or nil if c leaves the stored one as it is. In the
// common case — no record, or the one stored, and a LastSeen at most
// SeenGranularity old — it reads the stored record in place (peekPeerKey)
// and copies nothing; it decodes the record only to write a new one.
func commitRecord(tx *bolt.Tx, p []byte, c *Commit) (*PeerKey, error) {
	b, err := bucket(tx, bucketPeers)
	if err != nil {
		return nil, err
	}
	v := b.Get(p)
	if v == nil {
		return newPeerRecord(nil, c), nil
	}
	if view, ok := peekPeerKey(v); ok && seenRecently(&view, c) {
		return nil, nil
	}
	old, err := decodePeerKey(p, v) // says why, if peekPeerKey failed
	if err != nil {
		return nil, err
	}
	return newPeerRecord(old, c), nil
}

// deletePeer removes the stored record (and trust state) of p. Every path
// that removes a peer's record goes through it. A record holds no secret.
func (w *writeTx) deletePeer(p peer.ID) error {
	b, err := bucket(w.tx, bucketPeers)
	if err != nil {
		return err
	}
	if err := b.Delete([]byte(p)); err != nil {
		return err
	}
	w.wrote(p, nil)
	st, err := w.state([]byte(p))
	if err != nil {
		return err
	}
	return w.putState([]byte(p), PeerState{Epoch: st.Epoch})
}

// Forget removes p's record, trust state and session keys in one
// transaction, through deletePeer and deletePeerSessions, so that the
// session keys are shredded as every other deleted secret is.
func (s *boltStore) Forget(p peer.ID) (ForgetResult, error) {
	if err := checkPeerID(p); err != nil {
		return ForgetResult{}, err
	}
	var res ForgetResult
	err := s.write(failpoint.DeleteSessionsAfterCommit, func(w *writeTx) error {
		res = ForgetResult{}
		pk, err := getPeer(w.tx, p)
		if err != nil {
			return err
		}
		if pk != nil {
			res.Record, res.Trust = true, pk.Trust
			if err := w.deletePeer(p); err != nil {
				return err
			}
		}
		res.Sessions, err = w.deletePeerSessions(p)
		return err
	})
	if err != nil {
		return ForgetResult{}, err
	}
	return res, nil
}

// openSession decodes a stored session epoch and opens its key. The caller
// holds the key file's lock shared (view).
func (s *boltStore) openSession(p peer.ID, k, v []byte) (*SessionKey, error) {
	sk, sealed, err := decodeSession([]byte(p), k, v)
	if err != nil {
		return nil, err
	}
	if sealed == nil {
		clear(sk.Key[:])
		return nil, corrupt("session: plaintext key in a version %d store", schemaVersion)
	}
	// Opened straight into the fixed-size key: no other copy.
	if _, err := s.keys.open(sk.Key[:], "session", sessionWhere([]byte(p), k), sealed); err != nil {
		return nil, err
	}
	return sk, nil
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
		sk, err = s.openSession(p, k, v)
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
		sk, err = s.openSession(p, k, v)
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
			sk, err := s.openSession(p, k, v)
			if err != nil {
				return err
			}
			out = append(out, *sk)
			clear(sk.Key[:])
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

// Close waits for the methods in flight, closes the file, releasing its
// lock, and marks the key file cleanly closed.
func (s *boltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return errors.Join(s.db.Close(), s.keys.close())
}
