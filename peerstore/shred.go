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
// the sealed value, then overwrite its slot — with zeros, or with a new
// random key for the pool (keyFile) — and fdatasync the key file. Every copy of the sealed value that lingers in bbolt's free pages is
// then undecryptable; the slot's 32 bytes were the only place the key was.
//
// # Crash safety
//
// Writing: the slot's key is written and synced before the bbolt
// transaction that refers to it commits, so a committed value always has its
// key. A commit normally finds its slots ready, written and synced
// beforehand (the pool, keyFile), so it pays no sync of the key file of its
// own. Deleting: the slot is overwritten (with zeros, or with a new key for
// the pool: either destroys the old key) only after the transaction that
// dropped its last reference committed, and the method returns only after
// that write is synced, so a crash never destroys a key that is still
// referred to. A crash can leave a slot holding a key nothing refers to
// (killed between the key's write and the commit, or between the commit
// and the overwrite, or holding a key of the pool). The key file's header
// says whether the store was closed cleanly (it is marked open, and synced,
// before the first write of a run, so a store that is only read costs no
// write); an unclean one makes the next OpenBolt walk every sealed value in
// bbolt and wipe every slot none of them names, before it returns. So a
// secret destroyed by an operation that a crash interrupted is gone once
// the store has been opened again (docs/SECURITY.md, "Destroyed keys"). A
// clean close wipes the pool's slots (synced) before it marks the file
// clean, so that in a clean file every non-zero slot is named.
//
// # File
//
// The file is an array of 32-byte slots. Slot 0 is the header: keysMagic
// (16 bytes), then one byte, keysClean or keysOpen, then zeros. Slot n >= 1
// holds a key, or 32 zero bytes when free. A 32-byte slot at a 32-byte
// offset never crosses a disk sector, so a torn write cannot leave half of
// one key and half of another. The file only grows; a free slot is reused.
//
// The store reads the slots through a view outside the Go heap (to open a
// sealed value without a system call; keymem_*.go): on Linux the file
// itself, mapped shared and read-only (its pages are the file's page cache,
// never swapped; opening a store reads nothing of it), elsewhere a copy read
// at open, locked against swapping where the limit allows; left out of core
// dumps where the platform allows (MADV_DONTDUMP). Every write goes through
// pwrite and fdatasync.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

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
// under a reader whose snapshot still names it; writers of slots hold it
// exclusively.
//
// # The pool of synced keys
//
// A slot's key must be on disk before the transaction that first names it
// commits. Written when a secret is sealed, that costs a sync of the key
// file before every commit. So the store keeps a pool (ready): slots that
// hold a fresh key, written and synced, that nothing names yet. seal takes
// its slot from the pool, and the commit needs no sync of the key file.
// The pool is filled where a sync is paid anyway: after a commit, the slots
// of the secrets it deleted are overwritten — with a new random key instead
// of zeros — and the one sync that destroys the old keys makes the new ones
// durable (recycle). Overwriting a key destroys it as zeros do: the old key
// is in no file once the sync returned. The pool holds no secret (its keys
// seal nothing yet); a crash leaves its slots unreferenced, and the next
// open wipes them as any other unreferenced slot (recoverKeys); Close wipes
// them before it marks the file clean, so a clean file still has no
// non-zero slot that nothing names.
type keyFile struct {
	mu      sync.RWMutex
	f       *os.File
	mem     *keyMem  // slot n at mem.b[n*slotSize:] for n < n (keymem_*.go)
	n       uint64   // slots 0..n-1 exist in the file
	free    []uint64 // free (zero) slots below n; complete once scanned
	scanned bool     // free lists every zero slot (else the first alloc that needs one scans)
	ready   []uint64 // the pool: slots with a synced key that nothing names
	target  int      // how many slots recycle keeps in the pool
	dirty   bool     // the file is marked open (markOpen)
	fresh   bool     // openKeyFile created the file
	failed  bool     // a wipe failed: do not mark the file clean at Close

	marked atomic.Bool   // markOpen has marked the file open in this run
	syncs  atomic.Uint64 // fdatasyncs of the file (benchmarks and tests)
	opens  atomic.Uint64 // sealed secrets opened (tests: what reads keys)
}

const (
	// The pool's size follows the largest number of slots one transaction
	// took (twice that, so that the next batch finds enough even if the
	// recycle of the last one is still syncing), within these bounds.
	minPool = 8
	maxPool = 2 * maxBatch
)

// openKeyFile opens or creates the key file at path. clean reports whether
// the file was closed cleanly (a new file is clean); use then fixes up the
// free slots. The file is marked open (unclean) only before the first write
// (markOpen), so that a store only read costs no write.
//
// Opening reads only the header: the slots are read when first needed
// (keymem_linux.go maps the file), and the free ones are found when the
// first slot is needed (scanFree), so that a store of many peers opens in
// about the time of a small one.
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
	k = &keyFile{f: f, n: uint64(size / slotSize), target: minPool}
	if k.mem, err = openKeyMem(f, int(size)); err != nil {
		return nil, false, err
	}
	if k.n == 0 {
		var h [slotSize]byte
		copy(h[:], keysMagic)
		h[len(keysMagic)] = keysClean
		err := k.put(0, &h)
		if err == nil {
			err = k.sync()
		}
		if err != nil {
			k.mem.free()
			return nil, false, fmt.Errorf("peerstore: write key file header: %w", err)
		}
		k.fresh, k.scanned = true, true
		return k, true, nil
	}
	if string(k.mem.b[:len(keysMagic)]) != keysMagic {
		k.mem.free()
		return nil, false, fmt.Errorf("open %s: %w: not a key file of this package", path, ErrCorrupt)
	}
	clean = k.mem.b[len(keysMagic)] == keysClean
	k.dirty = !clean
	return k, clean, nil
}

// put writes v to slot n of the file (not synced), growing the file if n
// is its next slot; the caller holds mu exclusively.
func (k *keyFile) put(n uint64, v *[slotSize]byte) error {
	off := int64(n * slotSize)
	if _, err := k.f.WriteAt(v[:], off); err != nil {
		return err
	}
	if err := k.mem.ensure(k.f, int(off)+slotSize); err != nil {
		return err
	}
	k.mem.wrote(off, v[:])
	if n >= k.n {
		k.n = n + 1
	}
	return nil
}

// markOpen marks the file open (unclean), durably, before the first write
// of this run: from then on a crash makes the next open check every slot.
func (k *keyFile) markOpen() error {
	if k.marked.Load() {
		return nil // every commit asks: no exclusive lock once done
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.dirty {
		if err := k.setState(keysOpen); err != nil {
			return err
		}
		k.dirty = true
	}
	k.marked.Store(true)
	return nil
}

// setState writes the header's state byte and syncs the file; the caller
// holds mu exclusively.
func (k *keyFile) setState(st byte) error {
	h := [slotSize]byte(k.slot(0))
	h[len(keysMagic)] = st
	if err := k.put(0, &h); err != nil {
		return fmt.Errorf("peerstore: write key file header: %w", err)
	}
	return k.sync()
}

// use sets the free slots. With inUse nil (a clean file) every zero slot is
// free, and they are found when the first is needed (scanFree). Otherwise
// (after a crash, or to start a migration) inUse(n) says whether bbolt
// refers to slot n; every other slot is wiped, and the wipes synced, before
// use returns. The file must be marked open before a wipe.
func (k *keyFile) use(inUse func(uint64) bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.free, k.ready, k.scanned = nil, nil, false
	if inUse == nil {
		return nil
	}
	var zero [slotSize]byte
	wiped := false
	for n := k.n - 1; n >= 1; n-- {
		if !inUse(n) && !isZero(k.slot(n)) {
			if err := k.put(n, &zero); err != nil {
				return fmt.Errorf("peerstore: wipe key slot: %w", err)
			}
			wiped = true
		}
		if isZero(k.slot(n)) {
			k.free = append(k.free, n)
		}
	}
	k.scanned = true
	if wiped {
		return k.sync()
	}
	return nil
}

// scanFree finds the free slots of a file that was closed cleanly: every
// zero slot. The caller holds mu exclusively.
func (k *keyFile) scanFree() {
	for n := k.n - 1; n >= 1; n-- {
		if isZero(k.slot(n)) {
			k.free = append(k.free, n)
		}
	}
	k.scanned = true
}

func (k *keyFile) slot(n uint64) []byte { return k.mem.b[n*slotSize : (n+1)*slotSize] }

// isZero reports whether a slot is all zeros (not in constant time: whether
// a slot is free is no secret).
func isZero(b []byte) bool { return [slotSize]byte(b) == [slotSize]byte{} }

// newKey fills v with a random key; zero marks a free slot, and 32 random
// zero bytes never happen.
func newKey(v *[slotSize]byte) error {
	for *v == [slotSize]byte{} {
		if _, err := rand.Read(v[:]); err != nil {
			return err
		}
	}
	return nil
}

// takeFree returns a free slot, or the next new one; the caller holds mu
// exclusively and writes the slot (put) before it is used again.
func (k *keyFile) takeFree() uint64 {
	if !k.scanned {
		k.scanFree()
	}
	if l := len(k.free); l > 0 {
		n := k.free[l-1]
		k.free = k.free[:l-1]
		return n
	}
	return k.n
}

// alloc takes a slot for a new secret: from the pool (synced reports that
// its key is on disk), or else a free slot with a new key written to the
// file but not synced (the caller syncs before anything refers to it).
func (k *keyFile) alloc() (n uint64, synced bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := len(k.ready); l > 0 {
		n = k.ready[l-1]
		k.ready = k.ready[:l-1]
		return n, true, nil
	}
	n = k.takeFree()
	var key [slotSize]byte
	defer clear(key[:])
	if err := newKey(&key); err != nil {
		k.release(n)
		return 0, false, err
	}
	if err := k.put(n, &key); err != nil {
		k.failed = true // the slot may hold part of the key: the next open checks
		return 0, false, fmt.Errorf("peerstore: write key slot: %w", err)
	}
	return n, false, nil
}

// release gives back a slot takeFree returned and that was not written.
func (k *keyFile) release(n uint64) {
	if n < k.n {
		k.free = append(k.free, n)
	}
}

// sync makes the keys written so far durable.
func (k *keyFile) sync() error {
	k.syncs.Add(1)
	if err := fdatasync(k.f); err != nil {
		return fmt.Errorf("peerstore: sync key file: %w", err)
	}
	return nil
}

// wipe overwrites the slots with zeros, syncs, and frees them: the slots
// of secrets sealed for a transaction that failed. A failure leaves them
// in use and the file marked unclean, so that the next OpenBolt wipes them.
func (k *keyFile) wipe(slots []uint64) error {
	return k.destroy(slots, false, 0, "")
}

// recycle destroys the slots of the secrets a committed transaction
// deleted, and refills the pool, with one sync (see keyFile): each dead
// slot gets a new key while the pool is below its target (else zeros), and
// free slots get new keys up to the target. Without dead slots it syncs
// only to refill a pool that is half empty. used is how many slots the
// transaction took; the target follows it. fp is a failpoint between the
// writes and the sync, besides ShredAfterWipe ("" for none).
func (k *keyFile) recycle(dead []uint64, used int, fp string) error {
	return k.destroy(dead, true, used, fp)
}

// destroy overwrites the slots, and with refill tops up the pool, then
// syncs. Exclusively while the slots are overwritten: no reader is between
// its snapshot and its open of one of them. Not while the file syncs: from
// here on no snapshot names them (their deletion committed, or never did),
// and they are neither free nor in the pool before the sync; so readers,
// and the next group commit's seals (batch.go), need not wait for the disk.
func (k *keyFile) destroy(slots []uint64, refill bool, used int, fp string) error {
	k.mu.Lock()
	if refill {
		k.target = min(max(k.target, 2*used), maxPool)
	}
	var zero, key [slotSize]byte
	defer clear(key[:])
	var keyed, zeroed []uint64
	want := 0
	if refill && (len(slots) > 0 || len(k.ready) < k.target/2) {
		// With slots to destroy the sync is paid anyway: fill the pool.
		// Else only a pool half empty is worth a sync of its own.
		want = max(k.target-len(k.ready), 0)
	}
	write := func(n uint64) error {
		if len(keyed) < want {
			clear(key[:])
			if err := newKey(&key); err != nil {
				return err
			}
			if err := k.put(n, &key); err != nil {
				return err
			}
			keyed = append(keyed, n)
			return nil
		}
		if err := k.put(n, &zero); err != nil {
			return err
		}
		zeroed = append(zeroed, n)
		return nil
	}
	var err error
	for _, n := range slots {
		if err = write(n); err != nil {
			break
		}
	}
	for err == nil && len(keyed) < want {
		err = write(k.takeFree())
	}
	// A zeroed slot is free once the sync returned; if the free slots were
	// not yet listed, the scan that lists them finds it (and may hand it
	// out before the sync: then it is overwritten with a new key, which
	// destroys the old one as well, and synced before a commit names it).
	listZeroed := k.scanned
	if err != nil {
		k.failed = true
		k.mu.Unlock()
		return fmt.Errorf("peerstore: wipe key slot: %w", err)
	}
	k.mu.Unlock()
	if len(keyed) == 0 && len(zeroed) == 0 {
		return nil
	}
	failpoint.Inject(failpoint.ShredAfterWipe)
	if fp != "" {
		failpoint.Inject(fp)
	}
	err = k.sync()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.failed = true
		return err
	}
	k.ready = append(k.ready, keyed...)
	if listZeroed {
		k.free = append(k.free, zeroed...)
	}
	return nil
}

// close wipes the pool, marks the file clean (unless a wipe failed), closes
// it and drops the view of it.
func (k *keyFile) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var err error
	if k.dirty && !k.failed {
		err = k.wipePool()
		if err == nil {
			// A separate sync: the header must not say clean before the
			// pool's slots are zero on disk.
			err = k.setState(keysClean)
		}
	}
	err = errors.Join(err, k.f.Close())
	k.mem.free()
	k.mem = nil
	return err
}

// wipePool zeros the pool's slots and syncs; the caller holds mu.
func (k *keyFile) wipePool() error {
	if len(k.ready) == 0 {
		return nil
	}
	var zero [slotSize]byte
	for _, n := range k.ready {
		if err := k.put(n, &zero); err != nil {
			return fmt.Errorf("peerstore: wipe key slot: %w", err)
		}
	}
	k.free = append(k.free, k.ready...)
	k.ready = nil
	return k.sync()
}

// sealAD is the additional data of a sealed secret: what it is and where it
// belongs, so that a sealed value moved to another place does not open.
func sealAD(kind string, where []byte, slot uint64) []byte {
	const prefix = "p2pkex/peerstore/sealed/"
	ad := make([]byte, 0, len(prefix)+len(kind)+1+4+len(where)+8) // one allocation
	ad = append(append(ad, prefix...), kind...)
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
// (kind, where). synced reports whether the slot's key is already on disk
// (it came from the pool); if not, the caller syncs before a commit names it.
func (k *keyFile) seal(kind string, where, secret []byte) (sealed []byte, slot uint64, synced bool, err error) {
	if len(secret) > maxSealedSecret {
		return nil, 0, false, fmt.Errorf("peerstore: secret of %d bytes too large to store", len(secret))
	}
	if slot, synced, err = k.alloc(); err != nil {
		return nil, 0, false, err
	}
	k.mu.RLock()
	aead, err := k.gcm(slot)
	k.mu.RUnlock()
	if err != nil {
		return nil, 0, false, errors.Join(err, k.wipe([]uint64{slot}))
	}
	out := make([]byte, 8+gcmNonceSize, sealedOverhead+len(secret))
	binary.BigEndian.PutUint64(out, slot)
	if _, err := rand.Read(out[8:]); err != nil {
		return nil, 0, false, errors.Join(err, k.wipe([]uint64{slot}))
	}
	out = aead.Seal(out, out[8:8+gcmNonceSize], secret, sealAD(kind, where, slot))
	return out, slot, synced, nil
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
	k.opens.Add(1)
	out, err := aead.Open(dst[:0], sealed[8:8+gcmNonceSize], sealed[8+gcmNonceSize:], sealAD(kind, where, n))
	if err != nil {
		return nil, corrupt("sealed secret in slot %d does not open", n)
	}
	return out, nil
}
