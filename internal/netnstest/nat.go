package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Addresses of the routed network NATNet builds, without the /24. The
// "public" segment 10.80.0.0/24 joins the relay, the public node and the
// outside of both routers; each router masquerades its LAN behind its
// public address.
const (
	NATRelay   = "10.80.0.10" // relay, on the public segment
	NATPublic  = "10.80.0.20" // a node with a public address
	NATRouter1 = "10.80.0.1"  // router 1, outside
	NATRouter2 = "10.80.0.2"  // router 2, outside
	NATNodeA   = "10.81.1.2"  // node A, in LAN 1 behind router 1 (10.81.1.1)
	NATNodeB   = "10.81.2.2"  // node B, in LAN 2 behind router 2 (10.81.2.1)
)

// NATNet is a routed network of namespaces: a public segment (a bridge in
// Relay's namespace) holding the relay, a public node and two NAT routers,
// each with a LAN of one node behind it.
type NATNet struct {
	Relay, Public, Router1, Router2, A, B string // namespace names
	IPTables                              string // the iptables the routers use

	ip      string
	lanDevs [2]string // each router's interface on its LAN
	blocked bool
}

// NAT builds a NATNet and removes it when the test ends, passed or failed.
// It skips the test, with one line saying why, unless the test runs as root
// with ip and iptables (or iptables-legacy) on the PATH. All addresses
// exist only inside the namespaces; LAN addresses are not routed from the
// public segment, so a LAN node is reachable only through its router's
// masquerade, as behind a home router. Like a home router, each router
// drops packets from outside that belong to no connection it tracks.
func NAT(t testing.TB) *NATNet {
	t.Helper()
	ip := IP(t)
	iptables := findIPTables(t)
	id := fmt.Sprintf("%d%c", os.Getpid(), 'a'+rune(seq.Add(1)%26))
	n := &NATNet{
		Relay: "p2pkex-" + id + "-pub", Public: "p2pkex-" + id + "-pubnode",
		Router1: "p2pkex-" + id + "-r1", Router2: "p2pkex-" + id + "-r2",
		A: "p2pkex-" + id + "-a", B: "p2pkex-" + id + "-b",
		IPTables: iptables, ip: ip,
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{n.Relay, n.Public, n.Router1, n.Router2, n.A, n.B} {
		run(ip, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput(); err != nil {
				t.Errorf("remove network namespace %s: %v: %s", ns, err, out)
			}
		})
		run(ip, "-n", ns, "link", "set", "lo", "up")
	}
	// The public segment: a bridge in the relay's namespace.
	br := "pk" + id + "br"
	run(ip, "-n", n.Relay, "link", "add", br, "type", "bridge")
	run(ip, "-n", n.Relay, "addr", "add", NATRelay+"/24", "dev", br)
	run(ip, "-n", n.Relay, "link", "set", br, "up")
	// link joins ns (interface dev, address addr) to the bridge or to the
	// peer namespace; interfaces are made inside the namespaces.
	link := func(ns, dev, addr, peerNS, peerDev, peerAddr string) {
		run(ip, "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peerDev, "netns", peerNS)
		run(ip, "-n", ns, "addr", "add", addr+"/24", "dev", dev)
		run(ip, "-n", ns, "link", "set", dev, "up")
		if peerAddr == "" {
			run(ip, "-n", peerNS, "link", "set", peerDev, "master", br)
		} else {
			run(ip, "-n", peerNS, "addr", "add", peerAddr+"/24", "dev", peerDev)
		}
		run(ip, "-n", peerNS, "link", "set", peerDev, "up")
	}
	link(n.Public, "pk"+id+"p", NATPublic, n.Relay, "pk"+id+"pb", "")
	for i, r := range []struct{ router, node, out, lanRouter, lanNode string }{
		{n.Router1, n.A, NATRouter1, "10.81.1.1", NATNodeA},
		{n.Router2, n.B, NATRouter2, "10.81.2.1", NATNodeB},
	} {
		out := fmt.Sprintf("pk%so%d", id, i+1)
		n.lanDevs[i] = fmt.Sprintf("pk%slr%d", id, i+1)
		link(r.router, out, r.out, n.Relay, fmt.Sprintf("pk%sob%d", id, i+1), "")
		link(r.node, fmt.Sprintf("pk%sl%d", id, i+1), r.lanNode, r.router, n.lanDevs[i], r.lanRouter)
		run(ip, "-n", r.node, "route", "add", "default", "via", r.lanRouter)
		run(ip, "netns", "exec", r.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		run(ip, "netns", "exec", r.router, iptables, "-t", "nat", "-A", "POSTROUTING", "-o", out, "-j", "MASQUERADE")
		// The router's firewall, as on a home router: from the outside only
		// packets of connections it already tracks pass. Unsolicited ones
		// are dropped, not refused: a TCP RST (or ICMP port unreachable)
		// from the router would end the other side's hole-punching dial
		// before this side's own packet has opened the mapping.
		for _, chain := range []string{"INPUT", "FORWARD"} {
			run(ip, "netns", "exec", r.router, iptables, "-A", chain, "-i", out, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
			run(ip, "netns", "exec", r.router, iptables, "-A", chain, "-i", out, "-j", "DROP")
		}
	}
	return n
}

// BlockDirect makes each router refuse what its LAN sends to the other
// router's public address (block true), or stops refusing it (false). While
// blocked, A and B reach each other only through the relay, and every hole
// punching attempt between them fails at once (TCP reset, ICMP port
// unreachable) instead of waiting for a timeout. The rules live in the
// routers' namespaces and go with them.
func (n *NATNet) BlockDirect(t testing.TB, block bool) {
	t.Helper()
	if block == n.blocked {
		return
	}
	for i, r := range []struct{ router, other string }{{n.Router1, NATRouter2}, {n.Router2, NATRouter1}} {
		for j, rule := range [][]string{
			{"-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"},
			{"-j", "REJECT"}, // icmp-port-unreachable
		} {
			args := []string{"netns", "exec", r.router, n.IPTables, "-D", "FORWARD"}
			if block {
				// At the head of FORWARD, the TCP rule first.
				args = []string{"netns", "exec", r.router, n.IPTables, "-I", "FORWARD", fmt.Sprint(j + 1)}
			}
			args = append(append(args, "-i", n.lanDevs[i], "-d", r.other), rule...)
			if out, err := exec.Command(n.ip, args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
	}
	n.blocked = block
}

// findIPTables returns an iptables that can add a NAT rule inside a
// network namespace: iptables (nft or legacy backend), else
// iptables-legacy. It skips the test if there is none.
func findIPTables(t testing.TB) string {
	t.Helper()
	var found []string
	for _, name := range []string{"iptables", "iptables-legacy"} {
		if p, err := exec.LookPath(name); err == nil {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		t.Skip("needs iptables to build NAT routers")
	}
	ns := "p2pkex-" + fmt.Sprint(os.Getpid()) + "-iptcheck"
	ip := IP(t)
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	defer exec.Command(ip, "netns", "delete", ns).Run()
	var errs []string
	for _, p := range found {
		out, err := exec.Command(ip, "netns", "exec", ns, p, "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE").CombinedOutput()
		if err == nil {
			return p
		}
		errs = append(errs, fmt.Sprintf("%s: %v: %s", p, err, strings.TrimSpace(string(out))))
	}
	t.Skipf("no iptables can add a NAT rule in a namespace (%s)", strings.Join(errs, "; "))
	return ""
}
