//go:build !linux

package main

import (
	"io"
	"os"
)

// isTerminal reports whether r is a character device (a terminal, or
// /dev/null): only then do verify and forget ask.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
