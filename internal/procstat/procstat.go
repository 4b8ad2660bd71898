// Package procstat reads what the load tools report about their own process:
// CPU time, resident memory, open files, and the heap after a forced
// collection. The figures come from the Go runtime and, on Linux, from
// /proc; where a figure cannot be read it is -1, never a guess.
package procstat

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// Heap is the heap after a forced collection.
type Heap struct {
	// Live is the bytes of live objects (runtime.MemStats.HeapAlloc right
	// after runtime.GC): what the program holds, without garbage.
	Live uint64 `json:"heap_live_bytes"`
	// Inuse is the bytes of heap spans in use (HeapInuse): Live plus the
	// free space inside spans that hold live objects (fragmentation).
	Inuse uint64 `json:"heap_inuse_bytes"`
	// Sys is the heap memory obtained from the OS (HeapSys).
	Sys uint64 `json:"heap_sys_bytes"`
}

// HeapAfterGC runs two full collections and reads the heap. Two, because
// the first only moves sync.Pool contents to the pools' victim caches,
// which stay live until the next one: after one collection the figure would
// count whatever the pools held. It stops the world; call it between units
// of work, not inside a timed one.
func HeapAfterGC() Heap {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return Heap{Live: m.HeapAlloc, Inuse: m.HeapInuse, Sys: m.HeapSys}
}

// OpenFiles counts the process's open file descriptors (Linux: the entries
// of /proc/self/fd, less the one reading it); -1 elsewhere.
func OpenFiles() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1
}

// RSS returns the process's resident set size in bytes (Linux: VmRSS of
// /proc/self/status); -1 elsewhere.
func RSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "35912 kB"
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	return -1
}

// CPU returns the CPU time (user and system) the process has used; 0 where
// it cannot be read.
func CPU() time.Duration { return processCPU() }

// DirSize sums the sizes of the regular files under dir (a store's files);
// -1 if dir cannot be read.
func DirSize(dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return -1
	}
	return total
}

// LiveHeapAtLastGC returns the live heap the last collection marked
// (runtime/metrics "/gc/heap/live:bytes"), without forcing one: for
// sampling a long run, where forcing collections would add their cost to
// the CPU being measured. 0 before the first collection.
func LiveHeapAtLastGC() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
