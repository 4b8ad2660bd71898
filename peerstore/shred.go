package peerstore

// Crypto-shredding: how the bbolt store destroys secrets in its files.
//
// bbolt never overwrites: a deleted or replaced value stays in a free page
// of store.db until bbolt happens to reuse the page, so deleting a key from
// bbolt does not remove it from the file. The store therefore never writes a
// secret (an exchange private key, a session key) to bbolt in the clear.
// Each secret is sealed (AES-256-GCM, crypto/cipher) under a key of its own:
// 32 random bytes in one fixed slot of a second file, KeysFileName, that is
// overwritten in place. bbolt holds only
//
//	sealed = slot (8 bytes, big-endian) || nonce (12) || ciphertext || tag (16)
//
// with the additional data binding the ciphertext to its place in the store
// (sealAD). Destroying a secret is: commit the bbolt transaction that drops
// the sealed value, then overwrite its slot with zeros and fdatasync the key
// file. Every copy of the sealed value that lingers in bbolt's free pages is
// then undecryptable; the slot's 32 bytes were the only place the key was.
//
// # Crash safety
//
// Writing: the slot's key is written and synced before the bbolt
// transaction that refers to it commits, so a committed value always has its
// key. Deleting: the slot is wiped only after the transaction that dropped
// its last reference committed, so a crash never destroys a key that is
// still referred to. A crash can leave a slot holding a key nothing refers
// to (killed between the key's write and the commit, or between the commit
// and the wipe). The key file's header says whether the store was closed
// cleanly (it is marked open, and synced, before the first write of a run,
// so a store that is only read costs no write); an unclean one makes the
// next OpenBolt walk every sealed value in bbolt and wipe every slot none of
// them names, before it returns. So a
// secret destroyed by an operation that a crash interrupted is gone once the
// store has been opened again (docs/SECURITY.md, "Destroyed keys").
//
// # File
//
// The file is an array of 32-byte slots. Slot 0 is the header: keysMagic
// (16 bytes), then one byte, keysClean or keysOpen, then zeros. Slot n >= 1
// holds a key, or 32 zero bytes when free. A 32-byte slot at a 32-byte
// offset never crosses a disk sector, so a torn write cannot leave half of
// one key and half of another. The file only grows; a free slot is reused.
//
// In memory the store keeps a copy of the file (to open a sealed value
// without a system call) in memory of its own, outside the Go heap where the
// platform allows: locked against swapping (mlock, where the limit allows)
// and left out of core dumps (MADV_DONTDUMP) — see keymem_unix.go.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/p2pkex/p2pkex/internal/failpoint"
)

// KeysFileName is the name of the shredding-key file inside the directory
// given to OpenBolt.
const KeysFileName = "store.keys"

const (
	shredKeySize = 32
	slotSize     = 32
	gcmNonceSize = 12
	gcmTagSize   = 16
	// sealedOverhead is what sealing adds to a secret.
	sealedOverhead = 8 + gcmNonceSize + gcmTagSize
	// maxSealedSecret bounds a sealed secret (an HPKE private key is 32
	// bytes for every suite of this version; this leaves room).
	maxSealedSecret = 4096

	keysMagic = "p2pkex/keys/v1\x00\x00"
	keysClean = 1 // closed cleanly: every non-zero slot is referred to
	keysOpen  = 2 // open, or a crash left it: walk bbolt on the next open
)

// shredKey is the key of one slot.
type shredKey [shredKeySize]byte

// keyFile is the open shredding-key file. All methods are safe for
// concurrent use.
//
// mu orders sealing, opening and wiping: openers hold it shared for a whole
// bbolt read transaction, so that a slot is not wiped (and perhaps reused)
// under a reader whose snapshot still names it; wipe holds it exclusively.
type keyFile struct {
	mu     sync.RWMutex
	f      *os.File
	mem    *keyMem  // slot n at mem.b[n*slotSize:]; len(mem.b) is the capacity
	n      uint64   // slots 0..n-1 exist in the file
	free   []uint64 // free slots below n
	dirty  bool     // the file is marked open (markOpen)
	fresh  bool     // openKeyFile created the file
	failed bool     // a wipe failed: do not mark the file clean at Close
}

// openKeyFile opens or creates the key file at path. clean reports whether
// the file was closed cleanly (a new file is clean); use then fixes up the
// free slots. The file is marked open (unclean) only before the first write
// (markOpen), so that a store only read costs no write.
func openKeyFile(path string) (k *keyFile, clean bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("peerstore: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("peerstore: %w", err)
	}
	size := fi.Size()
	if size%slotSize != 0 || size > 1<<40 {
		return nil, false, fmt.Errorf("open %s: %w: size %d is not a whole number of slots", path, ErrCorrupt, size)
	}
	k = &keyFile{f: f, n: uint64(size / slotSize)}
	fresh := k.n == 0
	if fresh {
		k.n = 1
	}
	if k.mem, err = newKeyMem(int(max(k.n, 64) * slotSize)); err != nil {
		return nil, false, err
	}
	if fresh {
		copy(k.mem.b, keysMagic)
		if err := k.setState(keysClean); err != nil {
			k.mem.free()
			return nil, false, err
		}
		k.fresh = true
		return k, true, nil
	}
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), k.mem.b[:size]); err != nil {
		k.mem.free()
		return nil, false, fmt.Errorf("peerstore: read %s: %w", path, err)
	}
	if string(k.mem.b[:len(keysMagic)]) != keysMagic {
		k.mem.free()
		return nil, false, fmt.Errorf("open %s: %w: not a key file of this package", path, ErrCorrupt)
	}
	clean = k.mem.b[len(keysMagic)] == keysClean
	k.dirty = !clean
	return k, clean, nil
}

// markOpen marks the file open (unclean), durably, before the first write
// of this run: from then on a crash makes the next open check every slot.
func (k *keyFile) markOpen() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dirty {
		return nil
	}
	if err := k.setState(keysOpen); err != nil {
		return err
	}
	k.dirty = true
	return nil
}

// setState writes the header's state byte and syncs the file.
func (k *keyFile) setState(st byte) error {
	k.mem.b[len(keysMagic)] = st
	if _, err := k.f.WriteAt(k.mem.b[:slotSize], 0); err != nil {
		return fmt.Errorf("peerstore: write key file header: %w", err)
	}
	if err := fdatasync(k.f); err != nil {
		return fmt.Errorf("peerstore: sync key file: %w", err)
	}
	return nil
}

// use sets the free slots. With inUse nil (a clean file) every zero slot is
// free. Otherwise (after a crash, or to start a migration) inUse(n) says
// whether bbolt refers to slot n; every other slot is wiped, and the wipes
// synced, before use returns. The file must be marked open before a wipe.
func (k *keyFile) use(inUse func(uint64) bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.free = k.free[:0]
	wiped := false
	for n := k.n - 1; n >= 1; n-- {
		s := k.slot(n)
		if inUse != nil && !inUse(n) {
			if !isZero(s) {
				clear(s)
				if _, err := k.f.WriteAt(s, int64(n*slotSize)); err != nil {
					return fmt.Errorf("peerstore: wipe key slot: %w", err)
				}
				wiped = true
			}
		}
		if isZero(s) {
			k.free = append(k.free, n)
		}
	}
	if wiped {
		if err := k.f.Sync(); err != nil {
			return fmt.Errorf("peerstore: sync key file: %w", err)
		}
	}
	return nil
}

func (k *keyFile) slot(n uint64) []byte { return k.mem.b[n*slotSize : (n+1)*slotSize] }

// isZero reports whether a slot is all zeros (not in constant time: whether
// a slot is free is no secret).
func isZero(b []byte) bool { return [slotSize]byte(b) == [slotSize]byte{} }

// alloc takes a free slot, fills it with a new random key and writes it to
// the file (not synced: the caller syncs before anything refers to it).
func (k *keyFile) alloc() (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n uint64
	if l := len(k.free); l > 0 {
		n, k.free = k.free[l-1], k.free[:l-1]
	} else {
		if need := (k.n + 1) * slotSize; need > uint64(len(k.mem.b)) {
			if err := k.grow(int(need * 2)); err != nil {
				return 0, err
			}
		}
		n = k.n
		k.n++
	}
	s := k.slot(n)
	for isZero(s) { // zero marks a free slot; 32 random zero bytes never happen
		if _, err := rand.Read(s); err != nil {
			k.free = append(k.free, n)
			return 0, err
		}
	}
	if _, err := k.f.WriteAt(s, int64(n*slotSize)); err != nil {
		clear(s)
		k.free = append(k.free, n)
		return 0, fmt.Errorf("peerstore: write key slot: %w", err)
	}
	return n, nil
}

// grow moves the copy of the file to a larger region and wipes the old one.
func (k *keyFile) grow(size int) error {
	m, err := newKeyMem(size)
	if err != nil {
		return err
	}
	copy(m.b, k.mem.b)
	k.mem.free() // wipes
	k.mem = m
	return nil
}

// sync makes the keys written so far durable.
func (k *keyFile) sync() error {
	if err := fdatasync(k.f); err != nil {
		return fmt.Errorf("peerstore: sync key file: %w", err)
	}
	return nil
}

// wipe overwrites the slots with zeros, syncs, and frees them. A failure
// leaves them in use and the file marked unclean, so that the next OpenBolt
// wipes them.
func (k *keyFile) wipe(slots []uint64) error {
	if len(slots) == 0 {
		return nil
	}
	// Exclusively while the slots are overwritten: no reader is between
	// its snapshot and its open of one of them. Not while the file syncs:
	// from here on no snapshot names them (their deletion committed), and
	// they are not free for reuse before the sync; so readers, and the
	// next group commit's seals (batch.go), need not wait for the disk.
	k.mu.Lock()
	var zero [slotSize]byte
	for _, n := range slots {
		clear(k.slot(n))
		if _, err := k.f.WriteAt(zero[:], int64(n*slotSize)); err != nil {
			k.failed = true
			k.mu.Unlock()
			return fmt.Errorf("peerstore: wipe key slot: %w", err)
		}
	}
	k.mu.Unlock()
	failpoint.Inject(failpoint.ShredAfterWipe)
	err := fdatasync(k.f)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.failed = true
		return fmt.Errorf("peerstore: sync key file: %w", err)
	}
	k.free = append(k.free, slots...)
	return nil
}

// close marks the file clean (unless a wipe failed), closes it and wipes
// the copy in memory.
func (k *keyFile) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var err error
	if k.dirty && !k.failed {
		err = k.setState(keysClean)
	}
	err = errors.Join(err, k.f.Close())
	k.mem.free()
	k.mem = nil
	return err
}

// sealAD is the additional data of a sealed secret: what it is and where it
// belongs, so that a sealed value moved to another place does not open.
func sealAD(kind string, where []byte, slot uint64) []byte {
	ad := append([]byte("p2pkex/peerstore/sealed/"), kind...)
	ad = append(ad, 0)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(where)))
	ad = append(ad, where...)
	return binary.BigEndian.AppendUint64(ad, slot)
}

// gcm returns the AEAD of slot n; the caller holds k.mu. The key is copied
// into a fixed array that is zeroed after use (aes.NewCipher keeps its own
// key schedule, on the heap, which we cannot zero).
func (k *keyFile) gcm(n uint64) (cipher.AEAD, error) {
	if n == 0 || n >= k.n {
		return nil, corrupt("key slot %d out of range", n)
	}
	var key shredKey
	defer clear(key[:])
	copy(key[:], k.slot(n))
	if key == (shredKey{}) {
		return nil, corrupt("key slot %d is empty (destroyed)", n)
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal allocates a slot and returns secret sealed under its key, for place
// (kind, where). The slot's key is not yet synced.
func (k *keyFile) seal(kind string, where, secret []byte) (sealed []byte, slot uint64, err error) {
	if len(secret) > maxSealedSecret {
		return nil, 0, fmt.Errorf("peerstore: secret of %d bytes too large to store", len(secret))
	}
	if slot, err = k.alloc(); err != nil {
		return nil, 0, err
	}
	k.mu.RLock()
	aead, err := k.gcm(slot)
	k.mu.RUnlock()
	if err != nil {
		return nil, 0, errors.Join(err, k.wipe([]uint64{slot}))
	}
	out := make([]byte, 8+gcmNonceSize, sealedOverhead+len(secret))
	binary.BigEndian.PutUint64(out, slot)
	if _, err := rand.Read(out[8:]); err != nil {
		return nil, 0, errors.Join(err, k.wipe([]uint64{slot}))
	}
	out = aead.Seal(out, out[8:8+gcmNonceSize], secret, sealAD(kind, where, slot))
	return out, slot, nil
}

// sealedSlot returns the slot a sealed value names, checking its size.
func sealedSlot(sealed []byte, size int) (uint64, error) {
	if size >= 0 && len(sealed) != sealedOverhead+size {
		return 0, corrupt("sealed secret is %d bytes, want %d", len(sealed), sealedOverhead+size)
	}
	if len(sealed) < sealedOverhead || len(sealed) > sealedOverhead+maxSealedSecret {
		return 0, corrupt("sealed secret is %d bytes", len(sealed))
	}
	n := binary.BigEndian.Uint64(sealed)
	if n == 0 {
		return 0, corrupt("sealed secret names slot 0")
	}
	return n, nil
}

// open opens a sealed value into dst (which must have room for it, so that
// nothing is allocated), for place (kind, where). The caller holds k.mu
// shared (see keyFile).
func (k *keyFile) open(dst []byte, kind string, where, sealed []byte) ([]byte, error) {
	n, err := sealedSlot(sealed, -1)
	if err != nil {
		return nil, err
	}
	aead, err := k.gcm(n)
	if err != nil {
		return nil, err
	}
	out, err := aead.Open(dst[:0], sealed[8:8+gcmNonceSize], sealed[8+gcmNonceSize:], sealAD(kind, where, n))
	if err != nil {
		return nil, corrupt("sealed secret in slot %d does not open", n)
	}
	return out, nil
}
