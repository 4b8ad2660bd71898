package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/internal/netnstest"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// TestNATTraversal runs nodes on a routed network with real NATs that the
// test builds from network namespaces (netnstest.NAT): a relay and a public
// node on a "public" segment 10.80.0.0/24, node A in LAN 1 behind router 1
// and node B in LAN 2 behind router 2, both routers masquerading
// (iptables) and dropping unsolicited packets from outside, as home
// routers do. Every node runs in a child: this test binary re-executed
// with "ip netns exec" to run TestNATChild, driven by lines on its stdin.
// Skips without root, ip and iptables. The scenarios run in this order:
//
//   - A: A and B, each behind its NAT, reserve slots on the relay; A
//     exchanges keys with B through B's relay address, and they send each
//     other messages. The routers refuse packets between the two LANs'
//     public addresses meanwhile (netnstest.NATNet.BlockDirect), so that
//     hole punching cannot move A and B off the relay.
//   - C: the relay is killed (SIGKILL) in the middle of an exchange
//     between A and B: A's exchange stream holds its writes after phase 1
//     (natGateHost: the NATed children build the host New would build from
//     their options and wrap it), the relay is killed once B reports that
//     it left phase 1, and A's stream is let go. Both sides must report
//     an error within their phase deadline, neither may install a key
//     (each side's key for the other stays the one before), and once the
//     relay runs again (same identity, same address) and A and B hold
//     slots on it again, a retry succeeds. This runs twice: first A and
//     B reach the relay over TCP, where the relay's kernel resets their
//     connections and the error must not be a timeout; then, after the
//     restart, over QUIC, where nothing tells them the relay is gone and
//     the phase deadline ends the exchange.
//   - B: the routers stop refusing; A connects to B through the relay
//     again, hole punching (DCUtR) must open a direct connection between
//     them through both NATs, and a second exchange must run over it. How
//     long punching took after the relayed connection opened is logged.
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
	// The relay's identity, so that a restarted relay is the same peer.
	relayKey, _, err := crypto.GenerateEd25519Key(nil)
	require.NoError(t, err)
	relayKeyBytes, err := crypto.MarshalPrivateKey(relayKey)
	require.NoError(t, err)
	start := func(ns, name, role, ip, relay string) *netnstest.Proc {
		cmd := netnstest.Command(t, ns, self, "-test.run=^TestNATChild$", "-test.v")
		cmd.Env = append(os.Environ(),
			"P2PKEX_NAT_CHILD=1",
			"P2PKEX_NAT_ROLE="+role,
			"P2PKEX_NAT_LISTEN=/ip4/"+ip+"/tcp/4001,/ip4/"+ip+"/udp/4001/quic-v1",
			"P2PKEX_NAT_RELAY="+relay)
		if role == "relay" {
			cmd.Env = append(cmd.Env, "P2PKEX_NAT_KEY="+hex.EncodeToString(relayKeyBytes))
		}
		return netnstest.Start(t, name, cmd)
	}
	const wait = 20 * time.Second
	nw.BlockDirect(t, true)
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
	send := func(p *netnstest.Proc, format string, args ...any) string {
		t.Helper()
		cmdNo++
		p.Send(t, "%d "+format, append([]any{cmdNo}, args...)...)
		return fmt.Sprintf("%d ", cmdNo)
	}
	do := func(p *netnstest.Proc, format string, args ...any) string {
		t.Helper()
		tag := send(p, format, args...)
		reply := p.Await(t, 40*time.Second, tag, "")
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
	first := do(a, "exchange %s %s", idB, viaRelay(idB))
	t.Logf("scenario A: %s", first)
	require.Contains(t, first, "conn=relayed")
	keyAB := sameKey(a, idA, b, idB)
	t.Logf("scenario A: key %s on both sides", keyAB)
	do(a, "send %s hello-B-from-A", idB)
	b.Await(t, wait, "msg "+idA+" hello-B-from-A", "")
	do(b, "send %s hello-A-from-B", idA)
	a.Await(t, wait, "msg "+idB+" hello-A-from-B", "")

	// C: the relay dies in the middle of an exchange; twice, since A and B
	// first reach the relay over TCP (the static relay's address) and, once
	// identify taught them its QUIC address, over QUIC.
	for _, over := range []string{"tcp", "quic-v1"} {
		name := "scenario C (relay reached over " + over + ")"
		require.Equal(t, over, do(a, "relayconn %s", idR), "%s: A's connection to the relay", name)
		require.Equal(t, over, do(b, "relayconn %s", idR), "%s: B's connection to the relay", name)
		keyAB = sameKey(a, idA, b, idB)
		markA, markB := a.Mark(), b.Mark()
		do(a, "hold 2") // START and NEXT go out; A's PART waits
		tag := send(a, "exchange %s %s", idB, viaRelay(idB))
		t.Logf("%s: A holds its exchange stream %s", name, a.AwaitFrom(t, markA, wait, "held ", ""))
		b.AwaitFrom(t, markB, wait, "step "+idA+" phase-left phase 1", "")
		killed := time.Now()
		relay.Kill()
		do(a, "release") // A goes on as if its PART had been in flight
		// Each side must give up on its own within its phase deadline: the
		// phase began before the kill.
		errB := b.AwaitFrom(t, markB, protocol.DefaultPhaseTimeout+2*time.Second, "failed "+idA+" ", "")
		tookB := time.Since(killed)
		replyA := a.AwaitFrom(t, markA, protocol.DefaultPhaseTimeout+2*time.Second, tag, "")
		tookA := time.Since(killed)
		t.Logf("%s: relay killed after B left phase 1; A's error %v later: %s", name, tookA.Round(time.Millisecond), replyA)
		t.Logf("%s: B's error %v later: %s", name, tookB.Round(time.Millisecond), errB)
		require.True(t, strings.HasPrefix(replyA, "err "), "A's exchange did not fail: %s", replyA)
		if over == "tcp" {
			// The relay's kernel resets both TCP connections at once.
			for _, e := range []string{replyA, errB} {
				require.NotContains(t, e, protocol.ErrTimeout.Error(), "a timeout, not the reset of the relay's connection")
			}
		}
		require.Equal(t, keyAB, do(a, "key %s", idB), "A installed a key")
		require.Equal(t, keyAB, do(b, "key %s", idA), "B installed a key")
		t.Logf("%s: no key installed: both still hold %s", name, keyAB)

		markA, markB = a.Mark(), b.Mark()
		relay = start(nw.Relay, "relay (restarted)", "relay", netnstest.NATRelay, "")
		require.Equal(t, idR, relay.Await(t, wait, "ready ", ""), "the restarted relay has another identity")
		restarted := time.Now()
		// autorelay reserves again when it next looks at its static relays
		// (StaticRelayPollInterval) after the old connection closed: over
		// TCP that was at the kill; over QUIC it is when a packet of the
		// old connection reaches the restarted relay, which answers with a
		// stateless reset (same identity, same reset key), or at the
		// latest when the connection idles out, 30 s after the kill.
		require.Equal(t, idR, a.AwaitFrom(t, markA, 40*time.Second, "reserved ", ""))
		require.Equal(t, idR, b.AwaitFrom(t, markB, 40*time.Second, "reserved ", ""))
		t.Logf("%s: relay restarted; A and B hold slots on it again after %v", name, time.Since(restarted).Round(time.Millisecond))
		retry := do(a, "exchange %s %s", idB, viaRelay(idB))
		t.Logf("%s: retry: %s", name, retry)
		require.Contains(t, retry, "conn=relayed")
		require.NotEqual(t, keyAB, sameKey(a, idA, b, idB))
	}

	// B: hole punching, then an exchange over the direct connection.
	nw.BlockDirect(t, false)
	do(a, "disconnect %s", idB)
	do(a, "connect %s %s", idB, viaRelay(idB))
	punch := do(a, "waitdirect %s 15", idB)
	t.Logf("scenario B: hole punching A<->B through two masquerading NATs: %s", punch)
	require.True(t, strings.HasPrefix(punch, "direct"), "hole punching did not connect A and B directly: %s", punch)
	second := do(a, "exchange %s", idB)
	t.Logf("scenario B: exchange over the punched connection: %s", second)
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

// natGateHost wraps a NATed child's host so that TestNATTraversal can hold
// an exchange in the middle: once armed (arm), the next exchange stream the
// node opens writes its first k notices and then holds the rest until the
// connection under it closes or the test lets it go (let), at most
// natHoldMax. Unarmed, it changes nothing.
type natGateHost struct {
	host.Host
	onHold  func(string)
	mu      sync.Mutex
	k       int           // notices to let out; -1: not armed
	release chan struct{} // closed by let: the armed stream goes on
}

// natHoldMax bounds a hold, so that a relay that is never stopped cannot
// hang the child.
const natHoldMax = 20 * time.Second

func (h *natGateHost) arm(k int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.k, h.release = k, make(chan struct{})
}

// let lets the held (or next armed) stream go on.
func (h *natGateHost) let() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.release != nil {
		close(h.release)
		h.release = nil
	}
}

func (h *natGateHost) NewStream(ctx context.Context, p peer.ID, pids ...libp2pprotocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil || len(pids) != 1 || pids[0] != protocol.ID {
		return s, err
	}
	h.mu.Lock()
	k, release := h.k, h.release
	h.k = -1
	h.mu.Unlock()
	if k < 0 {
		return s, nil
	}
	return &natGateStream{Stream: s, k: k, onHold: h.onHold, release: release}, nil
}

// natGateStream is an exchange stream that holds its writes after k
// notices (see natGateHost).
type natGateStream struct {
	network.Stream
	k       int
	onHold  func(string)
	release <-chan struct{}

	mu   sync.Mutex
	sent frameSplitter // faulthost_test.go
	done bool          // held once and let go
}

func (g *natGateStream) Write(b []byte) (int, error) {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return g.Stream.Write(b)
	}
	before := len(g.sent.types)
	ends := g.sent.feed(b)
	types := slices.Clone(g.sent.types)
	g.mu.Unlock()
	cut := -1
	switch {
	case before >= g.k:
		cut = 0
	case before+len(ends) > g.k:
		cut = ends[g.k-before-1]
	}
	if cut < 0 {
		return g.Stream.Write(b)
	}
	n, err := g.Stream.Write(b[:cut])
	if err != nil {
		return n, err
	}
	g.hold(types[:g.k])
	m, err := g.Stream.Write(b[cut:])
	return n + m, err
}

// hold waits until the connection under the stream closes, the host lets
// it go, or natHoldMax passes.
func (g *natGateStream) hold(sent []pb.Notice_Type) {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	names := make([]string, len(sent))
	for i, t := range sent {
		names[i] = t.String()
	}
	g.onHold(fmt.Sprintf("after %d notices (%s)", len(sent), strings.Join(names, " ")))
	deadline := time.Now().Add(natHoldMax)
	for !g.Conn().IsClosed() && time.Now().Before(deadline) {
		select {
		case <-g.release:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestNATChild is one node of TestNATTraversal; it does nothing unless
// started by it. It prints "ready <peer ID>"; behind a NAT "reserved <relay
// ID>" each time it comes to hold a relay slot (natReserved) and
// "unreserved" each time it holds none any more; "holepunch ready" once go-libp2p's hole puncher
// runs; "msg <peer> <text>" for each message; "step <peer> <kind> <phase>"
// when an exchange enters or leaves a phase; "failed <peer> <error>" and
// "done <peer> ..." when one ends; and "held ..." when a held exchange
// stream stops writing. It answers each stdin line "N command args" with
// "N ok ..." or "N err ...", running commands concurrently. Commands:
// exchange PEER [ADDR], connect PEER ADDR, disconnect PEER, send PEER TEXT,
// key PEER, waitdirect PEER SECONDS, relayconn PEER (the transports of the
// direct connections to PEER), and on a NATed node hold K (the next
// exchange stream holds its writes after K notices) and release (it goes
// on). It stops when stdin closes.
func TestNATChild(t *testing.T) {
	if os.Getenv("P2PKEX_NAT_CHILD") != "1" {
		t.Skip("runs only inside TestNATTraversal")
	}
	natTreatPublic()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}

	opts := []Option{WithListenAddrs(strings.Split(os.Getenv("P2PKEX_NAT_LISTEN"), ",")...)}
	role := os.Getenv("P2PKEX_NAT_ROLE")
	var gate *natGateHost
	switch role {
	case "relay":
		opts = append(opts, WithRelayService())
		if k := os.Getenv("P2PKEX_NAT_KEY"); k != "" {
			b, err := hex.DecodeString(k)
			require.NoError(t, err)
			sk, err := crypto.UnmarshalPrivateKey(b)
			require.NoError(t, err)
			store := peerstore.NewMemory()
			defer store.Close()
			require.NoError(t, store.SetIdentity(sk))
			opts = append(opts, WithStore(store))
		}
	case "nat":
		ri, err := peer.AddrInfoFromString(os.Getenv("P2PKEX_NAT_RELAY"))
		require.NoError(t, err)
		opts = append(opts, WithStaticRelays([]peer.AddrInfo{*ri}), WithReachability(network.ReachabilityPrivate))
		// The host New would build from these options, wrapped in a
		// natGateHost.
		hopts, err := HostOptions(opts...)
		require.NoError(t, err)
		sk, _, err := crypto.GenerateEd25519Key(nil)
		require.NoError(t, err)
		h, err := libp2p.New(append([]libp2p.Option{libp2p.Identity(sk)}, hopts...)...)
		require.NoError(t, err)
		defer h.Close()
		gate = &natGateHost{Host: h, k: -1, onHold: func(s string) { say("held %s", s) }}
		// The gate holds a new stream: none kept between exchanges.
		opts = []Option{WithHost(gate), WithStreamIdleTimeout(0)}
	case "public":
		opts = append(opts, WithHolePunching(), WithReachability(network.ReachabilityPublic))
	}
	n, err := New(context.Background(), opts...)
	require.NoError(t, err)
	defer n.Close()

	// When the last relayed and the last direct connection to each peer
	// opened: the time hole punching took.
	var cmu sync.Mutex
	relayedAt, directAt := map[peer.ID]time.Time{}, map[peer.ID]time.Time{}
	n.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		cmu.Lock()
		defer cmu.Unlock()
		if c.Stat().Limited {
			relayedAt[c.RemotePeer()] = time.Now()
		} else {
			directAt[c.RemotePeer()] = time.Now()
		}
	}})
	events, stopEvents := n.Subscribe(0)
	defer stopEvents()
	go func() {
		for e := range events {
			switch e.Kind {
			case EventStep:
				if e.Step.Kind == protocol.EventPhaseEntered || e.Step.Kind == protocol.EventPhaseLeft {
					say("step %s %v %v", e.Peer, e.Step.Kind, e.Step.Phase)
				}
			case EventFailed:
				say("failed %s %s", e.Peer, strings.ReplaceAll(e.Err.Error(), "\n", " "))
			case EventDone:
				say("done %s epoch=%d key=%s", e.Peer, e.Info.Epoch, e.Info.KeyID)
			}
		}
	}()
	say("ready %s", n.ID())
	go func() {
		for !slices.Contains(n.Host().Mux().Protocols(), holepunch.Protocol) {
			time.Sleep(20 * time.Millisecond)
		}
		say("holepunch ready")
	}()
	if role == "nat" {
		go func() {
			var had bool
			for {
				r := natReserved(n)
				switch {
				case len(r) > 0 && !had:
					say("reserved %s", r[0])
				case len(r) == 0 && had:
					say("unreserved")
				}
				had = len(r) > 0
				time.Sleep(20 * time.Millisecond)
			}
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
	// Commands run concurrently, so that "release" reaches a held exchange.
	var cmds sync.WaitGroup
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		no, cmd := f[0], f[1]
		reply := func(err error, format string, args ...any) {
			if err != nil {
				say("%s err %s", no, strings.ReplaceAll(err.Error(), "\n", " "))
				return
			}
			say("%s ok "+format, append([]any{no}, args...)...)
		}
		switch {
		case cmd == "hold":
			var k int
			if len(f) < 3 || gate == nil {
				reply(fmt.Errorf("hold: needs a NATed node and a count"), "")
			} else if _, err := fmt.Sscan(f[2], &k); err != nil || k < 0 {
				reply(fmt.Errorf("hold %q: not a count", f[2]), "")
			} else {
				gate.arm(k)
				reply(nil, "armed")
			}
			continue
		case cmd == "release":
			if gate == nil {
				reply(fmt.Errorf("release: not a NATed node"), "")
			} else {
				gate.let()
				reply(nil, "released")
			}
			continue
		case len(f) < 3:
			reply(fmt.Errorf("%s: no peer", cmd), "")
			continue
		}
		p, err := peer.Decode(f[2])
		if err != nil {
			reply(err, "")
			continue
		}
		cmds.Add(1)
		go func() {
			defer cmds.Done()
			natCommand(ctx, n, p, cmd, f[3:], reply, &cmu, relayedAt, directAt)
		}()
	}
	cancel()
	cmds.Wait()
}

// natCommand runs one command of TestNATChild about peer p (see there),
// with the arguments after the peer, and answers it with reply. The
// connection notifier records, under cmu, when the last relayed and the
// last direct connection to each peer opened.
func natCommand(ctx context.Context, n *Node, p peer.ID, cmd string, args []string,
	reply func(err error, format string, args ...any), cmu *sync.Mutex, relayedAt, directAt map[peer.ID]time.Time) {
	connect := func(ctx context.Context, addr string) error {
		a, err := ma.NewMultiaddr(addr)
		if err != nil {
			return err
		}
		if err := n.Connect(ctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{a.Decapsulate(ma.StringCast("/p2p/" + p.String()))}}); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch cmd {
	case "exchange":
		if len(args) > 0 {
			if err := connect(ctx, args[0]); err != nil {
				reply(err, "")
				return
			}
		}
		begin := time.Now()
		info, err := n.Exchange(ctx, p)
		took := time.Since(begin).Round(time.Millisecond)
		if err != nil {
			reply(fmt.Errorf("after %v: %w", took, err), "")
			return
		}
		reply(nil, "epoch=%d key=%s conn=%s took=%v", info.Epoch, info.KeyID, n.Connection(p), took)
	case "connect":
		if len(args) < 1 {
			reply(errors.New("connect: no address"), "")
			return
		}
		err := connect(ctx, args[0])
		reply(err, "%s", n.Connection(p))
	case "disconnect":
		reply(n.Host().Network().ClosePeer(p), "disconnected")
	case "relayconn":
		// The transports of the direct connections to p (the relay).
		var ts []string
		for _, c := range n.Host().Network().ConnsToPeer(p) {
			if c.Stat().Limited {
				continue
			}
			switch {
			case natHas(c.RemoteMultiaddr(), ma.P_QUIC_V1):
				ts = append(ts, "quic-v1")
			case natHas(c.RemoteMultiaddr(), ma.P_TCP):
				ts = append(ts, "tcp")
			default:
				ts = append(ts, c.RemoteMultiaddr().String())
			}
		}
		slices.Sort(ts)
		reply(nil, "%s", strings.Join(slices.Compact(ts), ","))
	case "send":
		reply(n.Send(ctx, p, []byte(strings.Join(args, " "))), "sent")
	case "key":
		k, err := n.ActiveKey(p)
		if err != nil {
			reply(nil, "none")
			return
		}
		reply(nil, "epoch=%d key=%s", k.Epoch, k.ID)
	case "waitdirect":
		var secs int
		if len(args) > 0 {
			fmt.Sscan(args[0], &secs)
		}
		deadline := time.Now().Add(time.Duration(secs) * time.Second)
		for n.Connection(p) != Direct && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cmu.Lock()
		r, d := relayedAt[p], directAt[p]
		cmu.Unlock()
		var via string
		for _, c := range n.Host().Network().ConnsToPeer(p) {
			if !c.Stat().Limited {
				via = " via " + c.RemoteMultiaddr().String()
			}
		}
		switch {
		case n.Connection(p) == Direct && !r.IsZero() && d.After(r):
			reply(nil, "direct %v after the relayed connection%s", d.Sub(r).Round(time.Millisecond), via)
		case n.Connection(p) == Direct:
			reply(nil, "direct (no relayed connection before it)%s", via)
		default:
			reply(nil, "relayed only (not punched within %ds)", secs)
		}
	default:
		reply(fmt.Errorf("unknown command %q", cmd), "")
	}
}

// natReserved returns the relays that RelayReservations lists and whose
// circuit address the host advertises. RelayReservations alone may list a
// relay the node has only just connected to again, before autorelay has
// reserved a slot on it: it relies on autorelay's connection protection,
// which autorelay does not lift when the connection closes. autorelay
// advertises the circuit address once it holds the slot, and only for a
// relay with a public address, as the relay is to the children.
func natReserved(n *Node) []peer.ID {
	var out []peer.ID
	for _, r := range n.RelayReservations() {
		circuit := "/p2p/" + r.String() + "/p2p-circuit"
		if slices.ContainsFunc(n.Host().Addrs(), func(a ma.Multiaddr) bool {
			return strings.HasSuffix(a.String(), circuit)
		}) {
			out = append(out, r)
		}
	}
	return out
}

func natHas(a ma.Multiaddr, code int) bool {
	_, err := a.ValueForProtocol(code)
	return err == nil
}
