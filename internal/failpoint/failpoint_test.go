package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
)

func TestInjectUnarmedIsNoop(t *testing.T) {
	if armed != "" {
		t.Skipf("%s is set in the test's environment", EnvVar)
	}
	for _, name := range []string{CommitBeforeWrite, CommitAfterWrite, CommitAfterCommit,
		RotateBeforeWrite, RotateAfterWrite, RotateAfterCommit,
		DeleteSessionsAfterWrite, DeleteSessionsAfterCommit, ShredAfterWipe,
		BatchAfterWrite, BatchAfterCommit, BatchAfterOverwrite, BatchWait, ""} {
		Inject(name)
	}
}

// TestInjectKills re-runs this test binary with one failpoint armed and
// checks that the child died of SIGKILL at it, and that a different
// failpoint did not fire.
func TestInjectKills(t *testing.T) {
	if os.Getenv("FAILPOINT_TEST_CHILD") == "1" {
		Inject(RotateAfterWrite) // armed is CommitAfterWrite: no-op
		Inject(CommitAfterWrite)
		os.Exit(3) // not reached
	}
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL status is Unix-only")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-execute the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestInjectKills$")
	cmd.Env = append(os.Environ(), "FAILPOINT_TEST_CHILD=1", EnvVar+"="+CommitAfterWrite)
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: want a signal death, got %v", err)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child: want SIGKILL, got %v", ee)
	}
}
