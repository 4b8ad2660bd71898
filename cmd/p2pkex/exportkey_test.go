package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/client"
)

// cmdWaitKey waits until the daemon of a repo holds a session key with a
// peer (the responder installs a moment after the initiator returns):
//
//	waitkey REPO PEERID
func cmdWaitKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitkey REPO PEERID")
	}
	d := daemon(ts.MkAbs(args[0]))
	if d == nil {
		ts.Fatalf("no daemon on %s", args[0])
	}
	defer d.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rep, err := d.ExportKey(context.Background(), api.ExportKeyRequest{Peer: args[1], Label: "waitkey", Length: 1})
		if err == nil {
			clear(rep.Key)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.Fatalf("%s has no session key with %s", args[0], args[1])
}

// TestExportKeyMistakes: every mistake with export-key, version and
// shutdown is one line and its exit code: 2 for the command line, 1 for
// what the repo lacks.
func TestExportKeyMistakes(t *testing.T) {
	dir := t.TempDir()
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"p2pkex", "init", "--repo", dir}, &out, &errOut); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut.String())
	}
	const other = "12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v"
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"export-key", "--repo", dir, other}, 2, `export-key: give --label, naming the application and the key's purpose (for example --label "myapp file key v1")`},
		{[]string{"export-key", "--repo", dir, "--label", "", other}, 2, `export-key: give --label, naming the application and the key's purpose (for example --label "myapp file key v1")`},
		{[]string{"export-key", "--repo", dir, "--label", strings.Repeat("x", 240), other}, 2, "export-key: --label of 240 bytes is longer than 239"},
		{[]string{"export-key", "--repo", dir, "--label", "x", "--length", "8161", other}, 2, "export-key: --length 8161 outside [1, 8160]"},
		{[]string{"export-key", "--repo", dir, "--label", "x", "--length", "-1", other}, 2, "export-key: --length -1 outside [1, 8160]"},
		{[]string{"export-key", "--repo", dir, "--label", "x", "--hex", "--base64", other}, 2, "export-key: --hex and --base64 do not go together"},
		{[]string{"export-key", "--repo", dir, "--label", "x"}, 2, "export-key: want one PEER (a peer ID), got 0 arguments"},
		{[]string{"export-key", "--repo", dir, "--label", "x", "nonsense"}, 2, `"nonsense" is neither a peer ID nor a multiaddr ending in /p2p/<peer ID>`},
		{[]string{"export-key", "--repo", dir, "--label", "x", other}, 1, `no session key with ` + other + `: run "p2pkex exchange --repo ` + dir + ` ` + other + `" first`},
		{[]string{"export-key", "--repo", dir + "/nowhere", "--label", "x", other}, 1, `no repo at ` + dir + `/nowhere: run "p2pkex init --repo ` + dir + `/nowhere"`},
		{[]string{"version", "extra"}, 2, `version: unexpected argument "extra"`},
		{[]string{"shutdown", "--repo", dir}, 1, "no daemon running on " + dir},
		{[]string{"shutdown", "--repo", dir, "extra"}, 2, `shutdown: unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tc.args[:1], " ")+" "+tc.want, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), append([]string{"p2pkex"}, tc.args...), &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errOut.String())
			}
			if got, want := errOut.String(), "p2pkex: "+tc.want+"\n"; got != want {
				t.Fatalf("stderr\n got %q\nwant %q", got, want)
			}
			if out.Len() != 0 {
				t.Fatalf("stdout %q, want nothing", out.String())
			}
		})
	}
}

// TestExportKeyAPIRefuses: the daemon's endpoint checks its request too,
// for clients other than the CLI.
func TestExportKeyAPIRefuses(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		var out, errOut strings.Builder
		done <- run(ctx, []string{"p2pkex", "daemon", "--init", "--repo", dir, "--no-mdns", "--no-dht", "--listen", "/ip4/127.0.0.1/tcp/0"}, &out, &errOut)
	}()
	defer func() { cancel(); <-done }()
	var d *client.Client
	for range 1000 {
		if d = daemon(dir); d != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d == nil {
		t.Fatal("the daemon did not start")
	}
	const other = "12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v"
	for _, tc := range []struct {
		req  api.ExportKeyRequest
		want string
	}{
		{api.ExportKeyRequest{Peer: other, Label: "", Length: 32}, "no session key"}, // no session is checked first
		{api.ExportKeyRequest{Peer: "nonsense", Label: "x", Length: 32}, `"nonsense" is not a peer ID`},
	} {
		_, err := d.ExportKey(ctx, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.req, err, tc.want)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://p2pkex/v0/export-key", nil)
	resp, err := unixHTTP(d.Socket()).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Error("GET /v0/export-key answered")
	}
}

// unixHTTP is an HTTP client for the unix socket at path.
func unixHTTP(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}
