//go:build !unix

package bench

import "time"

// processCPU is not measured on this system: the CPU figures of "p2pkex
// bench" come out as zero.
func processCPU() time.Duration { return 0 }
