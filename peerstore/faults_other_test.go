//go:build !unix

package peerstore_test

// majorFaults is not counted here.
func majorFaults() int64 { return -1 }
