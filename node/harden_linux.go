package node

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

func protectProcess() error {
	var errs []error
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		errs = append(errs, fmt.Errorf("disable core dumps (RLIMIT_CORE): %w", err))
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		errs = append(errs, fmt.Errorf("clear dumpable flag (PR_SET_DUMPABLE): %w", err))
	}
	return errors.Join(errs...)
}
