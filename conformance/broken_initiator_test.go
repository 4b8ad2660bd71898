package conformance

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// An initiator for the suite to test in initiator mode, built here from
// protocol.Machine like the test responder (broken_test.go): it dials the
// suite again and again, a new stream per exchange, and keeps the
// responder's record and the active epoch. With no hook it passes the
// suite; each broken variant must fail exactly the cases of its rule.

type brokenInitiator struct {
	h      host.Host
	key    *protocol.ExchangeKey
	hook   brokenHook
	active uint64
	known  *protocol.PeerRecord
}

func newBrokenInitiator(t *testing.T, hook brokenHook) *brokenInitiator {
	t.Helper()
	sk, err := newKey()
	require.NoError(t, err)
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.NoListenAddrs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	key, err := protocol.NewExchangeKey(sk, protocol.DefaultSuites(), 1, time.Now(), protocol.DefaultRecordLifetime)
	require.NoError(t, err)
	return &brokenInitiator{h: h, key: key, hook: hook}
}

// exchange runs one exchange with p on a new stream.
func (b *brokenInitiator) exchange(ctx context.Context, p peer.ID) error {
	s, err := b.h.NewStream(ctx, p, protocol.ID)
	if err != nil {
		return err
	}
	m, err := protocol.NewMachine(protocol.Config{Role: protocol.Initiator, Identity: b.h.Peerstore().PrivKey(b.h.ID()), Remote: p,
		RemoteKey: s.Conn().RemotePublicKey(), Own: b.key, Known: b.hook.heldRecord(b.known), Epoch: b.active + 1,
		Accept: b.hook.accept})
	if err != nil {
		_ = s.Reset()
		return err
	}
	st := &brokenExchange{s: s, m: m, started: true, known: b.known}
	fail := func(err error) error {
		endFailed(s, m, err, nil)
		return err
	}
	out, err := m.Start()
	if err != nil {
		return fail(err)
	}
	st.start = decode(out[0].Bytes).GetStart()
	fr := protocol.NewFrameReader(s)
	for {
		if err := protocol.WriteFrames(s, framesBytes(out)); err != nil {
			return fail(err)
		}
		if m.Done() {
			break
		}
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		frame, err := fr.ReadFrame(m.MaxFrame())
		if err != nil {
			return fail(err)
		}
		if b.hook.in != nil {
			if frame = b.hook.in(st, frame); frame == nil {
				out = nil
				continue
			}
		}
		if out, err = m.Consume(frame); err != nil {
			return fail(err)
		}
	}
	res := m.Result()
	res.Wipe()
	b.active = res.Epoch
	if res.Received {
		b.known = res.PeerRecord
	}
	// Section 2: half-close, wait for the peer's end (bounded), close.
	_ = s.CloseWrite()
	_ = s.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(s, protocol.MaxNoticeSize))
	_ = s.Close()
	return nil
}

// runAgainstInitiator runs the initiator-mode suite with b dialling it.
func runAgainstInitiator(t *testing.T, b *brokenInitiator) *Report {
	t.Helper()
	rep, _ := runInitiatorMode(t, b.h.Peerstore(), b.exchange, Options{Wait: testWait}, 0)
	return rep
}

// The test initiator without a hook passes.
func TestSuiteAgainstTestInitiator(t *testing.T) {
	requireAllPass(t, runAgainstInitiator(t, newBrokenInitiator(t, brokenHook{})))
}

func TestSuiteFindsBrokenInitiators(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook brokenHook
		want []string
	}{
		{
			// V52 at CONTINUE: when the responder says it holds the
			// record we named (key_matched), its choice of a later suite
			// is not refused. The machine has no switch for that check:
			// the hook hands it the CONTINUE with the first offered suite
			// that the held record has, as the suite's side computed it
			// before changing it, so the exchange goes on as one that
			// accepted the downgrade.
			name: "accepts-a-downgrade-at-CONTINUE",
			hook: brokenHook{in: func(st *brokenExchange, f []byte) []byte {
				n := decode(f)
				if n.Type != pb.Notice_CONTINUE || !n.Continue.GetKeyMatched() || st.known == nil ||
					st.known.Keys[protocol.Suite(n.Continue.Suite)] == nil || !slices.Contains(st.start.GetSuites(), n.Continue.Suite) {
					return f // not a downgrade, or another rule's case
				}
				first := n.Continue.Suite
				for _, o := range st.start.GetSuites() {
					if st.known != nil && st.known.Keys[protocol.Suite(o)] != nil {
						first = o
						break
					}
				}
				if first == n.Continue.Suite {
					return f
				}
				n.Continue.Suite = first
				return marshal(n).Bytes
			}},
			want: []string{"suite/downgrade-at-CONTINUE"},
		},
		{
			// Section 8.1, V40: an expired held record is dropped.
			name: "forgets-expired-records",
			hook: brokenHook{forgetsExpiredRecords: true},
			want: []string{"key/rollback-against-expired-held-record"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireFailedCases(t, runAgainstInitiator(t, newBrokenInitiator(t, tc.hook)), tc.want)
		})
	}
}
