package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/internal/netnstest"
)

// TestMDNSAcrossNetns runs two nodes with mDNS, each in a network namespace
// of its own that the test creates (netnstest.Pair: a veth pair with
// 10.77.0.1/24 and 10.77.0.2/24, which exist only inside the namespaces).
// Each node must discover the other by mDNS; the first then exchanges keys
// with the peer it found, by peer ID alone. mDNS never runs outside these
// namespaces, which the test always removes. Skips without root and ip.
//
// mDNS starts with the node, so a peer is often found before the
// application subscribes to events, and is then only listed by
// DiscoveredPeers. The first subtest subscribes at once, as applications
// do, and gets either case by chance; in the second the exchanging node
// subscribes only after it found its peer, so that the listed case is
// always tried.
//
// The nodes run in children: this test binary, re-executed with "ip netns
// exec" to run TestMDNSChild. cmd/p2pkex's TestDaemonMDNSAcrossNetns does
// the same with two daemons.
func TestMDNSAcrossNetns(t *testing.T) {
	t.Run("subscribed at start", func(t *testing.T) { testMDNSAcrossNetns(t, false) })
	t.Run("subscribed after discovery", func(t *testing.T) { testMDNSAcrossNetns(t, true) })
}

func testMDNSAcrossNetns(t *testing.T, subscribeLate bool) {
	nsA, nsB := netnstest.Pair(t)
	self, err := os.Executable()
	require.NoError(t, err)
	start := func(ns, addr string, exchange, subscribeLate bool) *netnstest.Proc {
		cmd := netnstest.Command(t, ns, self, "-test.run=^TestMDNSChild$", "-test.v")
		cmd.Env = append(os.Environ(),
			"P2PKEX_MDNS_CHILD=1",
			"P2PKEX_MDNS_LISTEN=/ip4/"+addr+"/tcp/0",
			fmt.Sprintf("P2PKEX_MDNS_EXCHANGE=%t", exchange),
			fmt.Sprintf("P2PKEX_MDNS_SUBSCRIBE_LATE=%t", subscribeLate))
		return netnstest.Start(t, ns, cmd)
	}
	a := start(nsA, netnstest.AddrA, true, subscribeLate)
	b := start(nsB, netnstest.AddrB, false, false)
	const wait = 40 * time.Second
	idA, idB := a.Await(t, wait, "ready ", ""), b.Await(t, wait, "ready ", "")

	require.Equal(t, idB, a.Await(t, wait, "discovered ", " via mdns"), "A found someone else")
	require.Equal(t, idA, b.Await(t, wait, "discovered ", " via mdns"), "B found someone else")

	// A exchanged with the peer it discovered; both hold the same key.
	keyA := a.Await(t, wait, "exchange with "+idB+": ", "")
	keyB := b.Await(t, wait, "exchange with "+idA+": ", "")
	require.Equal(t, keyA, keyB)
}

// TestMDNSChild is the node of one namespace in TestMDNSAcrossNetns; it
// does nothing unless started by it. It prints "ready <peer ID>", then
// "discovered <peer ID> via mdns" for each peer found (by an event or
// listed as found before its subscription began), and "exchange with
// <peer ID>: <key ID>" for each exchange; with P2PKEX_MDNS_EXCHANGE=true it
// starts one exchange with each peer found. With
// P2PKEX_MDNS_SUBSCRIBE_LATE=true it subscribes to the node's events only
// once DiscoveredPeers lists a peer. It stops when stdin closes or on
// SIGINT.
//
// So that a failure says why, it also prints, each line starting with
// "# " and the time since start: every event of the node (exchange steps,
// failures with their error), what each Exchange call returned, the peers
// found before the subscription began, and, when it stops, the state of
// every discovered peer (connectedness, connections, known addresses) and
// how many events its subscription lost.
func TestMDNSChild(t *testing.T) {
	if os.Getenv("P2PKEX_MDNS_CHILD") != "1" {
		t.Skip("runs only inside TestMDNSAcrossNetns")
	}
	begin := time.Now()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	note := func(format string, args ...any) {
		say("# %7.3fs "+format, append([]any{time.Since(begin).Seconds()}, args...)...)
	}

	n, err := New(context.Background(),
		WithListenAddrs(os.Getenv("P2PKEX_MDNS_LISTEN")),
		WithMDNS(DefaultMDNSService))
	require.NoError(t, err)
	defer n.Close()
	if os.Getenv("P2PKEX_MDNS_SUBSCRIBE_LATE") == "true" {
		note("subscribing only once a peer is found")
		deadline := time.Now().Add(40 * time.Second) // a hang guard
		for len(n.DiscoveredPeers()) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no peer found within 40 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	events, stop := n.Subscribe(0)
	defer stop()

	state := func(p peer.ID) {
		net := n.Host().Network()
		note("peer %s: %s, %d connection(s), addresses %v", p, net.Connectedness(p), len(net.ConnsToPeer(p)), n.Host().Peerstore().Addrs(p))
		for _, c := range net.ConnsToPeer(p) {
			note("  connection %s -> %s (%s, opened %s ago, %d stream(s))", c.LocalMultiaddr(), c.RemoteMultiaddr(),
				c.Stat().Direction, time.Since(c.Stat().Opened).Round(time.Millisecond), len(c.GetStreams()))
		}
	}
	defer func() {
		note("stopping; %d event(s) lost to a full subscription", n.DroppedEvents())
		for _, d := range n.DiscoveredPeers() {
			state(d.ID)
		}
	}()

	say("ready %s", n.ID())
	note("listening on %v", n.Addrs())

	exchange := os.Getenv("P2PKEX_MDNS_EXCHANGE") == "true"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// found prints a peer once per source and, in the exchanging child,
	// starts one exchange with it, whether the peer came as an event or
	// was listed as found before the subscription began. mDNS starts with
	// New, so the peer's answer often arrives before Subscribe: a child
	// that exchanged only on events then printed "discovered" but never
	// exchanged.
	reported := map[string]bool{}
	started := map[peer.ID]bool{}
	found := func(p peer.ID, src DiscoverySource) {
		if k := p.String() + " via " + src.String(); !reported[k] {
			reported[k] = true
			say("discovered %s", k)
		}
		if !exchange || started[p] {
			return
		}
		started[p] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
			defer ecancel()
			note("Exchange(%s) called", p)
			info, err := n.Exchange(ectx, p)
			if err != nil {
				note("Exchange(%s) returned error: %v", p, err)
				say("exchange with %s failed: %v", p, err)
				state(p)
				return
			}
			note("Exchange(%s) returned key %s, role %s, epoch %d", p, info.KeyID, info.Role, info.Epoch)
		}()
	}
	// Peers found before the subscription began: listed after it began,
	// so that none is missed (one may also come as an event).
	for _, d := range n.DiscoveredPeers() {
		note("%s was found before the subscription began, at %s", d.ID, d.First.Format(time.RFC3339Nano))
		for _, src := range d.Sources {
			found(d.ID, src)
		}
	}

	// The parent stops the child by closing stdin and, at once, SIGINT:
	// both end the loop, so that the state above is printed.
	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt)
	defer signal.Stop(interrupted)
	for {
		select {
		case <-stdinClosed:
			return
		case <-interrupted:
			return
		case <-time.After(2 * time.Minute):
			t.Fatal("not stopped by the parent")
		case e := <-events:
			switch e.Kind {
			case EventDiscovered:
				note("event discovered %s via %s, addresses %v", e.Peer, e.Source, e.Discovered.Addrs)
				found(e.Peer, e.Source)
			case EventStep:
				note("event step %s: %s %s %s %s", e.Peer, e.Step.Role, e.Step.Kind, e.Step.Phase, e.Step.Notice)
			case EventFailed:
				note("event failed %s: %v", e.Peer, e.Err)
				state(e.Peer)
			case EventDone:
				note("event done %s: key %s, role %s, epoch %d", e.Peer, e.Info.KeyID, e.Info.Role, e.Info.Epoch)
				say("exchange with %s: %s", e.Peer, e.Info.KeyID)
			default:
				note("event %s %s", e.Kind, e.Peer)
			}
		}
	}
}
