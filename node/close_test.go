package node

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"
)

// TestCloseWhileIdentifyCompletes: a node closes while identify keeps
// completing with its peers (as it does while they push identify, for
// instance when they close too and remove their stream handlers). Close
// must return.
//
// It did not in tools/swarm (a bootstrap node, connected to all 200 nodes,
// closing while the others closed): go-libp2p's host stops its
// observed-address manager first (a stop hook of its fx app) and closes its
// network after; the manager's event handler returns without closing its
// subscription to EvtPeerIdentificationCompleted, so once sixteen more
// identify completions arrived over the still open network, the next Emit
// blocked for good holding the event's lock, and AutoNAT's Close, later in
// the host's Close, waited for that lock forever (goroutine dump in
// docs/performance/swarm.md). The node now closes the host's network
// first, so that nothing arrives while the host's services stop.
//
// The test stands in for the peers' pushes: goroutines emit the event until
// the network closes its first listener (a push needs an open network).
func TestCloseWhileIdentifyCompletes(t *testing.T) {
	n, err := New(context.Background(), WithListenAddrs("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"))
	require.NoError(t, err)
	em, err := n.Host().EventBus().Emitter(new(event.EvtPeerIdentificationCompleted))
	require.NoError(t, err)
	// A peer that serves nothing, and its connection.
	other, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	require.NoError(t, other.Connect(context.Background(), peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()}))
	conns := n.Host().Network().ConnsToPeer(other.ID())
	require.NotEmpty(t, conns)
	// Open until the network closes its first listener; and, as a closed
	// network delivers nothing more, the network's Close returns only once
	// the stand-ins are out of Emit (the swarm notifies ListenClose before
	// its Close returns). Without that wait an emitter that checked open
	// just before it turned false could emit after the host had stopped its
	// services: something no closed network does, and which hung the test
	// on a loaded machine.
	var open atomic.Bool
	open.Store(true)
	var wg sync.WaitGroup
	n.Host().Network().Notify(&network.NotifyBundle{ListenCloseF: func(network.Network, ma.Multiaddr) {
		open.Store(false)
		wg.Wait()
	}})
	for range 8 {
		wg.Go(func() {
			for open.Load() {
				// No observed address, and a peer without AutoNAT: the
				// observed-address manager and AutoNAT read the event
				// and ignore it.
				em.Emit(event.EvtPeerIdentificationCompleted{Peer: other.ID(), Conn: conns[0]})
			}
		})
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
		wg.Wait()
		require.NoError(t, em.Close())
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("Close did not return within 30 s while identify completed:\n%s", buf)
	}
}
