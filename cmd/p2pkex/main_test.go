package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"p2pkex":     main,
		"plainhost":  plainHost,
		"downgrader": downgrader, // main_hostile_test.go
		"notlibp2p":  notLibp2p,  // cli_test.go
	})
}

// TestScripts runs the command-line scenarios in testdata/script. Every
// daemon listens on 127.0.0.1 only.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitdaemon":   cmdWaitDaemon,
			"waitfile":     cmdWaitFile,
			"waitmetrics":  cmdWaitMetrics, // main_more_test.go
			"httpget":      cmdHTTPGet,
			"peerid":       cmdPeerID,
			"freeport":     cmdFreePort,     // main_more_test.go
			"safetynumber": cmdSafetyNumber, // main_more_test.go
			"sleep":        cmdSleep,        // main_more_test.go
			"forgerecord":  cmdForgeRecord,  // main_hostile_test.go
			"waitkey":      cmdWaitKey,      // exportkey_test.go
			"exits":        cmdExits,        // cli_test.go
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("GOLOG_LOG_LEVEL", "error")
			return nil
		},
	})
}

// cmdWaitDaemon waits until the daemon of a repo answers on its control
// socket, then stores its first address in an environment variable:
//
//	waitdaemon REPO VAR
func cmdWaitDaemon(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitdaemon REPO VAR")
	}
	dir := ts.MkAbs(args[0])
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if d := daemon(dir); d != nil {
			id, err := d.ID(context.Background())
			d.Close()
			if err == nil && len(id.Addrs) > 0 {
				ts.Setenv(args[1], id.Addrs[0])
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("daemon of %s did not start", filepath.Base(dir))
}

// plainHost runs a libp2p host on loopback that does not speak p2pkex and
// writes its address to the file named by its argument.
func plainHost() {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil || len(addrs) == 0 {
		fmt.Fprintln(os.Stderr, "no address", err)
		os.Exit(1)
	}
	tmp := os.Args[1] + ".tmp"
	if err := os.WriteFile(tmp, []byte(addrs[0].String()), 0o600); err != nil {
		os.Exit(1)
	}
	if err := os.Rename(tmp, os.Args[1]); err != nil {
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	h.Close()
	os.Exit(0)
}

// cmdWaitFile waits for a file and stores its content in a variable:
//
//	waitfile FILE VAR
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitfile FILE VAR")
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(ts.MkAbs(args[0])); err == nil {
			ts.Setenv(args[1], strings.TrimSpace(string(b)))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("%s did not appear", args[0])
}

func TestDemo(t *testing.T) {
	for _, args := range [][]string{
		{"p2pkex", "demo"},
		{"p2pkex", "demo", "--suite", "X25519", "--notice-size", "128", "--quiet"},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), args, &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d: %s\n%s", code, errOut.String(), out.String())
			}
			got := out.String()
			for _, want := range []string{
				"epoch 1, key ID", "(both public keys sent)",
				"epoch 2, key ID", "phase 2: skipped",
				"epoch 3, key ID", "(peer's public key received)", "(own public key sent)",
				"All 3 exchanges agreed.",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q:\n%s", want, got)
				}
			}
			if strings.Count(got, "keys agree") != 3 {
				t.Errorf("want 3 agreements:\n%s", got)
			}
			// It closes with the safety number; the full demo explains its
			// words and says what to try next, --quiet does not.
			if !regexp.MustCompile(`(?m)^Safety number of Alice and Bob: (\d{5} ){11}\d{5}$`).MatchString(got) {
				t.Errorf("no safety number:\n%s", got)
			}
			quiet := strings.Contains(strings.Join(args, " "), "--quiet")
			for _, want := range []string{"Now try two daemons", "  key part  ", "  notice  ", "  exchange key  ", "-> START"} {
				if strings.Contains(got, want) == quiet {
					t.Errorf("quiet %v, output has %q: %v\n%s", quiet, want, !quiet, got)
				}
			}
			// Alice's lines are on the left, Bob's on the right, phase by
			// phase: the first notice row reads Alice's START sent, Bob's
			// received.
			if !quiet && !regexp.MustCompile(`(?m)^ +-> START +\d+ B +<- START +\d+ B$`).MatchString(got) {
				t.Errorf("no START row in two columns:\n%s", got)
			}
			if !strings.Contains(got, "Alice (initiator)") || !strings.Contains(got, "Bob (responder)") {
				t.Errorf("columns not labelled:\n%s", got)
			}
		})
	}
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"frobnicate"},
		{"demo", "--notice-size", "12"},
		{"demo", "--suite", "RSA"},
		{"exchange", "--repo", t.TempDir(), "not-a-multiaddr"},
		{"exchange", "--repo", t.TempDir()},
		{"daemon", "--repo", t.TempDir(), "--no-mdns", "--listen", "/ip4/300.1.1.1/tcp/1"},
		{"daemon", "--repo", t.TempDir(), "--no-mdns", "--bootstrap", "not-a-multiaddr"},
		{"daemon", "--repo", t.TempDir(), "--no-mdns", "--no-dht", "--dht-server"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), append([]string{"p2pkex"}, args...), &out, &errOut)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, errOut.String())
			}
			msg := errOut.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "p2pkex: ") {
				t.Fatalf("want one line starting with \"p2pkex: \", got %q", msg)
			}
		})
	}
}

// TestScriptsNeverRunMDNS: mDNS announces to the whole local network, so
// every daemon a script starts must pass --no-mdns.
func TestScriptsNeverRunMDNS(t *testing.T) {
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "p2pkex daemon") && !strings.HasPrefix(strings.TrimSpace(line), "#") &&
				!strings.Contains(line, "--no-mdns") {
				t.Errorf("%s:%d: daemon without --no-mdns: %s", f, i+1, line)
			}
		}
	}
}
