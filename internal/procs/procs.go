// Package procs sets the Go scheduler's processor count of a long-running
// p2pkex process (the daemon, the load and swarm tools), so that the tools
// measure the node as the daemon runs it.
//
// A goroutine in a blocking system call keeps its P (the scheduler's right
// to run Go code) until the runtime's monitor notices the call and hands
// the P to another thread — after 20 µs at best, up to 10 ms when the
// monitor has backed off. A node on bbolt makes such calls all the time
// (fdatasync of store.db and store.keys, at every group commit), so with
// one P per CPU a CPU sat idle while runnable exchanges waited: `p2pkex
// bench --store both` on 2 CPUs used 0.78–0.82 of the cores on bbolt
// against 0.95 in memory. One P more than CPUs fills that gap: the bbolt
// load ran about 25 % faster, and the in-memory load no slower
// (docs/performance/store.md, "One P more than CPUs").
package procs

import (
	"os"
	"runtime"
)

// cpus is GOMAXPROCS as the runtime set it at start: the CPUs the process
// may use (Go's default counts the CPU affinity and the cgroup's CPU
// quota), or $GOMAXPROCS.
var cpus = runtime.GOMAXPROCS(0)

// CPUs is the number of CPUs the process may use, whatever Raise did:
// the figure to divide work by.
func CPUs() int { return cpus }

// Raise gives the scheduler one P more than CPUs, unless $GOMAXPROCS is
// set (the user's choice stands). It returns the GOMAXPROCS in effect.
func Raise() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(cpus + 1)
	return cpus + 1
}
