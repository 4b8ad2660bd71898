//go:build unix

package peerstore_test

import "syscall"

// majorFaults is the process's major page faults so far (pages it waited
// for the disk to read), for the benchmarks.
func majorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Majflt
}
