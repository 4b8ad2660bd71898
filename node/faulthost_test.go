package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// The harness of the fault, slow-peer and size tests (faults_test.go,
// slow_test.go, sizes_test.go): a host wrapper that passes every stream of
// the exchange through a faultStream, which follows the notices in both
// directions and, as a plan says, resets the stream after a given notice,
// stalls or drips after it, or rewrites what the node sends; and the checks
// that a node and its host hold nothing of an exchange any more.

// faultPlan says where a faultHost cuts the next exchange stream it sees.
type faultPlan struct {
	// send: count the notices the node sends; else those it receives.
	send bool
	// k: reset right after the k-th counted notice; with send, k = 0
	// resets before the first one goes out.
	k int
	// stall, when set, replaces the reset: after the k-th sent notice,
	// writes are swallowed (the node believes them sent).
	stall bool
	// drip, when set, replaces the reset: after the k-th sent notice, every
	// byte goes out alone, drip after the one before.
	drip time.Duration
	// edit, when set, replaces each notice the node sends (k is not used):
	// it returns the bytes to send instead of the notice's frame.
	edit func(typ pb.Notice_Type, notice []byte) []byte
}

func (p faultPlan) String() string {
	dir := "received"
	if p.send {
		dir = "sent"
	}
	return fmt.Sprintf("after-%s-%d", dir, p.k)
}

// stallAfter and dripAfter are the plans of a slow peer.
func stallAfter(k int) faultPlan { return faultPlan{send: true, k: k, stall: true} }

func dripAfter(k int, every time.Duration) faultPlan {
	return faultPlan{send: true, k: k, drip: every}
}

// faultHost wraps a host: every stream of the exchange, in either
// direction, passes through a faultStream.
type faultHost struct {
	host.Host
	mu   sync.Mutex
	plan *faultPlan
	last *faultStream // the last exchange stream
}

// arm sets the plan for the next exchange stream.
func (h *faultHost) arm(p faultPlan) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.plan = &p
}

// take returns the last exchange stream and forgets it. A close the
// stream swallowed is done now.
func (h *faultHost) take() *faultStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	fs := h.last
	h.last, h.plan = nil, nil
	if fs != nil {
		fs.mu.Lock()
		if fs.closeHeld {
			_ = fs.Stream.Reset()
		}
		fs.mu.Unlock()
	}
	return fs
}

func (h *faultHost) wrap(s network.Stream) *faultStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	fs := &faultStream{Stream: s, plan: h.plan}
	h.plan = nil
	h.last = fs
	return fs
}

func (h *faultHost) NewStream(ctx context.Context, p peer.ID, pids ...libp2pprotocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil || len(pids) != 1 || pids[0] != protocol.ID {
		return s, err
	}
	return h.wrap(s), nil
}

func (h *faultHost) SetStreamHandler(pid libp2pprotocol.ID, handler network.StreamHandler) {
	if pid != protocol.ID {
		h.Host.SetStreamHandler(pid, handler)
		return
	}
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(h.wrap(s)) })
}

// frameSplitter follows the frames of one direction of a stream.
type frameSplitter struct {
	prefix []byte // the length prefix read so far
	need   int    // bytes of the current frame still to come; -1 while reading a prefix
	frame  []byte
	types  []pb.Notice_Type // the notices completed so far
}

// feed consumes b and returns, for each frame that b completes, the offset
// in b just after it.
func (f *frameSplitter) feed(b []byte) []int {
	var ends []int
	for i := 0; i < len(b); {
		if f.need <= 0 && len(f.frame) == 0 {
			f.prefix = append(f.prefix, b[i])
			i++
			n, m := binary.Uvarint(f.prefix)
			if m <= 0 {
				continue // more to come (the nodes send no malformed prefix)
			}
			f.prefix, f.need, f.frame = f.prefix[:0], int(n), make([]byte, 0, n)
			continue
		}
		take := min(f.need, len(b)-i)
		f.frame = append(f.frame, b[i:i+take]...)
		f.need -= take
		i += take
		if f.need == 0 {
			var n pb.Notice
			typ := pb.Notice_Type(-1)
			if proto.Unmarshal(f.frame, &n) == nil {
				typ = n.Type
			}
			f.types = append(f.types, typ)
			f.frame = f.frame[:0]
			ends = append(ends, i)
		}
	}
	return ends
}

// peek returns what feed would, without consuming b.
func (f *frameSplitter) peek(b []byte) []int {
	c := frameSplitter{
		prefix: append([]byte(nil), f.prefix...),
		need:   f.need,
		frame:  append([]byte(nil), f.frame...),
	}
	return c.feed(b)
}

func noticeIn(types []pb.Notice_Type, t pb.Notice_Type) bool {
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

// faultStream is an exchange stream that records the notices it carries
// and applies a plan.
type faultStream struct {
	network.Stream
	plan *faultPlan

	mu        sync.Mutex
	sent      frameSplitter // notices written to the stream in full
	received  frameSplitter // notices handed to the node in full
	cut       bool
	stalled   bool
	dripping  bool
	closeHeld bool // a stalled stream does not close either
	dripped   int
}

// Close closes the stream, unless it stalled: a silent peer does not end
// the stream either (take resets it later).
func (s *faultStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		s.closeHeld = true
		return nil
	}
	return s.Stream.Close()
}

// CloseWrite is Close's half: a stalled stream does not end either
// (streams.go ends a stream with CloseWrite first).
func (s *faultStream) CloseWrite() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		s.closeHeld = true
		return nil
	}
	return s.Stream.CloseWrite()
}

// errFault is what the cutting side's own write returns.
var errFault = errors.New("fault injected")

func (s *faultStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	switch {
	case s.cut:
		s.mu.Unlock()
		return 0, network.ErrReset
	case s.stalled:
		s.mu.Unlock()
		return len(b), nil
	case s.dripping:
		s.mu.Unlock()
		return s.drip(b, 0)
	}
	p := s.plan
	if p != nil && p.edit != nil {
		defer s.mu.Unlock()
		return s.edit(b)
	}
	at := -1 // where the fault applies in b
	if p != nil && p.send {
		if p.k == 0 {
			at = 0
		}
		have := len(s.sent.types)
		for i, end := range s.sent.peek(b) {
			if have+i+1 == p.k {
				at = end
			}
		}
	}
	if at < 0 {
		defer s.mu.Unlock()
		n, err := s.Stream.Write(b)
		s.sent.feed(b[:n])
		return n, err
	}
	n, err := s.Stream.Write(b[:at])
	s.sent.feed(b[:n])
	if err != nil {
		s.mu.Unlock()
		return n, err
	}
	switch {
	case p.stall:
		s.stalled = true
		s.mu.Unlock()
		return len(b), nil
	case p.drip > 0:
		s.dripping = true
		s.mu.Unlock()
		return s.drip(b, at)
	}
	s.cut = true
	_ = s.Stream.Reset()
	s.mu.Unlock()
	return n, errFault
}

// drip sends b from offset at one byte at a time.
func (s *faultStream) drip(b []byte, at int) (int, error) {
	for i := at; i < len(b); i++ {
		time.Sleep(s.plan.drip)
		if _, err := s.Stream.Write(b[i : i+1]); err != nil {
			return i, err
		}
		s.mu.Lock()
		s.dripped++
		s.mu.Unlock()
	}
	return len(b), nil
}

// dripCount returns how many bytes went out one at a time.
func (s *faultStream) dripCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dripped
}

// edit sends, for each notice in b, what the plan's edit makes of it. The
// node writes whole frames.
func (s *faultStream) edit(b []byte) (int, error) {
	var out []byte
	for rest := b; len(rest) > 0; {
		n, m := binary.Uvarint(rest)
		if m <= 0 || uint64(len(rest)-m) < n {
			return 0, errors.New("fault stream: partial frame written")
		}
		body := rest[m : m+int(n)]
		var notice pb.Notice
		if err := proto.Unmarshal(body, &notice); err != nil {
			return 0, err
		}
		out = append(out, s.plan.edit(notice.Type, body)...)
		rest = rest[m+int(n):]
	}
	s.sent.feed(b)
	if len(out) > 0 {
		if _, err := s.Stream.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (s *faultStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.plan; p != nil && !p.send && !s.cut {
		have := len(s.received.types)
		for i, end := range s.received.peek(b[:n]) {
			if have+i+1 == p.k {
				// The node gets notice k, and the stream is gone.
				s.received.feed(b[:end])
				s.cut = true
				_ = s.Stream.Reset()
				return end, nil
			}
		}
	}
	s.received.feed(b[:n])
	return n, err
}

// types returns the notices sent and received in full.
func (s *faultStream) types() (sent, received []pb.Notice_Type) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pb.Notice_Type(nil), s.sent.types...), append([]pb.Notice_Type(nil), s.received.types...)
}

func (s *faultStream) faulted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut || s.stalled || s.dripping
}

// newFaultNode starts a node of the given notice size on a fault host,
// which runs the resource manager the node would build for itself.
func newFaultNode(t *testing.T, noticeSize int, opts ...Option) (*Node, *faultHost) {
	t.Helper()
	cfg := defaults()
	cfg.noticeSize = noticeSize
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), resourceManager(cfg))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	fh := &faultHost{Host: h}
	// The fault host acts on the streams the node opens and accepts: one
	// for every exchange, none kept for the next (streams.go).
	n, err := New(context.Background(), append([]Option{WithHost(fh), WithNoticeSize(noticeSize), WithStreamIdleTimeout(0)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n, fh
}

// scopeStats are the resource-manager scopes of h that the tests read.
type scopeStats struct {
	service, transient, peer network.ScopeStat
}

func readScopes(t testing.TB, h host.Host, p peer.ID) scopeStats {
	t.Helper()
	var st scopeStats
	rm := h.Network().ResourceManager()
	require.NoError(t, rm.ViewService(protocol.ServiceName, func(s network.ServiceScope) error {
		st.service = s.Stat()
		return nil
	}))
	require.NoError(t, rm.ViewTransient(func(s network.ResourceScope) error {
		st.transient = s.Stat()
		return nil
	}))
	if p != "" {
		require.NoError(t, rm.ViewPeer(p, func(s network.PeerScope) error {
			st.peer = s.Stat()
			return nil
		}))
	}
	return st
}

// scopesIdle reports whether h's service scope, transient scope and the
// peer scope of each of peers hold no stream and no memory. (A peer scope
// keeps its connection, which holds no memory.)
func scopesIdle(t testing.TB, h host.Host, peers ...peer.ID) bool {
	t.Helper()
	idle := func(st network.ScopeStat) bool {
		return st.NumStreamsInbound == 0 && st.NumStreamsOutbound == 0 && st.Memory == 0
	}
	st := readScopes(t, h, "")
	if !idle(st.service) || !idle(st.transient) {
		return false
	}
	for _, p := range peers {
		if !idle(readScopes(t, h, p).peer) {
			return false
		}
	}
	return true
}

// requireScopesIdle waits until scopesIdle holds for h.
func requireScopesIdle(t testing.TB, h host.Host, peers ...peer.ID) {
	t.Helper()
	require.Eventually(t, func() bool { return scopesIdle(t, h, peers...) }, 10*time.Second, 5*time.Millisecond,
		"resource scopes of %s not idle: %+v", h.ID(), readScopes(t, h, ""))
}

// nodeIdle reports whether n runs no exchange and counts no inbound one.
func nodeIdle(n *Node) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.inbound == 0 && len(n.perPeer) == 0 && len(n.slots) == 0 &&
		n.unknownInbound == 0 && len(n.perOrigin) == 0
}

// noExchangeStreams reports whether h's connections to p carry no stream
// of the exchange, nor one still negotiating its protocol.
func noExchangeStreams(h host.Host, p peer.ID) bool {
	for _, c := range h.Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if pid := s.Protocol(); pid == protocol.ID || pid == "" {
				return false
			}
		}
	}
	return true
}

// activeOf returns n's active key for p, nil if none.
func activeOf(t *testing.T, n *Node, p peer.ID) *ps.SessionKey {
	t.Helper()
	k, err := n.ActiveKey(p)
	if errors.Is(err, ps.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	return k
}

func epochOf(k *ps.SessionKey) uint64 {
	if k == nil {
		return 0
	}
	return k.Epoch
}

// requireNoLeak fails t if goroutines started after baseline (a
// goleak.IgnoreCurrent taken earlier) are still running. goleak.Find gives
// up after about half a second; a loaded machine may need longer to let
// closing streams and connections wind down, so it is asked again, for up
// to ten seconds.
func requireNoLeak(t testing.TB, baseline goleak.Option, msgAndArgs ...any) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err = goleak.Find(baseline); err == nil || time.Now().After(deadline) {
			break
		}
	}
	require.NoError(t, err, msgAndArgs...)
}
