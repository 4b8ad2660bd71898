package node

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	lp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/p2pkex/p2pkex/protocol"
)

// countingHost counts the exchange streams its node opens.
type countingHost struct {
	host.Host
	opened atomic.Int32
}

func (h *countingHost) NewStream(ctx context.Context, p peer.ID, pids ...lp2pprotocol.ID) (network.Stream, error) {
	if slices.Contains(pids, protocol.ID) {
		h.opened.Add(1)
	}
	return h.Host.NewStream(ctx, p, pids...)
}

func newCountingNode(t *testing.T, opts ...Option) (*Node, *countingHost) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	ch := &countingHost{Host: h}
	n, err := New(context.Background(), append([]Option{WithHost(ch)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n, ch
}

// exchangeStreams returns h's open streams of the exchange to p.
func exchangeStreams(h host.Host, p peer.ID) []network.Stream {
	var out []network.Stream
	for _, c := range h.Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if s.Protocol() == protocol.ID {
				out = append(out, s)
			}
		}
	}
	return out
}

func TestStreamKeptBetweenExchanges(t *testing.T) {
	a, ah := newCountingNode(t)
	b := newNode(t)
	introduce(a, b)
	introduce(b, a)
	for epoch := uint64(1); epoch <= 3; epoch++ {
		require.Equal(t, epoch, exchange(t, a, b).Epoch)
	}
	require.EqualValues(t, 1, ah.opened.Load(), "streams opened for three exchanges")
	require.Len(t, exchangeStreams(a.Host(), b.ID()), 1)
	// The responder's stream is its own: b initiates on a stream of its own,
	// and a's next exchange still goes on the one a kept.
	require.Equal(t, uint64(4), exchange(t, b, a).Epoch)
	require.Equal(t, uint64(5), exchange(t, a, b).Epoch)
	require.EqualValues(t, 1, ah.opened.Load(), "streams opened by a")
	require.Len(t, exchangeStreams(b.Host(), a.ID()), 2, "b's own stream and a's")
}

// A responder may end a kept stream while it is idle, and the initiator's
// next START may already be on the way: the initiator then runs the
// exchange on a new stream, and its caller sees nothing of it.
func TestKeptStreamEndedByPeer(t *testing.T) {
	for _, how := range []string{"close", "reset"} {
		t.Run(how, func(t *testing.T) {
			a, ah := newCountingNode(t)
			b := newNode(t)
			introduce(a, b)
			exchange(t, a, b)
			kept := exchangeStreams(b.Host(), a.ID())
			require.Len(t, kept, 1)
			events, stop := a.Subscribe(0)
			if how == "close" {
				require.NoError(t, kept[0].Close())
			} else {
				require.NoError(t, kept[0].Reset())
			}
			require.Equal(t, uint64(2), exchange(t, a, b).Epoch)
			stop()
			require.EqualValues(t, 2, ah.opened.Load(), "streams opened")
			for e := range events {
				require.NotEqual(t, EventFailed, e.Kind, "%v", e.Err)
			}
		})
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	a, ah := newCountingNode(t, WithStreamIdleTimeout(50*time.Millisecond))
	b := newNode(t)
	introduce(a, b)
	exchange(t, a, b)
	// a closes its kept stream, and b, reading the end, closes its side.
	require.Eventually(t, func() bool {
		return len(exchangeStreams(a.Host(), b.ID())) == 0 && len(exchangeStreams(b.Host(), a.ID())) == 0
	}, 10*time.Second, 5*time.Millisecond)
	exchange(t, a, b)
	require.EqualValues(t, 2, ah.opened.Load(), "streams opened")

	c, ch := newCountingNode(t, WithStreamIdleTimeout(0))
	introduce(c, b)
	exchange(t, c, b)
	exchange(t, c, b)
	require.EqualValues(t, 2, ch.opened.Load(), "streams opened without keeping")
}

// A responder keeps at most as many idle streams as it runs exchanges
// (WithInboundLimits); a stream over that is closed after its exchange.
func TestIdleStreamsBounded(t *testing.T) {
	b := newNode(t, WithInboundLimits(1, 1))
	a1, _ := newCountingNode(t)
	a2, a2h := newCountingNode(t)
	introduce(a1, b)
	introduce(a2, b)
	exchange(t, a1, b)
	exchange(t, a2, b)
	require.Eventually(t, func() bool {
		return len(exchangeStreams(b.Host(), a1.ID())) == 1 && len(exchangeStreams(b.Host(), a2.ID())) == 0
	}, 10*time.Second, 5*time.Millisecond, "b keeps a1's stream only")
	exchange(t, a2, b)
	require.EqualValues(t, 2, a2h.opened.Load(), "a2 opened a new stream")
	exchange(t, a1, b)
}

// Closing a node ends the streams it keeps and the waits on its peers'.
func TestCloseEndsKeptStreams(t *testing.T) {
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { requireNoLeak(t, running, "goroutines left after the test") })
	a := newNode(t)
	b := newNode(t)
	introduce(a, b)
	introduce(b, a)
	exchange(t, a, b)
	exchange(t, b, a)
	require.Len(t, exchangeStreams(a.Host(), b.ID()), 2)
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	require.Eventually(t, func() bool { return len(exchangeStreams(a.Host(), b.ID())) == 0 },
		10*time.Second, 5*time.Millisecond)
}

// slowCloseHost delays the Close of every exchange stream its node serves,
// as a loaded responder does: the initiator's graceful close of a stream
// (closeGracefully) waits that long for the responder's end of stream.
type slowCloseHost struct {
	host.Host
	delay time.Duration
}

type slowCloseStream struct {
	network.Stream
	delay time.Duration
}

func (s slowCloseStream) Close() error {
	time.Sleep(s.delay)
	return s.Stream.Close()
}

func (h *slowCloseHost) SetStreamHandler(pid lp2pprotocol.ID, handler network.StreamHandler) {
	if pid != protocol.ID {
		h.Host.SetStreamHandler(pid, handler)
		return
	}
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(slowCloseStream{s, h.delay}) })
}

// Back-to-back exchanges on new streams with a responder slow to close
// them: each waits for the stream before it to end rather than opening a
// third while two still close, which the node's own per-peer outbound
// limit of the service refuses ("cannot reserve outbound stream"; found by
// p2pkex bench --new-streams on a loaded machine).
func TestNewStreamsWaitForClosing(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	b, err := New(context.Background(), WithHost(&slowCloseHost{Host: h, delay: 500 * time.Millisecond}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	a := newNode(t, WithStreamIdleTimeout(0))
	introduce(a, b)
	for range 4 {
		exchange(t, a, b)
		require.LessOrEqual(t, len(exchangeStreams(a.Host(), b.ID())), 1, "streams of a to b right after an exchange")
	}
}
