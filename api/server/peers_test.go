package server_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// countingStore counts the calls that read every record or open a
// session key: a listing of the known peers must make none (at 100,000
// peers they copied 140 MB of records and ran an AES-GCM open per peer).
type countingStore struct {
	peerstore.Store
	slow atomic.Int64
}

func (s *countingStore) Peers() ([]peerstore.PeerKey, error) {
	s.slow.Add(1)
	return s.Store.Peers()
}

func (s *countingStore) Peer(p peer.ID) (*peerstore.PeerKey, error) {
	s.slow.Add(1)
	return s.Store.Peer(p)
}

func (s *countingStore) ActiveSession(p peer.ID) (*peerstore.SessionKey, error) {
	s.slow.Add(1)
	return s.Store.ActiveSession(p)
}

func (s *countingStore) Sessions(p peer.ID) ([]peerstore.SessionKey, error) {
	s.slow.Add(1)
	return s.Store.Sessions(p)
}

func randPeer(t testing.TB) peer.ID {
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := peer.IDFromPublicKey(pub)
	require.NoError(t, err)
	return id
}

// commitPeer stores epochs 1..epochs of p (with a record when record).
func commitPeer(t testing.TB, st peerstore.Store, p peer.ID, epochs int, record bool, trust peerstore.TrustState) {
	for e := 1; e <= epochs; e++ {
		c := peerstore.Commit{Session: peerstore.SessionKey{Peer: p, Epoch: uint64(e),
			Suite: uint16([]protocol.Suite{protocol.SuiteX25519, protocol.SuiteMLKEM768X25519}[e%2]), Created: time.Unix(1.7e9+int64(e), 5)}, Seen: time.Unix(1.7e9, 0)}
		rand.Read(c.Session.Key[:])
		rand.Read(c.Session.ID[:])
		if record {
			c.PeerKey = &peerstore.PeerKey{Peer: p, Seq: uint64(e), Record: make([]byte, 64), Fingerprint: []byte{byte(e)}, Trust: trust}
		}
		require.NoError(t, st.CommitExchange(c))
	}
}

// slowKnownPeers is the listing as it was computed before ListPeers: the
// records from Peers, each one's active session from ActiveSession, sorted
// by the IDs' text.
func slowKnownPeers(t testing.TB, st peerstore.Store) []api.Peer {
	known, err := st.Peers()
	require.NoError(t, err)
	out := []api.Peer{}
	for _, k := range known {
		pj := api.Peer{Peer: k.Peer.String(), Addrs: []string{}, Discovered: []string{}, Known: true, Trust: k.Trust.String()}
		if act, err := st.ActiveSession(k.Peer); err == nil {
			pj.Epoch, pj.KeyID, pj.Suite = act.Epoch, act.ID.String(), protocol.Suite(act.Suite).String()
			t := act.Created.UTC()
			pj.LastExchange = &t
		}
		out = append(out, pj)
	}
	slices.SortFunc(out, func(a, b api.Peer) int { return strings.Compare(a.Peer, b.Peer) })
	return out
}

// TestKnownPeersReadsNoKey: the listing without a node (the command line
// with no daemon) reads neither the records nor the session keys, only
// ListPeers, in pages; it lists what the slow path lists, in its order,
// whether a page ends on a peer with only sessions or not.
func TestKnownPeersReadsNoKey(t *testing.T) {
	mem := peerstore.NewMemory()
	t.Cleanup(func() { mem.Close() })
	st := &countingStore{Store: mem}
	const n = 2500 // more than one page (listPage)
	for i := range n {
		switch i % 5 {
		case 0:
			commitPeer(t, st, randPeer(t), 1, false, 0) // sessions, no record: not known
		case 1:
			commitPeer(t, st, randPeer(t), 3, true, peerstore.TrustFirstUse)
		case 2:
			commitPeer(t, st, randPeer(t), 1, true, peerstore.TrustVerified)
		default:
			commitPeer(t, st, randPeer(t), 2, true, peerstore.TrustChanged)
		}
	}
	want := slowKnownPeers(t, mem)
	require.Len(t, want, n*4/5)

	st.slow.Store(0)
	got, err := server.KnownPeers(st)
	require.NoError(t, err)
	require.Zero(t, st.slow.Load(), "calls to Peers, Peer, ActiveSession or Sessions")
	require.Equal(t, want, got)

	// EachKnownPeer stops at f's error.
	stop := io.ErrUnexpectedEOF
	calls := 0
	err = server.EachKnownPeer(st, func(api.Peer) error { calls++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, calls)
}

// TestPeerIDOrder: for every kind of key a peer can authenticate with,
// the order of the peer IDs' bytes (the store's, in which the listing
// is read) is the order of their text (by which it was sorted before).
func TestPeerIDOrder(t *testing.T) {
	var ids []peer.ID
	add := func(typ, bits, n int) {
		for range n {
			_, pub, err := crypto.GenerateKeyPairWithReader(typ, bits, rand.Reader)
			require.NoError(t, err)
			id, err := peer.IDFromPublicKey(pub)
			require.NoError(t, err)
			ids = append(ids, id)
		}
	}
	add(crypto.Ed25519, 0, 300)
	add(crypto.Secp256k1, 0, 300)
	add(crypto.ECDSA, 0, 300)
	add(crypto.RSA, 2048, 2)
	byBytes := slices.Clone(ids)
	slices.Sort(byBytes)
	byText := slices.Clone(ids)
	slices.SortFunc(byText, func(a, b peer.ID) int { return strings.Compare(a.String(), b.String()) })
	require.Equal(t, byBytes, byText)
}

// TestPeersThroughDaemon: GET /v0/peers, written as the store is read,
// lists what the node lists in process, byte for byte as one JSON list;
// connected peers the store does not know are merged in order, a known
// one that is connected is listed once; and the listing reads no record
// and opens no key.
func TestPeersThroughDaemon(t *testing.T) {
	ctx := context.Background()
	mem := peerstore.NewMemory()
	t.Cleanup(func() { mem.Close() })
	st := &countingStore{Store: mem}
	n, err := node.New(ctx, node.WithStore(st), node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	srv, c := serveNode(t, n)

	// An empty list is [], not null.
	body := rawGet(t, c.Socket(), "peers")
	require.Equal(t, "[]\n", body)

	// Two peers connected: one the store knows, one it does not.
	var others []*node.Node
	for range 2 {
		o, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
		require.NoError(t, err)
		t.Cleanup(func() { o.Close() })
		require.NoError(t, n.Host().Connect(ctx, peer.AddrInfo{ID: o.ID(), Addrs: o.Host().Addrs()}))
		others = append(others, o)
	}
	commitPeer(t, st, others[0].ID(), 2, true, peerstore.TrustVerified)
	for range 1500 {
		commitPeer(t, st, randPeer(t), 1, true, peerstore.TrustFirstUse)
	}

	st.slow.Store(0)
	local, err := srv.Peers(ctx)
	require.NoError(t, err)
	remote, err := c.Peers(ctx)
	require.NoError(t, err)
	require.Zero(t, st.slow.Load(), "calls to Peers, Peer, ActiveSession or Sessions")
	require.Len(t, local, 1502)
	require.True(t, slices.IsSortedFunc(local, func(a, b api.Peer) int { return strings.Compare(a.Peer, b.Peer) }), "sorted by peer ID")
	require.Equal(t, local, remote)
	for _, p := range local {
		switch p.Peer {
		case others[0].ID().String():
			require.True(t, p.Connected && p.Known && p.Trust == "verified" && p.Epoch == 2, "%+v", p)
			require.NotEmpty(t, p.Addrs)
		case others[1].ID().String():
			require.True(t, p.Connected && !p.Known && p.Trust == "unknown" && p.LastExchange == nil, "%+v", p)
		default:
			require.True(t, !p.Connected && p.Known && p.Epoch == 1, "%+v", p)
		}
	}
	want, err := json.Marshal(local)
	require.NoError(t, err)
	require.Equal(t, string(want)+"\n", rawGet(t, c.Socket(), "peers"), "the bytes writeJSON wrote")
}

// rawGet returns the body of GET /v0/path on the daemon's socket.
func rawGet(t *testing.T, sock, path string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://p2pkex/" + api.Version + "/" + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
