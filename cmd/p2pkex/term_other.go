//go:build !linux

package main

import (
	"io"
	"os"
)

// isTerminalFile reports whether r is a character device (a terminal, or
// /dev/null): only then do verify and forget ask.
func isTerminalFile(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
