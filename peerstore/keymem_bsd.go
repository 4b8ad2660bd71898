//go:build darwin || freebsd || netbsd || openbsd

package peerstore

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// keyMem is the store's view of the key file. On these platforms it is a
// copy, read at open, in an anonymous mapping outside the Go heap (the
// garbage collector never copies it), locked against swapping where
// RLIMIT_MEMLOCK allows (best effort: a failure is not an error). Not every
// one of them keeps a file mapping coherent with pwrite, so they do not map
// the file itself as Linux does (keymem_linux.go).
type keyMem struct {
	b      []byte
	locked bool
}

// openKeyMem reads the first size bytes of f.
func openKeyMem(f *os.File, size int) (*keyMem, error) {
	m, err := newAnonMem(max(size, 64*slotSize))
	if err != nil {
		return nil, err
	}
	if err := readKeys(f, m.b[:size]); err != nil {
		m.free()
		return nil, err
	}
	return m, nil
}

func newAnonMem(size int) (*keyMem, error) {
	page := unix.Getpagesize()
	size = (size + page - 1) / page * page
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("peerstore: map %d bytes for keys: %w", size, err)
	}
	m := &keyMem{b: b}
	m.locked = unix.Mlock(b) == nil
	dontDump(b)
	return m, nil
}

// ensure makes b cover the first size bytes of the file (f has them, or is
// about to be written up to there); it moves the copy to a larger region
// and wipes the old one.
func (m *keyMem) ensure(_ *os.File, size int) error {
	if size <= len(m.b) {
		return nil
	}
	n, err := newAnonMem(2 * size)
	if err != nil {
		return err
	}
	copy(n.b, m.b)
	m.free()
	*m = *n
	return nil
}

// wrote keeps the copy in step with a write of p at off to the file.
func (m *keyMem) wrote(off int64, p []byte) { copy(m.b[off:], p) }

// free wipes and unmaps the copy.
func (m *keyMem) free() {
	if m == nil || m.b == nil {
		return
	}
	clear(m.b)
	if m.locked {
		_ = unix.Munlock(m.b)
	}
	_ = unix.Munmap(m.b)
	m.b = nil
}
