//go:build unix

package failpoint

import (
	"os"
	"syscall"
	"time"
)

// kill sends SIGKILL to this process. A signal a process sends itself is
// delivered before kill(2) returns; the loop only makes sure that nothing
// after Inject runs if it were not.
func kill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	for {
		time.Sleep(time.Hour)
	}
}
