package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExchangeTimeoutThroughDaemon: when --timeout ends an exchange the
// daemon runs, the command says what timed out, as its own node would,
// not that the daemon did not answer.
func TestExchangeTimeoutThroughDaemon(t *testing.T) {
	dir := t.TempDir()
	var out, errOut strings.Builder
	require.Equal(t, 0, run(context.Background(), []string{"p2pkex", "init", "--repo", dir}, &out, &errOut), errOut.String())
	_, stop := startDaemon(t, dir) // inbox_test.go
	defer stop()

	// A loopback port that accepts connections and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns sync.WaitGroup
	defer conns.Wait()
	defer l.Close()
	conns.Add(1)
	go func() {
		defer conns.Done()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	const other = "12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v"
	addr := "/ip4/127.0.0.1/tcp/" + strings.Split(l.Addr().String(), ":")[1] + "/p2p/" + other
	errOut.Reset()
	code := run(context.Background(), []string{"p2pkex", "exchange", "--repo", dir, "--timeout", "300ms", addr}, &out, &errOut)
	require.Equal(t, 1, code)
	require.Equal(t, "p2pkex: exchange with "+other+" timed out\n", errOut.String())
}
