package conformance

import (
	"context"
	"errors"
	"io"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// A responder for the suite to test, built here from protocol.Machine: a
// small node (per-peer epochs and records, exchanges one after another on
// a stream) whose hook can break one rule. With no hook it passes the
// suite; each broken variant must fail exactly the cases of its rule.

// brokenHook changes how the test responder treats a frame it reads.
type brokenHook struct {
	// in may replace the frame before the machine consumes it, or drop
	// it (nil).
	in func(st *brokenExchange, frame []byte) []byte
	// onAbort answers an ABORT the responder reads (a broken responder).
	onAbort func(st *brokenExchange)
	// installOnSentConfirmation installs the key as soon as the responder
	// has sent its PART_RECEIVED, before it verified the peer's.
	installOnSentConfirmation bool
	// forgetsExpiredRecords drops a held record of the peer once it has
	// expired, so that an older record passes as a first contact (section
	// 8.1 orders a received record against the held one, expired or not).
	forgetsExpiredRecords bool
	// accept is the trust policy (Config.Accept); nil accepts.
	accept func(remote peer.ID, known, received *protocol.PeerRecord) error
}

// heldRecord is the record of p a test peer passes to its machine as
// Config.Known.
func (h brokenHook) heldRecord(rec *protocol.PeerRecord) *protocol.PeerRecord {
	if rec != nil && h.forgetsExpiredRecords && !time.Now().Before(rec.Expires) {
		return nil
	}
	return rec
}

type brokenResponder struct {
	h    host.Host
	key  *protocol.ExchangeKey
	hook brokenHook
	mu   sync.Mutex
	// active epoch and held record, per peer.
	active map[peer.ID]uint64
	known  map[peer.ID]*protocol.PeerRecord
}

type brokenExchange struct {
	r       *brokenResponder
	s       network.Stream
	m       *protocol.Machine
	started bool
	start   *pb.Start
	sentPR  bool
	// known is the peer's record held (the test initiator's).
	known *protocol.PeerRecord
}

func newBrokenResponder(t *testing.T, hook brokenHook) *brokenResponder {
	t.Helper()
	sk, err := newKey()
	require.NoError(t, err)
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	key, err := protocol.NewExchangeKey(sk, protocol.DefaultSuites(), 1, time.Now(), protocol.DefaultRecordLifetime)
	require.NoError(t, err)
	r := &brokenResponder{h: h, key: key, hook: hook, active: map[peer.ID]uint64{}, known: map[peer.ID]*protocol.PeerRecord{}}
	h.SetStreamHandler(protocol.ID, r.serve)
	return r
}

func (r *brokenResponder) addrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}
}

// serve runs exchanges on s one after another until one fails or the
// stream ends.
func (r *brokenResponder) serve(s network.Stream) {
	fr := protocol.NewFrameReader(s)
	for first := true; ; first = false {
		if !r.exchange(s, fr, first) {
			return
		}
	}
}

// exchange runs one exchange; it reports whether it succeeded.
func (r *brokenResponder) exchange(s network.Stream, fr *protocol.FrameReader, first bool) bool {
	p := s.Conn().RemotePeer()
	r.mu.Lock()
	cfg := protocol.Config{Role: protocol.Responder, Identity: r.h.Peerstore().PrivKey(r.h.ID()), Remote: p,
		RemoteKey: s.Conn().RemotePublicKey(), Own: r.key, Known: r.hook.heldRecord(r.known[p]), Epoch: r.active[p] + 1,
		Accept: r.hook.accept}
	r.mu.Unlock()
	m, err := protocol.NewMachine(cfg)
	if err != nil {
		_ = s.Reset()
		return false
	}
	st := &brokenExchange{r: r, s: s, m: m}
	var onAbort func()
	if r.hook.onAbort != nil {
		onAbort = func() { r.hook.onAbort(st) }
	}
	fail := func(err error) bool {
		endFailed(s, m, err, onAbort)
		return false
	}
	for !m.Done() {
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		frame, err := fr.ReadFrame(m.MaxFrame())
		if err != nil {
			if errors.Is(err, io.EOF) && !st.started && !first {
				_ = s.Close() // the idle stream ended
				return false
			}
			return fail(err)
		}
		var n pb.Notice
		_ = proto.Unmarshal(frame, &n)
		if !st.started && !first && n.Type == pb.Notice_ABORT {
			_ = s.Reset() // the end of the previous exchange (section 16)
			return false
		}
		if r.hook.in != nil {
			if frame = r.hook.in(st, frame); frame == nil {
				continue
			}
		}
		if n.Type == pb.Notice_START && !st.started {
			st.started, st.start = true, n.Start
		}
		out, err := m.Consume(frame)
		if err != nil {
			if errors.Is(err, protocol.ErrConfirmation) && st.sentPR && r.hook.installOnSentConfirmation {
				r.install(p, max(st.start.GetEpoch(), cfg.Epoch), nil)
			}
			return fail(err)
		}
		for _, f := range out {
			if f.Type == pb.Notice_PART_RECEIVED {
				st.sentPR = true
			}
		}
		if err := protocol.WriteFrames(s, framesBytes(out)); err != nil {
			return fail(err)
		}
	}
	res := m.Result()
	res.Wipe()
	var rec *protocol.PeerRecord
	if res.Received {
		rec = res.PeerRecord
	}
	r.install(p, res.Epoch, rec)
	return true
}

func (r *brokenResponder) install(p peer.ID, epoch uint64, rec *protocol.PeerRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[p] = epoch
	if rec != nil {
		r.known[p] = rec
	}
}

// endFailed ends the failed exchange of a test peer on s: the machine's
// ABORT if it has one to send, then a reset. After the peer's ABORT the
// reset carries no code (no answer to an ABORT, V48) unless onAbort, a
// broken peer's answer, is set and runs first; after any other failure it
// carries the error's code.
func endFailed(s network.Stream, m *protocol.Machine, err error, onAbort func()) {
	if f := m.Fail(err); f != nil {
		_ = protocol.WriteFrames(s, [][]byte{f.Bytes})
	}
	var ae *protocol.AbortError
	switch {
	case errors.As(err, &ae) && onAbort != nil:
		onAbort()
		_ = s.ResetWithError(protocol.ResetCode(protocol.ErrUnexpected))
	case errors.As(err, &ae):
		_ = s.Reset()
	default:
		_ = s.ResetWithError(protocol.ResetCode(err))
	}
}

func framesBytes(fs []protocol.Frame) [][]byte {
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i] = f.Bytes
	}
	return out
}

func runAgainst(t *testing.T, r *brokenResponder) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunResponder(ctx, r.addrInfo(), Options{Wait: testWait})
	require.NoError(t, err)
	return rep
}

// The test responder without a hook passes: the broken variants below
// fail because of their hook, not because of the harness.
func TestSuiteAgainstTestResponder(t *testing.T) {
	requireAllPass(t, runAgainst(t, newBrokenResponder(t, brokenHook{})))
}

func TestSuiteFindsBrokenResponders(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook brokenHook
		want []string
	}{
		{
			// V7: a START in place of NEXT is ignored, not refused.
			name: "accepts-a-second-START",
			hook: brokenHook{in: func(st *brokenExchange, f []byte) []byte {
				if st.started && decode(f).Type == pb.Notice_START {
					return nil
				}
				return f
			}},
			want: []string{"order/second-START"},
		},
		{
			// V42: the fingerprint in KEY_RECEIVED is not checked (the
			// responder feeds its machine a receipt of its own record).
			name: "skips-the-receipt-check",
			hook: brokenHook{in: func(st *brokenExchange, f []byte) []byte {
				n := decode(f)
				if n.Type != pb.Notice_KEY_RECEIVED {
					return f
				}
				n.KeyReceived.Fingerprint = st.r.key.Fingerprint[:]
				return marshal(n).Bytes
			}},
			want: []string{"key-received/malformed-fingerprint", "key-received/names-the-suites-own-record", "key-received/wrong-fingerprint"},
		},
		{
			// V48: an ABORT is answered with ABORT.
			name: "answers-ABORT",
			hook: brokenHook{onAbort: func(st *brokenExchange) {
				b, _ := protocol.AbortNotice(protocol.ErrUnexpected)
				_ = protocol.WriteFrames(st.s, [][]byte{b})
			}},
			want: []string{"abort/in-phase-2", "abort/unknown-status"},
		},
		{
			// Section 18: the key is installed before the peer's
			// confirmation verified. The suite sees it in the next
			// exchange's epoch proposal.
			name: "installs-before-confirmation",
			hook: brokenHook{installOnSentConfirmation: true},
			want: []string{"part-received/bad-mac", "part-received/reflected", "part-received/short-mac"},
		},
		{
			// Section 8.1, V40: an expired held record is dropped, and a
			// record older than it passes as a first contact.
			name: "forgets-expired-records",
			hook: brokenHook{forgetsExpiredRecords: true},
			want: []string{"key/rollback-against-expired-held-record"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireFailedCases(t, runAgainst(t, newBrokenResponder(t, tc.hook)), tc.want)
		})
	}
}

// key/store-reset reports the IUT's trust policy and passes with either:
// the test responder accepting every record (as tofu does for an
// unverified peer) and one refusing store resets (as strict does).
func TestStoreResetIsInformative(t *testing.T) {
	strict := func(_ peer.ID, known, rec *protocol.PeerRecord) error {
		if rel, _ := protocol.RelateRecords(known, rec); rel == protocol.RecordReset {
			return errors.New("store reset refused")
		}
		return nil
	}
	for _, tc := range []struct {
		name   string
		accept func(peer.ID, *protocol.PeerRecord, *protocol.PeerRecord) error
		note   string
	}{
		{"accepts", nil, "accepted"},
		{"refuses", strict, "refused with KEY_REJECTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newBrokenResponder(t, brokenHook{accept: tc.accept})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := RunResponder(ctx, r.addrInfo(), Options{Wait: testWait, Run: regexp.MustCompile(`^key/store-reset$`)})
			require.NoError(t, err)
			requireAllPassN(t, rep, 1)
			require.Len(t, rep.Results[0].Notes, 1)
			require.Contains(t, rep.Results[0].Notes[0], tc.note)
		})
	}
}
