package node

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/internal/netnstest"
)

// TestNATTraversal runs nodes on a routed network with real NATs that the
// test builds from network namespaces (netnstest.NAT): a relay and a public
// node on a "public" segment 10.80.0.0/24, node A in LAN 1 behind router 1
// and node B in LAN 2 behind router 2, both routers masquerading
// (iptables). Every node runs in a child: this test binary re-executed
// with "ip netns exec" to run TestNATChild, driven by lines on its stdin.
// Skips without root, ip and iptables.
//
//   - A: A and B, each behind its NAT, reserve slots on the relay; A
//     exchanges keys with B through B's relay address, and they send each
//     other messages.
//   - B: hole punching (DCUtR) opens a direct connection between them
//     through both NATs, and a second exchange runs over it. How long it
//     took after the relayed connection opened is logged.
//   - D: the public node exchanges with A (A dials it directly) and with B
//     (through the relay; B may then connect back directly).
//
// go-libp2p punches holes only from addresses it considers public, and
// 10.80.0.0/24 is private to it; the children therefore treat 10.80.0.0/16
// as public (natTreatPublic). The addresses still exist only inside the
// namespaces.
func TestNATTraversal(t *testing.T) {
	nw := netnstest.NAT(t)
	self, err := os.Executable()
	require.NoError(t, err)
	start := func(ns, name, role, ip, relay string) *netnstest.Proc {
		cmd := netnstest.Command(t, ns, self, "-test.run=^TestNATChild$", "-test.v")
		cmd.Env = append(os.Environ(),
			"P2PKEX_NAT_CHILD=1",
			"P2PKEX_NAT_ROLE="+role,
			"P2PKEX_NAT_LISTEN=/ip4/"+ip+"/tcp/4001,/ip4/"+ip+"/udp/4001/quic-v1",
			"P2PKEX_NAT_RELAY="+relay)
		return netnstest.Start(t, name, cmd)
	}
	const wait = 20 * time.Second
	relay := start(nw.Relay, "relay", "relay", netnstest.NATRelay, "")
	idR := relay.Await(t, wait, "ready ", "")
	relayAddr := "/ip4/" + netnstest.NATRelay + "/tcp/4001/p2p/" + idR

	a := start(nw.A, "A", "nat", netnstest.NATNodeA, relayAddr)
	b := start(nw.B, "B", "nat", netnstest.NATNodeB, relayAddr)
	pub := start(nw.Public, "P", "public", netnstest.NATPublic, "")
	idA, idB, idP := a.Await(t, wait, "ready ", ""), b.Await(t, wait, "ready ", ""), pub.Await(t, wait, "ready ", "")
	require.Equal(t, idR, a.Await(t, wait, "reserved ", ""))
	require.Equal(t, idR, b.Await(t, wait, "reserved ", ""))
	// go-libp2p's hole puncher starts watching for relayed connections only
	// once the host has a public address (learnt from the relay through
	// identify, polled from 250 ms on); a relayed connection that opens
	// before then is never punched.
	a.Await(t, wait, "holepunch ready", "")
	b.Await(t, wait, "holepunch ready", "")
	viaRelay := func(id string) string { return relayAddr + "/p2p-circuit/p2p/" + id }

	cmdNo := 0
	do := func(p *netnstest.Proc, format string, args ...any) string {
		t.Helper()
		cmdNo++
		p.Send(t, "%d "+format, append([]any{cmdNo}, args...)...)
		reply := p.Await(t, 40*time.Second, fmt.Sprintf("%d ", cmdNo), "")
		require.True(t, strings.HasPrefix(reply, "ok"), "command %q: %s", fmt.Sprintf(format, args...), reply)
		return strings.TrimPrefix(reply, "ok ")
	}
	sameKey := func(x *netnstest.Proc, idX string, y *netnstest.Proc, idY string) string {
		t.Helper()
		var kx, ky string
		require.Eventually(t, func() bool {
			kx, ky = do(x, "key %s", idY), do(y, "key %s", idX)
			return kx == ky && kx != "none"
		}, 10*time.Second, 100*time.Millisecond, "keys differ: %s vs %s", kx, ky)
		return kx
	}

	// A: through the relay.
	t.Logf("scenario A: %s", do(a, "exchange %s %s", idB, viaRelay(idB)))
	t.Logf("scenario A: key %s on both sides", sameKey(a, idA, b, idB))
	do(a, "send %s hello-B-from-A", idB)
	b.Await(t, wait, "msg "+idA+" hello-B-from-A", "")
	do(b, "send %s hello-A-from-B", idA)
	a.Await(t, wait, "msg "+idB+" hello-A-from-B", "")

	// B: hole punching, then an exchange over the direct connection.
	punch := do(a, "waitdirect %s 15", idB)
	t.Logf("scenario B: hole punching A<->B through two masquerading NATs: %s", punch)
	require.True(t, strings.HasPrefix(punch, "direct"), "hole punching did not connect A and B directly: %s", punch)
	second := do(a, "exchange %s", idB)
	t.Logf("scenario B: second exchange: %s", second)
	require.Contains(t, second, "conn=direct")
	sameKey(a, idA, b, idB)

	// D: one node public, one behind NAT.
	pubAddr := "/ip4/" + netnstest.NATPublic + "/tcp/4001/p2p/" + idP
	d1 := do(a, "exchange %s %s", idP, pubAddr)
	t.Logf("scenario D: A (NAT) -> P (public), direct dial: %s", d1)
	require.Contains(t, d1, "conn=direct")
	sameKey(a, idA, pub, idP)
	t.Logf("scenario D: P (public) -> B (NAT) via relay: %s", do(pub, "exchange %s %s", idB, viaRelay(idB)))
	sameKey(pub, idP, b, idB)
	t.Logf("scenario D: P<->B after the relayed exchange: %s", do(pub, "waitdirect %s 10", idB))
}

// natTreatPublic makes go-libp2p, in this process, treat 10.80.0.0/16 as
// public, so that it punches holes from the routers' addresses on the test's
// "public" segment: 10.0.0.0/8 in manet.Private4 is replaced by the parts of
// it outside 10.80.0.0/16.
func natTreatPublic() {
	var private []*net.IPNet
	for _, n := range manet.Private4 {
		if n.String() != "10.0.0.0/8" {
			private = append(private, n)
		}
	}
	for _, s := range []string{"10.0.0.0/10", "10.64.0.0/12", "10.81.0.0/16", "10.82.0.0/15",
		"10.84.0.0/14", "10.88.0.0/13", "10.96.0.0/11", "10.128.0.0/9"} {
		_, n, _ := net.ParseCIDR(s)
		private = append(private, n)
	}
	manet.Private4 = private
}

// TestNATChild is one node of TestNATTraversal; it does nothing unless
// started by it. It prints "ready <peer ID>" (and, behind a NAT, "reserved
// <relay ID>" once it holds a slot), "msg <peer> <text>" for each message,
// and answers each stdin line "N command args" with "N ok ..." or "N err
// ...". Commands: exchange PEER [ADDR], send PEER TEXT, key PEER,
// waitdirect PEER SECONDS. It stops when stdin closes.
func TestNATChild(t *testing.T) {
	if os.Getenv("P2PKEX_NAT_CHILD") != "1" {
		t.Skip("runs only inside TestNATTraversal")
	}
	natTreatPublic()
	opts := []Option{WithListenAddrs(strings.Split(os.Getenv("P2PKEX_NAT_LISTEN"), ",")...)}
	role := os.Getenv("P2PKEX_NAT_ROLE")
	switch role {
	case "relay":
		opts = append(opts, WithRelayService())
	case "nat":
		ri, err := peer.AddrInfoFromString(os.Getenv("P2PKEX_NAT_RELAY"))
		require.NoError(t, err)
		opts = append(opts, WithStaticRelays([]peer.AddrInfo{*ri}), WithReachability(network.ReachabilityPrivate))
	case "public":
		opts = append(opts, WithHolePunching(), WithReachability(network.ReachabilityPublic))
	}
	n, err := New(context.Background(), opts...)
	require.NoError(t, err)
	defer n.Close()

	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	// When the first relayed and the first direct connection to each peer
	// opened: the time hole punching took.
	var cmu sync.Mutex
	relayedAt, directAt := map[peer.ID]time.Time{}, map[peer.ID]time.Time{}
	n.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		cmu.Lock()
		defer cmu.Unlock()
		m := directAt
		if c.Stat().Limited {
			m = relayedAt
		}
		if _, ok := m[c.RemotePeer()]; !ok {
			m[c.RemotePeer()] = time.Now()
		}
	}})
	say("ready %s", n.ID())
	go func() {
		for !slices.Contains(n.Host().Mux().Protocols(), holepunch.Protocol) {
			time.Sleep(20 * time.Millisecond)
		}
		say("holepunch ready")
	}()
	if role == "nat" {
		go func() {
			for len(n.RelayReservations()) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
			say("reserved %s", n.RelayReservations()[0])
		}()
	}
	msgs, stopMsgs := n.Messages(0)
	defer stopMsgs()
	go func() {
		for m := range msgs {
			say("msg %s %s", m.From, m.Data)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		no, cmd := f[0], f[1]
		p, err := peer.Decode(f[2])
		if err != nil {
			say("%s err %v", no, err)
			continue
		}
		reply := func(err error, format string, args ...any) {
			if err != nil {
				say("%s err %v", no, err)
				return
			}
			say("%s ok "+format, append([]any{no}, args...)...)
		}
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		switch cmd {
		case "exchange":
			if len(f) > 3 {
				addr, err := ma.NewMultiaddr(f[3])
				if err != nil {
					reply(err, "")
					break
				}
				if err := n.Connect(cctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{addr.Decapsulate(ma.StringCast("/p2p/" + p.String()))}}); err != nil {
					reply(fmt.Errorf("connect: %w", err), "")
					break
				}
			}
			begin := time.Now()
			info, err := n.Exchange(cctx, p)
			if err != nil {
				reply(err, "")
				break
			}
			reply(nil, "epoch=%d key=%s conn=%s took=%v", info.Epoch, info.KeyID, n.Connection(p), time.Since(begin).Round(time.Millisecond))
		case "send":
			reply(n.Send(cctx, p, []byte(strings.Join(f[3:], " "))), "sent")
		case "key":
			k, err := n.ActiveKey(p)
			if err != nil {
				reply(nil, "none")
				break
			}
			reply(nil, "epoch=%d key=%s", k.Epoch, k.ID)
		case "waitdirect":
			var secs int
			fmt.Sscan(f[3], &secs)
			deadline := time.Now().Add(time.Duration(secs) * time.Second)
			for n.Connection(p) != Direct && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			cmu.Lock()
			r, d := relayedAt[p], directAt[p]
			cmu.Unlock()
			switch {
			case n.Connection(p) == Direct && !r.IsZero():
				reply(nil, "direct %v after the relayed connection", d.Sub(r).Round(time.Millisecond))
			case n.Connection(p) == Direct:
				reply(nil, "direct (no relayed connection)")
			default:
				reply(nil, "relayed only (not punched within %ds)", secs)
			}
		default:
			reply(fmt.Errorf("unknown command %q", cmd), "")
		}
		ccancel()
	}
}
