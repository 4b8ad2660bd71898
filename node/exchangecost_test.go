package node

import (
	"sync/atomic"
	"testing"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/peer"
	bconnmgr "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
)

// What an exchange does beyond its cryptography, held where a cut could
// come back unnoticed (docs/performance/cpu.md).

// tagCountingConnMgr counts the node's known-peer tags (knownconns.go).
type tagCountingConnMgr struct {
	connmgr.ConnManager
	known atomic.Int64
}

func (c *tagCountingConnMgr) TagPeer(p peer.ID, tag string, v int) {
	if tag == knownPeerTag {
		c.known.Add(1)
	}
	c.ConnManager.TagPeer(p, tag, v)
}

// TestMarkKnownOncePerStream: the connection of an exchange is marked as a
// known peer's once per stream, after the stream's first exchange, not
// after every exchange on the kept stream: the later ones run on the same
// connection, already marked (each mark was a connection-manager tag and,
// with the node's own resource manager, an address lookup).
func TestMarkKnownOncePerStream(t *testing.T) {
	cm := func() *tagCountingConnMgr {
		m, err := bconnmgr.NewConnManager(100, 200)
		require.NoError(t, err)
		return &tagCountingConnMgr{ConnManager: m}
	}
	ca, cb := cm(), cm()
	a := newNode(t, WithLibp2pOptions(libp2p.ConnectionManager(ca)))
	b := newNode(t, WithLibp2pOptions(libp2p.ConnectionManager(cb)))
	introduce(a, b)
	var last *KeyInfo
	for range 4 {
		last = exchange(t, a, b) // one stream, kept (streams.go)
	}
	require.EqualValues(t, 4, last.Epoch)
	require.EqualValues(t, 1, ca.known.Load(), "initiator: known-peer tags for one stream")
	require.EqualValues(t, 1, cb.known.Load(), "responder: known-peer tags for one stream")
	require.NotNil(t, a.Host().ConnManager().GetTagInfo(b.ID()))
	require.Equal(t, knownPeerTagValue, a.Host().ConnManager().GetTagInfo(b.ID()).Tags[knownPeerTag])
	require.Equal(t, knownPeerTagValue, b.Host().ConnManager().GetTagInfo(a.ID()).Tags[knownPeerTag])
}

// TestTrustEventNotFormattedWhenQuiet: a trust event (every first contact
// has one, on both sides) is logged at WARN; with WARN off (go-log's
// default level is ERROR) its message is not built, and with no
// subscriber nothing of it is allocated.
func TestTrustEventNotFormattedWhenQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := newNode(t)
	p := newNode(t).ID()
	tc := &TrustChange{Peer: p, Change: KeyFirstContact, Received: protocol.Fingerprint{0x12, 0x20, 1},
		Suite: protocol.SuiteMLKEM768X25519}
	level := logging.LevelError
	if log.LevelEnabled(logging.LevelWarn) {
		level = logging.LevelWarn
	}
	require.NoError(t, logging.SetLogLevel("p2pkex/node", "error"))
	t.Cleanup(func() { _ = logging.SetLogLevel("p2pkex/node", level.String()) })
	allocs := testing.AllocsPerRun(100, func() { n.reportTrust(nil, tc) })
	require.Zero(t, allocs, "allocations of a trust event nobody logs or subscribes to")
}

// TestExchangeAllocsLoopback bounds the allocations of an exchange through
// the node on a loopback libp2p connection, both sides, records known, on
// the kept stream: what BenchmarkExchangeLoopback/.../KeysKnown reports as
// allocs/op. Most are the standard library's (crypto/hpke's key schedule,
// HKDF and HMAC) and libp2p's (yamux deadlines and frames); the node's and
// the driver's own were cut from 617 to 594 (docs/performance/cpu.md). The
// bound is that count plus a margin for libp2p's background work (the
// responder finishes after Exchange returns, and pools refill); a change
// that adds allocations to every exchange fails here.
func TestExchangeAllocsLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 200 exchanges")
	}
	if underRace {
		t.Skip("the race detector changes allocation counts")
	}
	a, b := newNode(t), newNode(t)
	introduce(a, b)
	exchange(t, a, b) // first contact: both records stored, the stream kept
	ctx := ctxT(t)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.Exchange(ctx, b.ID()); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per exchange, both sides", allocs)
	require.LessOrEqual(t, allocs, float64(exchangeLoopbackAllocsBound))
}

const exchangeLoopbackAllocsBound = 608
