//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package peerstore

// keyMem is memory for the copy of the key file; on this platform, plain
// Go memory (no locking, no exclusion from core dumps).
type keyMem struct{ b []byte }

func newKeyMem(size int) (*keyMem, error) { return &keyMem{b: make([]byte, size)}, nil }

func (m *keyMem) free() {
	if m == nil {
		return
	}
	clear(m.b)
	m.b = nil
}
