// Package inbox keeps the messages a node received, in a bbolt file of its
// own (the repo's inbox.db), bounded by count and age.
//
// # Durability
//
// [Inbox.Add] returns after its bbolt transaction was committed and synced
// to disk. The daemon calls it from the node's message keeper
// (node.WithMessageKeeper), before the node answers the sender: a sender
// that was told "accepted" finds its message in the inbox even if the
// receiving process is killed right after. The reverse does not hold: a
// crash between Add and the answer leaves a kept message whose sender saw
// a failure and may send it again (at least once, not exactly once).
//
// # Bounds
//
// Messages are numbered in the order they arrive (Seq, from 1, never
// reused). Every Add, and [Inbox.Prune], deletes from the oldest end while
// there are more than MaxCount messages or the oldest is older than MaxAge,
// so the kept messages are always one contiguous run of Seq. Readers skip
// messages older than MaxAge even before they were pruned (a read-only
// reader cannot prune). Deleted messages leave the file's index at once,
// but, bbolt copying on write, their bytes can stay in a free page of the
// file until bbolt reuses it: the file's mode (0600, in a 0700 repo) is what
// protects them, as for the peerstore.
//
// # Locking
//
// bbolt locks the file: one writer ([Open]) excludes every other opener;
// readers ([OpenReadOnly]) share it with each other. The daemon holds it
// for writing while it runs and serves the messages through its control
// API; without a daemon, "p2pkex inbox" opens it read-only.
package inbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the inbox's file in a repo.
const FileName = "inbox.db"

// Defaults of the bounds (config.json's messages.inbox_max and
// messages.inbox_max_age).
const (
	DefaultMaxCount = 1000
	DefaultMaxAge   = 30 * 24 * time.Hour
	// DefaultLockTimeout is how long Open and OpenReadOnly wait for the
	// file lock before they fail with ErrLocked.
	DefaultLockTimeout = time.Second
)

var (
	// ErrLocked: another process holds the file.
	ErrLocked = errors.New("inbox: locked by another process")
	// ErrCorrupt: the file is not an inbox of this package.
	ErrCorrupt = errors.New("inbox: corrupt")
	// ErrReadOnly: a write on an inbox opened read-only.
	ErrReadOnly = errors.New("inbox: opened read-only")
)

// Limits bound the inbox. A zero field takes its default.
type Limits struct {
	MaxCount int           // messages kept at most; default DefaultMaxCount
	MaxAge   time.Duration // a message older than this is dropped; default DefaultMaxAge
}

func (l Limits) withDefaults() Limits {
	if l.MaxCount <= 0 {
		l.MaxCount = DefaultMaxCount
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultMaxAge
	}
	return l
}

// Message is a kept message.
type Message struct {
	Seq   uint64    // its number in the inbox, from 1, in order of arrival
	From  peer.ID   // the authenticated sender
	Epoch uint64    // the epoch of the session key it was sealed under
	KeyID [8]byte   // that session key's ID
	Time  time.Time // when it was received (the receiving node's clock)
	Data  []byte
}

var (
	bucketMsgs = []byte("messages")
	bucketMeta = []byte("meta")
	keyVersion = []byte("version")
)

const (
	schemaVersion = 1
	recVersion    = 1
)

// Inbox is an open inbox. Its methods are safe for concurrent use.
type Inbox struct {
	db       *bolt.DB
	limits   Limits
	readOnly bool
	now      func() time.Time

	mu      sync.Mutex
	changed chan struct{} // closed and replaced by every Add
}

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	now         func() time.Time
}

// WithLockTimeout sets how long to wait for the file lock (default
// DefaultLockTimeout).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithClock sets the clock pruning and Add use (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Open opens the inbox at path for writing, creating it (mode 0600) if
// needed, and prunes it to limits.
func Open(path string, limits Limits, opts ...Option) (*Inbox, error) {
	return open(path, limits, false, opts)
}

// OpenReadOnly opens an existing inbox for reading. A missing file is an
// error wrapping fs.ErrNotExist.
func OpenReadOnly(path string, limits Limits, opts ...Option) (*Inbox, error) {
	return open(path, limits, true, opts)
}

func open(path string, limits Limits, readOnly bool, opts []Option) (*Inbox, error) {
	o := options{lockTimeout: DefaultLockTimeout, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if err := checkFile(path, readOnly); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout, ReadOnly: readOnly})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open %s: %w: %w", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("inbox: %w", err)
	}
	b := &Inbox{db: db, limits: limits.withDefaults(), readOnly: readOnly, now: o.now, changed: make(chan struct{})}
	if err := b.initSchema(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !readOnly {
		if err := b.Prune(); err != nil {
			db.Close()
			return nil, err
		}
	}
	return b, nil
}

// checkFile refuses a file others may read: the inbox holds plaintext.
func checkFile(path string, mustExist bool) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !mustExist:
		return nil
	case err != nil:
		return fmt.Errorf("inbox: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("inbox: %s is not a regular file", path)
	case runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("inbox: %s is accessible by group or others (mode %04o); run chmod 600 on it",
			path, fi.Mode().Perm())
	}
	return nil
}

func (b *Inbox) initSchema() error {
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || tx.Bucket(bucketMsgs) == nil {
			return fmt.Errorf("%w: missing buckets", ErrCorrupt)
		}
		if v := meta.Get(keyVersion); len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("%w: schema version %x, want %d", ErrCorrupt, v, schemaVersion)
		}
		return nil
	}
	if b.readOnly {
		return b.db.View(check)
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("%w: no meta bucket", ErrCorrupt)
			}
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keyVersion, []byte{schemaVersion}); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketMsgs); err != nil {
				return err
			}
		}
		return check(tx)
	})
}

// Close closes the file.
func (b *Inbox) Close() error { return b.db.Close() }

// Limits returns the inbox's bounds.
func (b *Inbox) Limits() Limits { return b.limits }

// Add keeps m (its Seq is assigned; a zero Time is now) and prunes the
// inbox, in one transaction synced to disk before Add returns. It returns
// the message's Seq.
func (b *Inbox) Add(m Message) (uint64, error) {
	if b.readOnly {
		return 0, ErrReadOnly
	}
	if m.Time.IsZero() {
		m.Time = b.now()
	}
	var seq uint64
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketMsgs)
		s, err := bk.NextSequence()
		if err != nil {
			return err
		}
		seq = s
		m.Seq = s
		if err := bk.Put(seqKey(s), encode(&m)); err != nil {
			return err
		}
		return b.prune(bk)
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: keep message: %w", err)
	}
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	return seq, nil
}

// Prune deletes the messages beyond the bounds.
func (b *Inbox) Prune() error {
	if b.readOnly {
		return ErrReadOnly
	}
	if err := b.db.Update(func(tx *bolt.Tx) error { return b.prune(tx.Bucket(bucketMsgs)) }); err != nil {
		return fmt.Errorf("inbox: prune: %w", err)
	}
	return nil
}

// prune deletes from the oldest end while there are too many messages or
// the oldest is too old. Only the oldest is ever deleted, so the kept Seqs
// are contiguous and their count is last - first + 1.
func (b *Inbox) prune(bk *bolt.Bucket) error {
	cutoff := b.now().Add(-b.limits.MaxAge)
	c := bk.Cursor()
	lk, _ := c.Last()
	if lk == nil {
		return nil
	}
	last := binary.BigEndian.Uint64(lk)
	for k, v := c.First(); k != nil; k, v = c.First() {
		first := binary.BigEndian.Uint64(k)
		tooMany := last-first+1 > uint64(b.limits.MaxCount)
		if !tooMany {
			m, err := decode(k, v)
			if err != nil {
				return err
			}
			if !m.Time.Before(cutoff) {
				return nil
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// List returns the kept messages with Seq > after, oldest first, only
// those from from if it is not empty, without those older than MaxAge.
func (b *Inbox) List(from peer.ID, after uint64) ([]Message, error) {
	cutoff := b.now().Add(-b.limits.MaxAge)
	var out []Message
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMsgs).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
			m, err := decode(k, v)
			if err != nil {
				return err
			}
			if (from == "" || m.From == from) && !m.Time.Before(cutoff) {
				out = append(out, *m)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: read: %w", err)
	}
	return out, nil
}

// Changed returns a channel closed at the next Add (of this Inbox value):
// take it, List, and wait on it to follow the inbox without missing one.
func (b *Inbox) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func seqKey(s uint64) []byte { return binary.BigEndian.AppendUint64(nil, s) }

// A record: version (1), time (unix nanoseconds, 8 bytes BE), epoch (8 BE),
// key ID (8), sender peer ID length (2 BE) and bytes, then the data.
const recHeader = 1 + 8 + 8 + 8 + 2

func encode(m *Message) []byte {
	from := []byte(m.From)
	b := make([]byte, 0, recHeader+len(from)+len(m.Data))
	b = append(b, recVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = append(b, m.KeyID[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(from)))
	b = append(b, from...)
	return append(b, m.Data...)
}

// decode copies: bbolt's values live only as long as their transaction.
func decode(k, v []byte) (*Message, error) {
	if len(k) != 8 || len(v) < recHeader || v[0] != recVersion {
		return nil, fmt.Errorf("%w: bad record", ErrCorrupt)
	}
	n := int(binary.BigEndian.Uint16(v[25:27]))
	if len(v) < recHeader+n {
		return nil, fmt.Errorf("%w: bad record", ErrCorrupt)
	}
	from, err := peer.IDFromBytes(v[recHeader : recHeader+n])
	if err != nil {
		return nil, fmt.Errorf("%w: bad sender: %v", ErrCorrupt, err)
	}
	m := &Message{
		Seq:   binary.BigEndian.Uint64(k),
		From:  from,
		Time:  time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))),
		Epoch: binary.BigEndian.Uint64(v[9:17]),
		Data:  append([]byte{}, v[recHeader+n:]...),
	}
	copy(m.KeyID[:], v[17:25])
	return m, nil
}
