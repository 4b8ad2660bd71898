package client_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
	"github.com/p2pkex/p2pkex/inbox"
	"github.com/p2pkex/p2pkex/node"
)

// daemon is what "p2pkex daemon" runs, in process: a node on loopback, an
// inbox, and the control API on the unix socket of a temporary repo.
type daemon struct {
	dir      string
	n        *node.Node
	srv      *server.Server
	c        *client.Client
	shutdown chan struct{} // closed by POST /v0/shutdown
}

func startDaemon(t testing.TB) *daemon {
	t.Helper()
	d := &daemon{dir: t.TempDir(), shutdown: make(chan struct{})}
	ib, err := inbox.Open(filepath.Join(d.dir, inbox.FileName), inbox.Limits{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ib.Close()) })
	keep := func(_ context.Context, m node.Message) error {
		_, err := ib.Add(inbox.Message{From: m.From, Epoch: m.Epoch, KeyID: m.KeyID, Time: m.Time, Data: m.Data})
		return err
	}
	d.n, err = node.New(context.Background(), node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithMessageKeeper(keep))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.n.Close()) })
	var once sync.Once
	d.srv = server.New(d.n, server.Options{Dir: d.dir, Inbox: ib,
		Shutdown: func() { once.Do(func() { close(d.shutdown) }) }})
	require.NoError(t, d.srv.Start())
	t.Cleanup(func() { require.NoError(t, d.srv.Close()) })
	d.c, err = client.New(d.dir)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.c.Close()) })
	return d
}

// addr is the daemon's first full address.
func (d *daemon) addr(t testing.TB) string {
	t.Helper()
	id, err := d.c.ID(context.Background())
	require.NoError(t, err)
	require.NotEmpty(t, id.Addrs)
	return id.Addrs[0]
}

// apiError is err's *api.Error, which the test requires.
func apiError(t testing.TB, err error) *api.Error {
	t.Helper()
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	return ae
}

// TestClient drives two daemons on loopback through their clients, every
// request/response endpoint with its answers and its errors.
func TestClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob := startDaemon(t), startDaemon(t)
	a, b := alice.c, bob.c

	// id: who the daemon is, with its socket-reachable addresses.
	id, err := a.ID(ctx)
	require.NoError(t, err)
	require.Equal(t, alice.n.ID().String(), id.PeerID)
	require.Equal(t, alice.n.Fingerprint().String(), id.Fingerprint)
	require.True(t, id.Running)
	require.True(t, strings.HasSuffix(alice.addr(t), "/p2p/"+id.PeerID))
	bobID := bob.n.ID().String()

	// Before any exchange: the mistakes a user makes get the CLI's words.
	_, err = a.Exchange(ctx, "nonsense", nil)
	ae := apiError(t, err)
	require.Equal(t, api.CodeBadRequest, ae.Code)
	require.Equal(t, `"nonsense" is neither a peer ID nor a multiaddr ending in /p2p/<peer ID>`, ae.Message)
	_, err = a.Exchange(ctx, bobID, nil)
	ae = apiError(t, err)
	require.Equal(t, api.CodeNotFound, ae.Code)
	require.Equal(t, `no address known for `+bobID+`: give its full multiaddr, or "p2pkex connect" to it first`, ae.Message)
	_, err = a.Send(ctx, id.PeerID, "to myself")
	ae = apiError(t, err)
	require.Equal(t, api.CodeBadRequest, ae.Code)
	require.Equal(t, 400, ae.Status)
	require.Equal(t, id.PeerID+" is this node's own peer ID", ae.Message)
	_, err = a.Keys(ctx, bobID)
	ae = apiError(t, err)
	require.Equal(t, api.CodeNotFound, ae.Code)
	require.Equal(t, 404, ae.Status)
	require.Equal(t, "no keys with "+bobID+": no exchange with it yet", ae.Message)
	_, err = a.ExportKey(ctx, api.ExportKeyRequest{Peer: bobID, Label: "test", Length: 32})
	require.Equal(t, api.CodeNoSession, apiError(t, err).Code)
	_, err = a.Verify(ctx, api.VerifyRequest{Peer: bobID, Yes: true})
	ae = apiError(t, err)
	require.Equal(t, api.CodeNotFound, ae.Code)
	require.Equal(t, `no key of `+bobID+` known: run "p2pkex exchange" first`, ae.Message)

	// exchange, with its progress lines streamed as they happen.
	var lines []string
	res, err := a.Exchange(ctx, bob.addr(t), func(l string) { lines = append(lines, l) })
	require.NoError(t, err)
	require.Equal(t, bobID, res.Peer)
	require.Equal(t, uint64(1), res.Epoch)
	require.True(t, res.SentOwnKey && res.ReceivedPeerKey)
	require.Equal(t, alice.n.SafetyNumber(bob.n.ID()).Digits(), res.SafetyNumber)
	require.Equal(t, []string{
		"phase 1: start as initiator, compare fingerprints",
		"phase 2: send own public key, receive peer's public key",
		"phase 3: send sealed, signed key part",
		"done: both confirmations verified",
	}, lines)
	require.Len(t, res.TrustEvents, 1)
	require.Equal(t, "first-use", res.TrustEvents[0].Event)
	require.Equal(t, bobID, res.TrustEvents[0].Peer)
	waitKey(t, b, id.PeerID)

	// peers and keys: metadata of what the exchange left.
	peers, err := a.Peers(ctx)
	require.NoError(t, err)
	i := slices.IndexFunc(peers, func(p api.Peer) bool { return p.Peer == bobID })
	require.GreaterOrEqual(t, i, 0, "%+v", peers)
	require.True(t, peers[i].Connected && peers[i].Known)
	require.Equal(t, "first-use", peers[i].Trust)
	require.Equal(t, res.KeyID, peers[i].KeyID)
	keys, err := a.Keys(ctx, "")
	require.NoError(t, err)
	require.Equal(t, id.Fingerprint, keys.Own.Fingerprint)
	require.Len(t, keys.Peers, 1)
	require.Equal(t, []api.Session{{Epoch: 1, KeyID: res.KeyID, Suite: res.Suite, Created: keys.Peers[0].Sessions[0].Created}}, keys.Peers[0].Sessions)

	// send: the message reaches bob's chat stream and his inbox.
	msgs, err := b.MessageStream(ctx, id.PeerID)
	require.NoError(t, err)
	sent, err := a.Send(ctx, bobID, "hello bob")
	require.NoError(t, err)
	require.Equal(t, bobID, sent.Peer)
	m, err := msgs.Next()
	require.NoError(t, err)
	require.Equal(t, api.ChatMessage{From: id.PeerID, Epoch: 1, Text: "hello bob"}, m)
	require.NoError(t, msgs.Close())
	var kept []api.InboxMessage
	require.NoError(t, b.Inbox(ctx, client.InboxQuery{}, func(m api.InboxMessage) error {
		kept = append(kept, m)
		return nil
	}))
	require.Len(t, kept, 1)
	require.Equal(t, "hello bob", kept[0].Text)
	require.Equal(t, id.PeerID, kept[0].From)
	require.Equal(t, res.KeyID, kept[0].KeyID)

	// inbox --follow: the next message arrives on the open stream.
	fctx, fcancel := context.WithCancel(ctx)
	followed := make(chan api.InboxMessage, 1)
	followErr := make(chan error, 1)
	go func() {
		followErr <- b.Inbox(fctx, client.InboxQuery{After: kept[0].Seq, Follow: true}, func(m api.InboxMessage) error {
			followed <- m
			return nil
		})
	}()
	_, err = a.Send(ctx, bobID, "second")
	require.NoError(t, err)
	require.Equal(t, "second", (<-followed).Text)
	fcancel()
	require.NoError(t, <-followErr)

	// export-key: both ends derive the same key; bounds are the caller's
	// mistake.
	req := api.ExportKeyRequest{Label: "client test v1", Context: []byte("ctx"), Length: 48}
	req.Peer = bobID
	ka, err := a.ExportKey(ctx, req)
	require.NoError(t, err)
	req.Peer = id.PeerID
	kb, err := b.ExportKey(ctx, req)
	require.NoError(t, err)
	require.Len(t, ka.Key, 48)
	require.Equal(t, ka.Key, kb.Key)
	require.Equal(t, res.KeyID, ka.KeyID)
	req.Length = 1 << 20
	_, err = b.ExportKey(ctx, req)
	require.Equal(t, api.CodeBadRequest, apiError(t, err).Code)

	// verify: a wrong number is refused; the peer's number verifies.
	v, err := a.Verify(ctx, api.VerifyRequest{Peer: bobID})
	require.NoError(t, err)
	require.True(t, v.Known)
	require.Equal(t, "first-use", v.Trust)
	require.Equal(t, res.SafetyNumber, v.Digits)
	_, err = a.Verify(ctx, api.VerifyRequest{Peer: bobID, Number: "12345"})
	ae = apiError(t, err)
	require.Equal(t, api.CodeRefused, ae.Code)
	require.Equal(t, 409, ae.Status)
	require.Contains(t, ae.Message, "the number typed is not the safety number of this repo and "+bobID)
	theirs, err := b.Verify(ctx, api.VerifyRequest{Peer: id.PeerID})
	require.NoError(t, err)
	v, err = a.Verify(ctx, api.VerifyRequest{Peer: bobID, Number: theirs.Digits})
	require.NoError(t, err)
	require.True(t, v.Confirmed)
	require.Equal(t, "verified", v.Trust)
	require.Equal(t, "first-use", v.Previous)

	// rotate and status.
	bid, err := b.ID(ctx)
	require.NoError(t, err)
	rot, err := b.Rotate(ctx)
	require.NoError(t, err)
	require.Equal(t, bid.Fingerprint, rot.Previous)
	require.Equal(t, bob.n.Fingerprint().String(), rot.Fingerprint)
	require.NotEqual(t, rot.Previous, rot.Fingerprint)
	st, err := a.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.ExchangesDone)
	require.Equal(t, 1, st.ConnectedPeers)

	// forget: what it would remove, then removed; then nothing is known.
	f, err := a.ForgetPreview(ctx, bobID)
	require.NoError(t, err)
	require.Equal(t, api.ForgetReply{Peer: bobID, Record: true, Trust: "verified", Sessions: 1}, *f)
	f, err = a.Forget(ctx, bobID)
	require.NoError(t, err)
	require.True(t, f.Removed)
	_, err = a.Keys(ctx, bobID)
	require.Equal(t, api.CodeNotFound, apiError(t, err).Code)

	// connect: by full address.
	cr, err := a.Connect(ctx, bob.addr(t))
	require.NoError(t, err)
	require.Equal(t, bobID, cr.Peer)
	require.True(t, cr.SpeaksP2PKEX)

	// shutdown: answered, then the daemon's hook runs.
	sd, err := b.Shutdown(ctx)
	require.NoError(t, err)
	require.Equal(t, bobID, sd.PeerID)
	select {
	case <-bob.shutdown:
	case <-ctx.Done():
		t.Fatal("the shutdown hook did not run")
	}
}

// waitKey waits until c's daemon holds a session key with peer (the
// responder installs a moment after the initiator returns).
func waitKey(t testing.TB, c *client.Client, peer string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := c.ExportKey(context.Background(), api.ExportKeyRequest{Peer: peer, Label: "wait", Length: 1})
		return err == nil
	}, 20*time.Second, 10*time.Millisecond)
}

// TestExchangeFailure: a failed exchange is an *api.Error with the code
// for the peer and the words the CLI prints.
func TestExchangeFailure(t *testing.T) {
	alice := startDaemon(t)
	// A loopback port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	const other = "12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v"
	addr := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port) + "/p2p/" + other
	var progress int
	_, err = alice.c.Exchange(context.Background(), addr, func(string) { progress++ })
	ae := apiError(t, err)
	require.Equal(t, api.CodePeer, ae.Code)
	require.Equal(t, "cannot reach "+other+": connection refused", ae.Message)
	require.Zero(t, progress)
}

// TestNoDaemon: no socket, or a stale one nothing listens on, is
// ErrNoDaemon, which the CLI tests to run without a daemon.
func TestNoDaemon(t *testing.T) {
	dir := t.TempDir()
	_, err := client.New(dir)
	require.ErrorIs(t, err, client.ErrNoDaemon)

	// A daemon that died left its socket file behind.
	l, err := net.Listen("unix", filepath.Join(dir, api.SocketName))
	require.NoError(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	require.FileExists(t, filepath.Join(dir, api.SocketName))
	_, err = client.New(dir)
	require.ErrorIs(t, err, client.ErrNoDaemon)
	require.Contains(t, err.Error(), "connection refused")

	// A daemon that stops while a client holds on: the request fails
	// with a TransportError, not an *api.Error.
	d := startDaemon(t)
	require.NoError(t, d.srv.Close())
	_, err = d.c.ID(context.Background())
	var te *client.TransportError
	require.ErrorAs(t, err, &te)
	require.False(t, errors.As(err, new(*api.Error)))
}

// TestNoNodeInClient: a program that drives a daemon does not link a node
// (package api's doc: the arrows point one way).
func TestNoNodeInClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/p2pkex/p2pkex/client").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v: %s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/") && !strings.HasPrefix(dep, "github.com/p2pkex/p2pkex/api") &&
			dep != "github.com/p2pkex/p2pkex/client" {
			t.Errorf("client depends on %s", dep)
		}
	}
}
