package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// isTerminalFile reports whether r is a terminal a person types at (not a
// pipe, a file or /dev/null): only then do verify and forget ask.
func isTerminalFile(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
