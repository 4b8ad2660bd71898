package node

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
)

// discoveredVia reports whether n has found p through src.
func discoveredVia(n *Node, p peer.ID, src DiscoverySource) bool {
	for _, d := range n.DiscoveredPeers() {
		if d.ID == p {
			for _, s := range d.Sources {
				if s == src {
					return true
				}
			}
		}
	}
	return false
}

// TestDHTRendezvous runs five nodes on loopback: one bootstrap node, three
// servers and one client that know only the bootstrap node. Every node finds
// every other at the rendezvous, and two nodes the test never introduced
// exchange keys by peer ID alone.
func TestDHTRendezvous(t *testing.T) {
	fast := WithDiscoveryInterval(500 * time.Millisecond)
	boot := newNode(t, WithDHT(nil, WithDHTMode(DHTModeServer), fast))
	bootInfo := []peer.AddrInfo{{ID: boot.ID(), Addrs: boot.Host().Addrs()}}

	events, stop := boot.Subscribe(0)
	defer stop()

	nodes := []*Node{boot}
	for _, mode := range []DHTMode{DHTModeServer, DHTModeServer, DHTModeServer, DHTModeClient} {
		nodes = append(nodes, newNode(t, WithDHT(bootInfo, WithDHTMode(mode), fast)))
	}

	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			require.Eventually(t, func() bool { return discoveredVia(a, b.ID(), SourceDHT) },
				25*time.Second, 50*time.Millisecond, "%s never found %s", a.ID(), b.ID())
		}
	}
	require.Len(t, boot.DiscoveredPeers(), len(nodes)-1)

	// The bootstrap node reported each peer once, as found at the DHT.
	seen := map[peer.ID]int{}
	for len(seen) < len(nodes)-1 {
		select {
		case e := <-events:
			if e.Kind != EventDiscovered {
				continue
			}
			require.Equal(t, SourceDHT, e.Source)
			require.Equal(t, e.Peer, e.Discovered.ID)
			require.NotEmpty(t, e.Discovered.Addrs)
			seen[e.Peer]++
		case <-time.After(10 * time.Second):
			t.Fatalf("events for %d of %d peers", len(seen), len(nodes)-1)
		}
	}
	for p, n := range seen {
		require.Equal(t, 1, n, "peer %s reported %d times", p, n)
	}

	// A server and the client were never introduced: the rendezvous gave
	// them each other's addresses.
	a, b := nodes[1], nodes[4]
	info := exchange(t, a, b)
	require.EqualValues(t, 1, info.Epoch)
	require.Contains(t, a.DHTPeers(), boot.ID())
}

// TestDHTWithoutBootstrapContactsNoOne: with an empty bootstrap list the
// node dials nobody; it still answers peers that connect to it.
func TestDHTWithoutBootstrapContactsNoOne(t *testing.T) {
	n := newNode(t, WithDHT(nil, WithDHTMode(DHTModeServer), WithDiscoveryInterval(100*time.Millisecond)))
	time.Sleep(time.Second) // several rendezvous rounds
	require.Empty(t, n.Host().Network().Peers())
	require.Empty(t, n.DHTPeers())
	require.Empty(t, n.DiscoveredPeers())
}

// TestRendezvousWaitsForUsableDHT: no rendezvous round runs while the
// DHT's routing table is empty (each would fail and cost a round: the first
// discovery then waited for a later one, seen by tools/swarm); once a peer
// joins, rounds run and the two find each other. Without the wait, the
// node alone runs rounds every 100 ms.
func TestRendezvousWaitsForUsableDHT(t *testing.T) {
	var mu sync.Mutex
	rounds := map[*Node][]int{}
	hook := func(n *Node, size int) {
		mu.Lock()
		defer mu.Unlock()
		rounds[n] = append(rounds[n], size)
	}
	testHookRendezvousRound.Store(&hook)
	t.Cleanup(func() { testHookRendezvousRound.Store(nil) })
	roundsOf := func(n *Node) []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(rounds[n])
	}

	fast := WithDiscoveryInterval(100 * time.Millisecond)
	first := newNode(t, WithDHT(nil, WithDHTMode(DHTModeServer), fast))
	time.Sleep(time.Second) // alone: the old schedule ran several rounds by now
	require.Empty(t, roundsOf(first), "rounds while the routing table was empty")

	second := newNode(t, WithDHT([]peer.AddrInfo{{ID: first.ID(), Addrs: first.Host().Addrs()}}, WithDHTMode(DHTModeServer), fast))
	for _, pair := range [][2]*Node{{first, second}, {second, first}} {
		require.Eventually(t, func() bool { return discoveredVia(pair[0], pair[1].ID(), SourceDHT) },
			25*time.Second, 20*time.Millisecond, "%s never found %s", pair[0].ID(), pair[1].ID())
	}
	for _, n := range []*Node{first, second} {
		sizes := roundsOf(n)
		require.NotEmpty(t, sizes)
		for _, size := range sizes {
			require.Positive(t, size, "a round with an empty routing table")
		}
	}
}

// TestDHTBootstrapsAgain: the node's bootstrap peer is away when it starts
// (its dial fails, and libp2p backs off from the address) and comes back at
// the same address. The node joins the DHT and finds it without waiting for
// kad-dht's own retry, 2 minutes later: the wait for a usable table asks
// the DHT to bootstrap again, with backoff.
func TestDHTBootstrapsAgain(t *testing.T) {
	fast := WithDiscoveryInterval(500 * time.Millisecond)
	store := ps.NewMemory()
	t.Cleanup(func() { store.Close() })
	boot, err := New(context.Background(), WithStore(store), WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	bootInfo := peer.AddrInfo{ID: boot.ID(), Addrs: boot.Host().Addrs()}
	var listen []string
	for _, a := range boot.Host().Network().ListenAddresses() {
		listen = append(listen, a.String())
	}
	require.NoError(t, boot.Close())

	n := newNode(t, WithDHT([]peer.AddrInfo{bootInfo}, WithDHTMode(DHTModeServer), fast))
	require.Eventually(t, func() bool {
		_, err := n.Host().Network().DialPeer(context.Background(), bootInfo.ID)
		return err != nil && strings.Contains(err.Error(), "dial backoff")
	}, 10*time.Second, 10*time.Millisecond, "the node's first bootstrap dial failed")

	boot = newNode(t, WithStore(store), WithListenAddrs(listen...), WithDHT(nil, WithDHTMode(DHTModeServer), fast))
	require.Equal(t, bootInfo.ID, boot.ID())
	require.Eventually(t, func() bool { return discoveredVia(n, boot.ID(), SourceDHT) },
		45*time.Second, 50*time.Millisecond, "the node never joined through its returning bootstrap peer")
}

func TestDiscoveryOffByDefault(t *testing.T) {
	n := newNode(t)
	require.Nil(t, n.disc)
	require.Nil(t, n.DiscoveredPeers())
	require.Nil(t, n.DHTPeers())
}

func TestDiscoveryOptions(t *testing.T) {
	for name, opt := range map[string]Option{
		"empty mDNS service":   WithMDNS(""),
		"mDNS service, spaces": WithMDNS("p2p kex"),
		"IPFS prefix":          WithDHT(nil, WithDHTPrefix("/ipfs")),
		"prefix without slash": WithDHT(nil, WithDHTPrefix("p2pkex")),
		"empty rendezvous":     WithDHT(nil, WithRendezvous("")),
		"zero interval":        WithDHT(nil, WithDiscoveryInterval(0)),
		"unknown mode":         WithDHT(nil, WithDHTMode(DHTMode(9))),
		"bootstrap without ID": WithDHT([]peer.AddrInfo{{}}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), WithListenAddrs("/ip4/127.0.0.1/tcp/0"), opt)
			require.Error(t, err)
		})
	}
}

// TestDiscoveredBeforeSubscribe: a peer found before a subscription began
// is listed by DiscoveredPeers and not reported to it; one found after is
// reported once per source. An application that subscribes and then lists
// misses no peer (mDNS, starting with the node, often finds one before
// the application subscribes: TestMDNSAcrossNetns).
func TestDiscoveredBeforeSubscribe(t *testing.T) {
	// Discovery on, contacting no one; peers are fed to it directly.
	n := newNode(t, WithDHT(nil, WithDHTMode(DHTModeServer)))
	early, late := newNode(t), newNode(t)
	info := func(m *Node) peer.AddrInfo { return peer.AddrInfo{ID: m.ID(), Addrs: m.Host().Addrs()} }

	n.disc.found(info(early), SourceMDNS)
	events, stop := n.Subscribe(0)
	defer stop()
	listed := map[peer.ID]bool{}
	for _, d := range n.DiscoveredPeers() {
		listed[d.ID] = true
	}
	require.Equal(t, map[peer.ID]bool{early.ID(): true}, listed)

	n.disc.found(info(early), SourceMDNS) // found again: no event
	n.disc.found(info(late), SourceMDNS)
	n.disc.found(info(late), SourceMDNS)
	n.disc.found(info(early), SourceDHT) // a new source: an event
	var got []string
	for len(got) < 2 {
		select {
		case e := <-events:
			require.Equal(t, EventDiscovered, e.Kind)
			got = append(got, e.Peer.String()+" "+e.Source.String())
		case <-time.After(10 * time.Second):
			t.Fatalf("events: %v", got)
		}
	}
	require.Equal(t, []string{late.ID().String() + " mdns", early.ID().String() + " dht"}, got)
	select {
	case e := <-events:
		t.Fatalf("unexpected event %s %s", e.Kind, e.Peer)
	default:
	}
	// The early peer's addresses are in the peerstore: Exchange dials it by
	// peer ID alone.
	require.EqualValues(t, 1, exchange(t, n, early).Epoch)
}
