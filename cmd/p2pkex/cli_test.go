package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/stretchr/testify/require"
)

// cmdExits runs a command like exec and checks its exact exit code (exec
// and "! exec" only tell zero from non-zero):
//
//	exits CODE PROGRAM ARGS...
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

func TestGlobalFlagsAfterCommand(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"p2pkex peers", "p2pkex peers"},
		{"p2pkex --repo r peers --json", "p2pkex peers --repo r --json"},
		{"p2pkex --repo=r --json keys X", "p2pkex keys --repo=r --json X"},
		{"p2pkex -repo r id", "p2pkex id -repo r"},
		{"p2pkex --repo r", "p2pkex --repo r"}, // no command: left to the parser
		{"p2pkex --bogus peers", "p2pkex --bogus peers"},
		{"p2pkex --repo r --bogus peers", "p2pkex --repo r --bogus peers"},
		{"p2pkex send --repo r X -", "p2pkex send --repo r X -"},
	} {
		got := strings.Join(globalFlagsAfterCommand(strings.Fields(tc.in)), " ")
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestWithoutRepeats(t *testing.T) {
	for in, want := range map[string]string{
		"stream reset: stream reset: connection closed: stream reset: stream reset": "stream reset: connection closed",
		"exchange with X failed: timeout":                                           "exchange with X failed: timeout",
		"a: b: a":                                                                   "a: b",
	} {
		require.Equal(t, want, oneLine(errors.New(in)), in)
	}
	require.Equal(t, "1 peer", plural(1, "peer"))
	require.Equal(t, "0 peers", plural(0, "peer"))
}

func TestClosest(t *testing.T) {
	names := []string{"peers", "keys", "status", "exchange", "export-key", "init", "id", "inbox"}
	for in, want := range map[string]string{
		"peer": "peers", "key": "keys", "stauts": "status", "exchnage": "exchange",
		"exchang": "exchange", "frobnicate": "", "x": "", "ini": "init",
	} {
		require.Equal(t, want, closest(in, names), in)
	}
}

// TestExchangeInterrupted: Ctrl-C ends an exchange that would otherwise
// wait minutes (a listener that accepts and never answers) with exit 130
// and no error line.
func TestExchangeInterrupted(t *testing.T) {
	repo := t.TempDir()
	var out, errOut strings.Builder
	require.Equal(t, 0, run(context.Background(), []string{"p2pkex", "init", "--repo", repo}, &out, &errOut), errOut.String())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	addr := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port) + "/p2p/12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	errOut.Reset()
	go func() {
		done <- run(ctx, []string{"p2pkex", "exchange", "--repo", repo, "--timeout", "10m", addr}, &out, &errOut)
	}()
	select {
	case c := <-accepted:
		defer c.Close()
	case code := <-done:
		t.Fatalf("exchange ended before dialling: %d %s", code, errOut.String())
	case <-time.After(30 * time.Second): // a hang, not a speed limit
		t.Fatal("exchange did not dial")
	}
	cancel()
	select {
	case code := <-done:
		require.Equal(t, 130, code, errOut.String())
		require.Empty(t, errOut.String())
	case <-time.After(30 * time.Second): // a hang, not a speed limit
		t.Fatal("exchange did not end on Ctrl-C")
	}
}

// notLibp2p listens on loopback, answers every connection as a web server
// would and closes it, and writes its address, as a multiaddr with a
// made-up peer ID, to the file named by its argument.
func notLibp2p() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	port := l.Addr().(*net.TCPAddr).Port
	addr := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port) + "/p2p/12D3KooWBQzweEBTkcurLAfi4ABmLfUTYH46oPbortvrjKGCeBZ2"
	if err := os.WriteFile(os.Args[1]+".tmp", []byte(addr), 0o600); err != nil {
		os.Exit(1)
	}
	if err := os.Rename(os.Args[1]+".tmp", os.Args[1]); err != nil {
		os.Exit(1)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		os.Exit(0)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		_, _ = c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhello\r\n"))
		c.Close()
	}
}
