package peerstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// Migration from schema version 2, which had no bucket state (bolt.go): one
// write transaction builds it from the records and sessions and sets the
// version to 3 (migrateV2). Bucket state holds no secret, so the store is
// changed in place; a crash leaves it wholly version 2 or wholly version 3.
//
// Migration from schema version 1, which stored exchange private keys and
// session keys in the clear.
//
// Sealing the secrets in place would not do: the plaintext would stay in
// the pages bbolt frees. So the store is copied into a new file,
// store.db+migrateSuffix, with every secret sealed (shred.go), and the new
// file is renamed over the old one. The old file's bytes leave the repo
// with its name (the file system may keep the blocks: docs/SECURITY.md).
//
// Crash safety: until the rename the old file is the store; a crash leaves
// a partial new file, which the next OpenBolt deletes before it migrates
// again (the key file's slots are all wiped first: no value of the old file
// names any). After the rename the new file is the store, and the key file,
// not yet marked clean, is checked on the next open like after any crash.

// migrateSuffix names the new file of a migration while it is written.
const migrateSuffix = ".migrate"

// migrateBatch is how many values go into one transaction of the new file,
// to bound the memory of a migration of a large store.
const migrateBatch = 10_000

// migrate converts the version-1 store s.db, in directory dir, to the
// current version, and replaces s.db with the new file.
func (s *boltStore) migrate(dir string, cfg *boltConfig) error {
	path := filepath.Join(dir, BoltFileName)
	tmp := path + migrateSuffix
	if err := removeFile(tmp); err != nil {
		return err
	}
	if err := s.keys.markOpen(); err != nil {
		return err
	}
	// No value of a version-1 store names a slot.
	if err := s.keys.use(func(uint64) bool { return false }); err != nil {
		return err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("peerstore: create %s: %w", tmp, err)
	}
	if err := s.copyV1(dst); err != nil {
		dst.Close()
		return errors.Join(fmt.Errorf("migrate from schema version 1: %w", err), removeFile(tmp))
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := s.db.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("peerstore: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	// Between the close and this open another process could take the lock:
	// then this open fails with ErrLocked, and the store is migrated.
	db, err := openDB(path, cfg)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("peerstore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("peerstore: sync %s: %w", dir, err)
	}
	return nil
}

// batchWriter writes into the new file in transactions of migrateBatch
// values; the keys sealed for a transaction are synced before it commits.
type batchWriter struct {
	db   *bolt.DB
	keys *keyFile
	w    *writeTx
	n    int
}

func (b *batchWriter) tx() (*writeTx, error) {
	if b.w != nil && b.n < migrateBatch {
		b.n++
		return b.w, nil
	}
	if err := b.commit(); err != nil {
		return nil, err
	}
	tx, err := b.db.Begin(true)
	if err != nil {
		return nil, err
	}
	b.w, b.n = &writeTx{tx: tx, keys: b.keys}, 1
	return b.w, nil
}

func (b *batchWriter) commit() error {
	if b.w == nil {
		return nil
	}
	w := b.w
	b.w = nil
	if err := b.keys.sync(); err != nil {
		w.tx.Rollback()
		return err
	}
	return w.tx.Commit()
}

// copyV1 copies the version-1 store s.db into dst, sealing its secrets.
func (s *boltStore) copyV1(dst *bolt.DB) error {
	if err := dst.Update(createSchema); err != nil {
		return err
	}
	bw := &batchWriter{db: dst, keys: s.keys}
	defer func() {
		if bw.w != nil {
			bw.w.tx.Rollback()
		}
	}()
	err := s.db.View(func(src *bolt.Tx) error {
		meta, err := bucket(src, bucketMeta)
		if err != nil {
			return err
		}
		if id := meta.Get(keyIdentity); id != nil {
			w, err := bw.tx()
			if err != nil {
				return err
			}
			if err := w.tx.Bucket(bucketMeta).Put(keyIdentity, id); err != nil {
				return err
			}
		}
		ex, err := bucket(src, bucketExchange)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{keyCurrent, keyPrevious} {
			v := ex.Get(name)
			if v == nil {
				continue
			}
			k, sealed, err := decodeExchangeKey(v)
			if err != nil {
				return err
			}
			for _, b := range sealed {
				if b != nil {
					wipeExchangeKey(k)
					return corrupt("exchange key: sealed private key in a version 1 store")
				}
			}
			w, err := bw.tx()
			if err != nil {
				wipeExchangeKey(k)
				return err
			}
			nv, err := sealExchangeKey(w, k)
			wipeExchangeKey(k)
			if err != nil {
				return err
			}
			if err := w.tx.Bucket(bucketExchange).Put(name, nv); err != nil {
				return err
			}
		}
		peers, err := bucket(src, bucketPeers)
		if err != nil {
			return err
		}
		if err := peers.ForEach(func(k, v []byte) error {
			w, err := bw.tx()
			if err != nil {
				return err
			}
			return w.tx.Bucket(bucketPeers).Put(k, v)
		}); err != nil {
			return err
		}
		all, err := bucket(src, bucketSessions)
		if err != nil {
			return err
		}
		return all.ForEachBucket(func(pk []byte) error {
			p, err := decodePeerID(pk)
			if err != nil {
				return err
			}
			return all.Bucket(pk).ForEach(func(ek, v []byte) error {
				return copySessionV1(bw, p, pk, ek, v)
			})
		})
	})
	if err != nil {
		return err
	}
	if err := bw.commit(); err != nil {
		return err
	}
	return dst.Update(fillState)
}

func copySessionV1(bw *batchWriter, p peer.ID, pk, ek, v []byte) error {
	sk, sealed, err := decodeSession(pk, ek, v)
	if err != nil {
		return err
	}
	defer clear(sk.Key[:])
	if sealed != nil {
		return corrupt("session %s/%d: sealed key in a version 1 store", p, sk.Epoch)
	}
	w, err := bw.tx()
	if err != nil {
		return err
	}
	sb, err := w.tx.Bucket(bucketSessions).CreateBucketIfNotExists(pk)
	if err != nil {
		return err
	}
	nsealed, err := w.seal("session", sessionWhere(pk, ek), sk.Key[:])
	if err != nil {
		return err
	}
	nv, err := encodeSession(sk, nsealed)
	if err != nil {
		return err
	}
	return sb.Put(ek, nv)
}

// readAhead reads the file at path from start to end, discarding what it
// reads, before the migration from version 2 walks every record: bbolt maps
// the file for random access (MADV_RANDOM), so the walk, in key order,
// would read the file a page at a time in no order on the disk, while
// one sequential read puts it in the page cache in large requests. Only
// a hint: its errors are ignored (the walk reads what it needs anyway).
func readAhead(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
}

// migrateV2 makes a version-2 store db a version-3 store: bucket state
// built and the version set, in one transaction.
func migrateV2(db *bolt.DB) error {
	err := db.Update(func(tx *bolt.Tx) error {
		if err := fillState(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint64(nil, schemaVersion))
	})
	if err != nil {
		return fmt.Errorf("migrate from schema version 2: %w", err)
	}
	return nil
}

// fillState (re)builds bucket state from buckets peers and sessions: one
// value for every peer with a record or a session. It walks the two in
// step, in key order, so the values go in in order and, at bbolt's
// FillPercent of 1, into full pages: a tree as compact as it can be (about
// 2,500 pages at 100,000 peers, against 3,700 as first contacts leave it),
// which is what Lookup reads and OpenBolt walks (warmState).
func fillState(tx *bolt.Tx) error {
	if tx.Bucket(bucketState) != nil {
		if err := tx.DeleteBucket(bucketState); err != nil {
			return err
		}
	}
	out, err := tx.CreateBucket(bucketState)
	if err != nil {
		return err
	}
	out.FillPercent = 1
	peers, err := bucket(tx, bucketPeers)
	if err != nil {
		return err
	}
	all, err := bucket(tx, bucketSessions)
	if err != nil {
		return err
	}
	pc, sc := peers.Cursor(), all.Cursor()
	pk, pv := pc.First()
	sk, sv := sc.First()
	for pk != nil || sk != nil {
		var st PeerState
		var key []byte
		c := bytes.Compare(pk, sk)
		switch {
		case sk == nil:
			c = -1
		case pk == nil:
			c = 1
		}
		if c <= 0 { // a record
			if pv == nil {
				return corrupt("peers: bucket where a value belongs")
			}
			rec, err := decodePeerKey(pk, pv)
			if err != nil {
				return err
			}
			st, key = stateOf(rec), pk
			pk, pv = pc.Next()
		}
		if c >= 0 { // sessions
			if sv != nil {
				return corrupt("sessions: value where a bucket belongs")
			}
			if k, _ := all.Bucket(sk).Cursor().Last(); k != nil {
				if st.Epoch, err = decodeEpoch(k); err != nil {
					return err
				}
			}
			key = sk
			sk, sv = sc.Next()
		}
		if !st.Record && st.Epoch == 0 {
			continue // an empty session bucket
		}
		if err := out.Put(bytes.Clone(key), encodeState(&st)); err != nil {
			return err
		}
	}
	return nil
}
