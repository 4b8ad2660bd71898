//go:build !linux

package peerstore

import (
	"fmt"
	"io"
	"os"
)

// readKeys reads the start of the key file into b: the copy that the
// platforms other than Linux keep (keymem_bsd.go, keymem_other.go).
func readKeys(f *os.File, b []byte) error {
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, int64(len(b))), b); err != nil {
		return fmt.Errorf("peerstore: read %s: %w", f.Name(), err)
	}
	return nil
}
