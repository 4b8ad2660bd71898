package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pkex/p2pkex/internal/netnstest"
)

// TestDaemonMDNSAcrossNetns starts two daemons with mDNS on (the default),
// each in a network namespace of its own that the test creates and removes
// (netnstest.Pair; skips without root and ip). Each daemon must print
// "discovered <the other> via mdns" (the daemon also prints the peers
// found before its event subscription began, as mDNS often finds one
// while the node starts); then an exchange runs from one to the other by
// peer ID alone, the address coming from discovery, also inside the
// namespace. Nothing runs mDNS outside them.
func TestDaemonMDNSAcrossNetns(t *testing.T) {
	nsA, nsB := netnstest.Pair(t)
	// The test binary runs as p2pkex when called by that name (TestMain).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "p2pkex")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	p2pkex := func(ns string, args ...string) *netnstest.Proc {
		cmd := netnstest.Command(t, ns, bin, args...)
		cmd.Env = append(os.Environ(), "GOLOG_LOG_LEVEL=error")
		return netnstest.Start(t, ns+" p2pkex "+args[0], cmd)
	}
	const wait = 40 * time.Second
	alice := p2pkex(nsA, "daemon", "--init", "--repo", filepath.Join(dir, "alice"), "--listen", "/ip4/"+netnstest.AddrA+"/tcp/0")
	bob := p2pkex(nsB, "daemon", "--init", "--repo", filepath.Join(dir, "bob"), "--listen", "/ip4/"+netnstest.AddrB+"/tcp/0")
	idA := alice.Await(t, wait, "p2pkex daemon ", "")
	idB := bob.Await(t, wait, "p2pkex daemon ", "")

	if got := alice.Await(t, wait, "discovered ", " via mdns"); got != idB {
		t.Fatalf("alice discovered %s, want bob %s", got, idB)
	}
	if got := bob.Await(t, wait, "discovered ", " via mdns"); got != idA {
		t.Fatalf("bob discovered %s, want alice %s", got, idA)
	}

	// Through alice's daemon, inside her namespace, by peer ID alone: the
	// daemon knows bob's address only from mDNS.
	ex := p2pkex(nsA, "exchange", "--repo", filepath.Join(dir, "alice"), "--quiet", idB)
	keyID := ex.Await(t, wait, "epoch 1, key ID ", " with "+idB+" (both public keys sent)")
	if got := bob.Await(t, wait, "exchange with "+idA+": epoch 1, key ID ", " (both public keys sent)"); !strings.HasPrefix(got, keyID) {
		t.Fatalf("bob installed key ID %s, alice %s", got, keyID)
	}
}
