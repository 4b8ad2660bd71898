//go:build linux

package node

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestProtectProcess runs ProtectProcess in a child (it changes the whole
// process) and checks its effect there.
func TestProtectProcess(t *testing.T) {
	if os.Getenv("P2PKEX_PROTECT_CHILD") == "1" {
		require.NoError(t, ProtectProcess())
		var lim unix.Rlimit
		require.NoError(t, unix.Getrlimit(unix.RLIMIT_CORE, &lim))
		require.Zero(t, lim.Cur)
		require.Zero(t, lim.Max)
		d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		require.NoError(t, err)
		require.Zero(t, d, "dumpable")
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-execute the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestProtectProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "P2PKEX_PROTECT_CHILD=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}
