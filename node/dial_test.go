package node

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	lswarm "github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// TestReturningPeerDespiteDialBackoff: a peer leaves, a dial to it fails
// (libp2p then backs off from its address), and it comes back at the same
// address with the same store. An exchange, a message and a Connect the
// application asks for reach it at once, although libp2p's own dial is
// still refused by the backoff (checked first: the test can fail). Seen by
// tools/swarm under churn (cause dial_backoff).
func TestReturningPeerDespiteDialBackoff(t *testing.T) {
	a := newNode(t)
	store := ps.NewMemory()
	t.Cleanup(func() { store.Close() })
	b, err := New(context.Background(), WithStore(store), WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) }) // each b; Close is idempotent
	var listen []string
	for _, addr := range b.Host().Network().ListenAddresses() {
		listen = append(listen, addr.String())
	}
	bID := b.ID()
	introduce(a, b)
	exchange(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// b leaves; a dial to it fails; b comes back on the same port.
	leaveAndReturn := func(what string) {
		t.Helper()
		require.NoError(t, b.Close())
		require.Eventually(t, func() bool { return len(a.Host().Network().ConnsToPeer(bID)) == 0 },
			10*time.Second, 5*time.Millisecond, "%s: a sees b's connection close", what)
		_, err := a.Host().Network().DialPeer(ctx, bID)
		require.Error(t, err, "%s: b is away", what)
		b, err = New(context.Background(), WithStore(store), WithListenAddrs(listen...))
		require.NoError(t, err, "%s: b comes back on the same port", what)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		require.Equal(t, bID, b.ID())
		_, err = a.Host().Network().DialPeer(ctx, bID)
		require.ErrorIs(t, err, lswarm.ErrDialBackoff, "%s: libp2p itself still backs off from b's address", what)
	}

	leaveAndReturn("exchange")
	info, err := a.Exchange(ctx, bID)
	require.NoError(t, err, "the named exchange dials b despite the backoff")
	require.EqualValues(t, 2, info.Epoch)
	requireSameKey(t, a, b, 2)

	leaveAndReturn("send")
	_, stop := b.Messages(1)
	defer stop()
	require.NoError(t, a.Send(ctx, bID, []byte("back")), "a message to b despite the backoff")

	leaveAndReturn("connect")
	require.NoError(t, a.Connect(ctx, peer.AddrInfo{ID: bID}), "Connect to b despite the backoff")
}

// TestResetDuringNegotiationSaysWhat: a responder that gives up before
// protocol negotiation has finished at the initiator (its reset, carrying a
// status, overtakes the end of multistream-select) is reported as the
// peer's abort with that status, in one line, not as libp2p's bare
// "failed to negotiate protocol: stream reset (remote): code: 0x7e000c".
func TestResetDuringNegotiationSaysWhat(t *testing.T) {
	n := newNode(t)
	lp := connectedLimitPeer(t, n)
	// Both sides identified each other: n knows lp's protocols, and
	// negotiates at once when it opens a stream (not lazily).
	require.Eventually(t, func() bool {
		ps, err := n.Host().Peerstore().GetProtocols(lp.h.ID())
		return err == nil && len(ps) > 0
	}, 10*time.Second, 5*time.Millisecond)
	// lp answers every new stream with a reset carrying TIMEOUT, before
	// multistream-select answers anything.
	lp.h.Network().SetStreamHandler(func(s network.Stream) {
		_ = s.ResetWithError(protocol.ResetCode(protocol.ErrTimeout))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := n.Exchange(ctx, lp.h.ID())
	require.Error(t, err)
	var ae *protocol.AbortError
	require.ErrorAs(t, err, &ae, "%v", err)
	require.Equal(t, pb.Status_TIMEOUT, ae.Status)
	require.Contains(t, err.Error(), "during protocol negotiation")
	require.NotContains(t, err.Error(), "\n")
	t.Log(err)
}
