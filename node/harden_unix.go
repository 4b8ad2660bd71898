//go:build unix && !linux

package node

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func protectProcess() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("disable core dumps (RLIMIT_CORE): %w", err)
	}
	return nil
}
