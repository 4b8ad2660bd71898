// Package childproc runs the test binary again as a child process, for the
// crash tests that kill it with SIGKILL (at a failpoint of
// internal/failpoint, or from outside) and then check what it left on disk:
// node/crash_test.go and peerstore/shred_test.go. Only tests import it.
package childproc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Exe returns the path of the running test binary, to run as a child. It
// skips t where a crash test cannot run: without SIGKILL (Windows), or when
// the binary cannot be found.
func Exe(t testing.TB) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("crash tests need SIGKILL")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-execute the test binary: %v", err)
	}
	return exe
}

// Command returns a command that runs the test binary exe with only the
// test named test, once, with env added to this process's environment.
// When ctx ends first the child gets SIGQUIT, not SIGKILL: it dumps its
// goroutines, and its end is not mistaken for a failpoint's SIGKILL; Wait
// stops waiting for its output 5 s later.
func Command(ctx context.Context, exe, test string, env ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// Killed reports whether err, what the child's Wait (or Run, Output)
// returned, says that it died of SIGKILL.
func Killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// Buffer is a bytes.Buffer that a child's output (or a goroutine's) may be
// written to while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
