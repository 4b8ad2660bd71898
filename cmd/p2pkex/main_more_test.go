package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/p2pkex/p2pkex/protocol"
)

// cmdWaitMetrics waits until the daemon of a repo reports its metrics URL
// (daemon --metrics-addr) and stores it in a variable:
//
//	waitmetrics REPO VAR
func cmdWaitMetrics(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitmetrics REPO VAR")
	}
	dir := ts.MkAbs(args[0])
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if d := daemon(dir); d != nil {
			st, err := d.Status(context.Background())
			d.Close()
			if err == nil && st.Metrics != "" {
				ts.Setenv(args[1], st.Metrics)
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("daemon of %s reports no metrics address", filepath.Base(dir))
}

// cmdHTTPGet fetches a URL (on loopback) and writes the body to stdout:
//
//	httpget URL
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: httpget URL")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(args[0])
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = &httpError{resp.Status}
	}
	if err != nil {
		if !neg {
			ts.Fatalf("httpget: %v", err)
		}
		return
	}
	defer resp.Body.Close()
	if neg {
		ts.Fatalf("httpget %s succeeded", args[0])
	}
	_, err = io.Copy(ts.Stdout(), resp.Body)
	ts.Check(err)
}

type httpError struct{ status string }

func (e *httpError) Error() string { return e.status }

// cmdPeerID stores the peer ID of a running daemon in a variable:
//
//	peerid REPO VAR
func cmdPeerID(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: peerid REPO VAR")
	}
	d := daemon(ts.MkAbs(args[0]))
	if d == nil {
		// No daemon: the repo's identity file says it.
		sk, err := loadOrCreateIdentity(filepath.Join(ts.MkAbs(args[0]), identityFile), false)
		ts.Check(err)
		id, err := peer.IDFromPrivateKey(sk)
		ts.Check(err)
		ts.Setenv(args[1], id.String())
		return
	}
	defer d.Close()
	id, err := d.ID(context.Background())
	ts.Check(err)
	ts.Setenv(args[1], id.PeerID)
}

// cmdFreePort stores in a variable a TCP port on 127.0.0.1 that was free a
// moment ago, for a daemon that must come back at the same address:
//
//	freeport VAR
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := l.Addr().(*net.TCPAddr).Port
	ts.Check(l.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}

// cmdSafetyNumber stores the safety number of two peers (their peer IDs)
// in a variable, computed by package protocol, not by the command line:
//
//	safetynumber PEER1 PEER2 VAR
func cmdSafetyNumber(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: safetynumber PEER1 PEER2 VAR")
	}
	a, err := peer.Decode(args[0])
	ts.Check(err)
	b, err := peer.Decode(args[1])
	ts.Check(err)
	ts.Setenv(args[2], strings.ReplaceAll(protocol.NewSafetyNumber(a, b).Digits(), " ", ""))
}

// cmdSleep waits, for a record that must be created in a later second
// than another (records carry whole seconds):
//
//	sleep DURATION
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}
