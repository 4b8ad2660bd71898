//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package peerstore

import "os"

// keyMem is the store's view of the key file; on this platform, a copy in
// plain Go memory (no locking, no exclusion from core dumps), read at open.
type keyMem struct{ b []byte }

func openKeyMem(f *os.File, size int) (*keyMem, error) {
	m := &keyMem{b: make([]byte, max(size, 64*slotSize))}
	if err := readKeys(f, m.b[:size]); err != nil {
		return nil, err
	}
	dontDump(m.b) // a no-op here
	return m, nil
}

func (m *keyMem) ensure(_ *os.File, size int) error {
	if size > len(m.b) {
		b := make([]byte, 2*size)
		copy(b, m.b)
		clear(m.b)
		m.b = b
	}
	return nil
}

func (m *keyMem) wrote(off int64, p []byte) { copy(m.b[off:], p) }

func (m *keyMem) free() {
	if m == nil {
		return
	}
	clear(m.b)
	m.b = nil
}
