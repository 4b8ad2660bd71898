package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/internal/childproc"
)

// startDaemon runs the daemon of dir in this process, on loopback, until
// stop is called or the test ends, and returns its first address.
func startDaemon(t *testing.T, dir string) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &childproc.Buffer{} // the daemon's output
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"p2pkex", "daemon", "--repo", dir, "--no-mdns", "--no-dht",
			"--listen", "/ip4/127.0.0.1/tcp/0"}, out, out)
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("daemon exit %d: %s", code, out.String())
		}
	})
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if d := daemon(dir); d != nil {
			id, err := d.ID(context.Background())
			d.Close()
			if err == nil && len(id.Addrs) > 0 {
				return id.Addrs[0], stop
			}
		}
		select {
		case code := <-done:
			t.Fatalf("daemon exit %d: %s", code, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("daemon of %s did not start: %s", dir, out.String())
	return "", nil
}

// TestChatInterrupt: Ctrl-C (SIGINT) ends a chat waiting for input at
// once, with exit status 130.
func TestChatInterrupt(t *testing.T) {
	bin, err := exec.LookPath("p2pkex") // the test binary, put there by testscript.Main
	if err != nil {
		t.Skip("no p2pkex command in PATH (testscript.Main sets it up)")
	}
	alice, _, _, bobID := exchangedRepos(t) // verify_test.go
	startDaemon(t, alice)

	cmd := exec.Command(bin, "chat", "--repo", alice, "/ip4/127.0.0.1/tcp/1/p2p/"+bobID.String())
	cmd.Env = append(os.Environ(), "GOLOG_LOG_LEVEL=error")
	stdin, err := cmd.StdinPipe() // never written or closed: chat waits for a line
	require.NoError(t, err)
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr.String())
	require.Equal(t, "chat with "+bobID.String()+"; end with Ctrl-D\n", line)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	exited := make(chan error, 1)
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case err = <-exited:
	case <-time.After(20 * time.Second): // a hang, not a speed limit
		_ = cmd.Process.Kill()
		t.Fatal("chat did not end on SIGINT")
	}
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 130, ee.ExitCode(), "stderr: %s", stderr.String())
	require.Empty(t, stderr.String())
}

// TestInboxFollow: inbox --follow --json prints the messages kept so far,
// then each new one as it arrives, and ends on Ctrl-C with exit 130.
func TestInboxFollow(t *testing.T) {
	alice, bob, aliceID, _ := exchangedRepos(t) // verify_test.go
	bobAddr, stopBob := startDaemon(t, bob)
	send := func(msg string) {
		t.Helper()
		var out, errOut strings.Builder
		code := run(context.Background(), []string{"p2pkex", "send", "--repo", alice, bobAddr, msg}, &out, &errOut)
		require.Equal(t, 0, code, errOut.String())
	}
	send("before")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errOut strings.Builder
	done := make(chan int, 1)
	go func() {
		code := runIO(ctx, []string{"p2pkex", "inbox", "--repo", bob, "--follow", "--json"}, strings.NewReader(""), pw, &errOut)
		pw.Close()
		done <- code
	}()
	lines := bufio.NewScanner(pr)
	next := func() api.InboxMessage {
		t.Helper()
		require.True(t, lines.Scan(), "inbox ended: %s", errOut.String())
		var m api.InboxMessage
		require.NoError(t, json.Unmarshal(lines.Bytes(), &m), lines.Text())
		return m
	}
	m := next()
	require.Equal(t, "before", m.Text)
	require.Equal(t, uint64(1), m.Seq)
	require.Equal(t, aliceID.String(), m.From)

	send("while following")
	m = next()
	require.Equal(t, "while following", m.Text)
	require.Equal(t, uint64(2), m.Seq)
	require.Equal(t, len("while following"), m.Size)
	require.Regexp(t, `"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"`, lines.Text())

	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	select {
	case code := <-done:
		require.Equal(t, 130, code, errOut.String())
	case <-time.After(20 * time.Second): // a hang, not a speed limit
		t.Fatal("inbox --follow did not end on cancel")
	}

	// A follower whose daemon stops is told so.
	var out childproc.Buffer
	var errOut2 strings.Builder
	go func() {
		done <- runIO(context.Background(), []string{"p2pkex", "inbox", "--repo", bob, "--follow"}, strings.NewReader(""), &out, &errOut2)
	}()
	for daemon(bob) != nil && !strings.Contains(out.String(), "while following") {
		time.Sleep(10 * time.Millisecond) // polled, not timed: the follower printed both
	}
	stopBob()
	select {
	case code := <-done:
		require.Equal(t, 1, code)
		require.Equal(t, "p2pkex: inbox --follow: the daemon stopped\n", errOut2.String())
	case <-time.After(20 * time.Second): // a hang, not a speed limit
		t.Fatal("inbox --follow did not end with its daemon")
	}
}
