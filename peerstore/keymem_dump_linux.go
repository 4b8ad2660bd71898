package peerstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// dontDump leaves b out of core dumps.
func dontDump(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTDUMP) }

// fdatasync syncs f's data (and its size, if it changed) without its
// times, as bbolt does.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
