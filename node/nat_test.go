package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"
)

// TestExchangeOverRelay runs three nodes on loopback: a relay R, and A and
// B, which know only R. B reserves a slot on R (a static relay, reachability
// private); A dials B through R's /p2p-circuit address. The exchange and a
// message each way run over that relayed connection, which is limited, and
// no other connection between A and B is ever opened.
func TestExchangeOverRelay(t *testing.T) {
	r := newNode(t, WithRelayService())
	rInfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Host().Addrs()}
	b := newNode(t, WithStaticRelays([]peer.AddrInfo{rInfo}), WithReachability(network.ReachabilityPrivate))
	a := newNode(t)

	// Every connection A opens to B, with whether it was limited.
	var mu sync.Mutex
	var limited []bool
	a.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == b.ID() {
			mu.Lock()
			limited = append(limited, c.Stat().Limited)
			mu.Unlock()
		}
	}})

	// B reserves a slot on R. (Its host advertises no circuit address on
	// loopback: autorelay only advertises relays' public addresses.)
	require.Eventually(t, func() bool {
		return len(b.RelayReservations()) == 1
	}, 20*time.Second, 20*time.Millisecond, "B reserved no slot on the relay")
	require.Equal(t, r.ID(), b.RelayReservations()[0])

	circuit := ma.StringCast("/p2p/" + r.ID().String() + "/p2p-circuit")
	var viaR []ma.Multiaddr
	for _, addr := range r.Host().Addrs() {
		viaR = append(viaR, addr.Encapsulate(circuit))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: viaR}))
	require.Equal(t, Relayed, a.Connection(b.ID()))

	first := exchange(t, a, b)
	require.EqualValues(t, 1, first.Epoch)
	require.Equal(t, Relayed, a.Connection(b.ID()), "the exchange ran over a direct connection")
	require.Equal(t, Relayed, b.Connection(a.ID()))
	// No stream is kept on a limited connection (streams.go).
	require.Eventually(t, func() bool { return len(exchangeStreams(a.Host(), b.ID())) == 0 },
		10*time.Second, 5*time.Millisecond, "a kept its stream on the relayed connection")

	ina, stopA := a.Messages(0)
	defer stopA()
	inb, stopB := b.Messages(0)
	defer stopB()
	require.NoError(t, a.Send(ctx, b.ID(), []byte("hello bob, via R")))
	require.Equal(t, "hello bob, via R", string(receive(t, inb).Data))
	require.NoError(t, b.Send(ctx, a.ID(), []byte("hello alice, via R")))
	require.Equal(t, "hello alice, via R", string(receive(t, ina).Data))

	// A second exchange skips phase 2 over the same circuit.
	second := exchange(t, a, b)
	require.EqualValues(t, 2, second.Epoch)
	require.False(t, second.SentOwnKey || second.ReceivedPeerKey)

	require.Equal(t, Relayed, a.Connection(b.ID()))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []bool{true}, limited, "A must have opened exactly one, limited, connection to B")
}

func TestNATOptionsRejectBadInput(t *testing.T) {
	_, err := New(context.Background(), WithStaticRelays(nil))
	require.Error(t, err)
	_, err = New(context.Background(), WithReachability(network.ReachabilityUnknown))
	require.Error(t, err)
	res := DefaultRelayResources()
	res.MaxCircuits = 0
	_, err = New(context.Background(), WithRelayResources(res))
	require.Error(t, err)
}
