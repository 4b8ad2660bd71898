package peerstore

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// keyMem is the store's view of the key file. On Linux it is the file
// itself, mapped shared and read-only: opening a store reads nothing (a
// page is read when a slot on it is first needed, so a store of 100,000
// peers opens as fast as a small one), and there is no second copy of the
// keys. Every write still goes through pwrite and fdatasync (put in
// shred.go), which the mapping sees at once (Linux's page cache is one for
// both). bbolt reads store.db the same way (a shared read-only mapping,
// written with pwrite), so a file system that holds a store supports it.
//
// What the copy that other platforms keep (keymem_bsd.go) is locked in
// memory for, a mapping of the file has by nature: its pages are the page
// cache of store.keys, which the kernel writes back to store.keys (where the
// keys already are, and where they are wiped) and never to swap. The
// mapping is left out of core dumps (MADV_DONTDUMP).
//
// The mapping reaches past the end of the file (touching such a page would
// be SIGBUS), but only slots below keyFile.n are read, and a slot is
// written (growing the file) before n counts it. Like store.db's mapping,
// it faults if another process truncates the file under the store.
type keyMem struct {
	b []byte // the mapping; the file's size is keyFile.n slots
}

// keyMemReserve is the least length mapped, so that a small file does not
// remap at every growth.
const keyMemReserve = 1 << 20

func openKeyMem(f *os.File, size int) (*keyMem, error) {
	m := &keyMem{}
	if err := m.remap(f, size); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *keyMem) remap(f *os.File, size int) error {
	page := unix.Getpagesize()
	n := max(2*size, keyMemReserve)
	n = (n + page - 1) / page * page
	b, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("peerstore: map key file: %w", err)
	}
	dontDump(b)
	if m.b != nil {
		_ = unix.Munmap(m.b)
	}
	m.b = b
	return nil
}

// ensure makes the mapping cover the first size bytes of the file.
func (m *keyMem) ensure(f *os.File, size int) error {
	if size <= len(m.b) {
		return nil
	}
	return m.remap(f, size)
}

// wrote: the mapping sees the file's writes.
func (m *keyMem) wrote(int64, []byte) {}

// free unmaps the file (there is no copy to wipe).
func (m *keyMem) free() {
	if m == nil || m.b == nil {
		return
	}
	_ = unix.Munmap(m.b)
	m.b = nil
}
