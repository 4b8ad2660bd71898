//go:build linux || darwin || freebsd || netbsd || openbsd

package peerstore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// keyMem is memory for the copy of the key file: an anonymous mapping
// outside the Go heap (the garbage collector never copies it), locked
// against swapping where RLIMIT_MEMLOCK allows (best effort: a failure is
// not an error) and, on Linux, left out of core dumps.
type keyMem struct {
	b      []byte
	locked bool
}

func newKeyMem(size int) (*keyMem, error) {
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

// free wipes and unmaps the memory.
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
