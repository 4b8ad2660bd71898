package node

import (
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// TestTrustKeyChange: Alice holds Bob's record (sequence 1) in some trust
// state; then "Bob" comes back with the same identity but a key store of his
// own that did not descend from the first one, and presents a record that
// no rotation accounts for. The policy decides; the trust state moves as
// trust.go says, and the change is reported loudly.
func TestTrustKeyChange(t *testing.T) {
	const anHourAgo = -time.Hour
	for _, tc := range []struct {
		name    string
		policy  TrustPolicy // nil: the default
		initial ps.TrustState
		// second Bob: his clock's offset while he makes his keys, and how
		// often he rotates before the exchange
		clock   time.Duration
		rotates int
		// expectations
		refused  bool
		rollback bool // refused by the protocol, not the policy
		event    bool // EventTrustChanged
		after    ps.TrustState
	}{
		{name: "verified/default-policy/refused", initial: ps.TrustVerified,
			clock: anHourAgo, rotates: 1, refused: true, event: true, after: ps.TrustVerified},
		{name: "verified/tofu/refused", policy: TrustTOFU, initial: ps.TrustVerified,
			clock: anHourAgo, rotates: 1, refused: true, event: true, after: ps.TrustVerified},
		{name: "verified/accept-all/allowed-and-changed", policy: TrustAcceptAll, initial: ps.TrustVerified,
			clock: anHourAgo, rotates: 1, event: true, after: ps.TrustChanged},
		{name: "first-use/default-policy/allowed-and-changed", initial: ps.TrustFirstUse,
			clock: anHourAgo, rotates: 1, event: true, after: ps.TrustChanged},
		{name: "first-use/strict/refused", policy: TrustStrict, initial: ps.TrustFirstUse,
			clock: anHourAgo, rotates: 1, refused: true, event: true, after: ps.TrustFirstUse},
		{name: "verified/rotation-accounted-for/stays-verified", policy: TrustStrict, initial: ps.TrustVerified,
			clock: 0, rotates: 1, after: ps.TrustVerified},
		{name: "verified/rollback/refused-under-every-policy", policy: TrustAcceptAll, initial: ps.TrustVerified,
			clock: 0, rotates: 0, refused: true, rollback: true, event: true, after: ps.TrustVerified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
			require.NoError(t, err)
			bobStore := ps.NewMemory()
			require.NoError(t, bobStore.SetIdentity(sk))
			bob := newNode(t, WithStore(bobStore))

			aliceStore := ps.NewMemory()
			opts := []Option{WithStore(aliceStore)}
			if tc.policy != nil {
				opts = append(opts, WithTrustPolicy(tc.policy))
			}
			alice := newNode(t, opts...)
			introduce(alice, bob)
			first := exchange(t, alice, bob)
			held, err := aliceStore.Peer(bob.ID())
			require.NoError(t, err)
			require.Equal(t, ps.TrustFirstUse, held.Trust)
			require.NoError(t, aliceStore.SetTrust(bob.ID(), tc.initial))
			require.NoError(t, bob.Close())
			require.NoError(t, alice.Host().Network().ClosePeer(bob.ID()))

			// The second Bob: same identity, a key store of his own.
			bob2Store := ps.NewMemory()
			require.NoError(t, bob2Store.SetIdentity(sk))
			var offset atomic.Int64
			offset.Store(int64(tc.clock))
			bob2 := newNode(t, WithStore(bob2Store),
				WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }))
			require.Equal(t, bob.ID(), bob2.ID())
			for range tc.rotates {
				require.NoError(t, bob2.RotateExchangeKey())
			}
			offset.Store(0) // the exchange itself runs on time
			introduce(alice, bob2)

			events, stop := alice.Subscribe(0)
			defer stop()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			info, err := alice.Exchange(ctx, bob2.ID())

			var report *TrustChange
			for done := false; !done; {
				select {
				case e := <-events:
					switch e.Kind {
					case EventTrustChanged:
						require.Nil(t, report, "reported twice")
						report = e.Trust
					case EventDone, EventFailed:
						done = true
					}
				case <-ctx.Done():
					t.Fatal("no end of the exchange")
				}
			}

			stored, serr := aliceStore.Peer(bob.ID())
			require.NoError(t, serr)
			require.Equal(t, tc.after, stored.Trust, "trust state after")
			if tc.refused {
				if tc.rollback {
					require.ErrorIs(t, err, protocol.ErrRollback)
				} else {
					require.ErrorIs(t, err, protocol.ErrKeyRejected)
					require.ErrorIs(t, err, ErrKeyChanged)
					require.ErrorContains(t, err, "KEY CHANGED")
				}
				// Nothing changed: the held record and the key of the first
				// exchange stay.
				require.Equal(t, held.Fingerprint, stored.Fingerprint)
				key, kerr := alice.ActiveKey(bob.ID())
				require.NoError(t, kerr)
				require.Equal(t, first.Epoch, key.Epoch)
			} else {
				require.NoError(t, err)
				require.Equal(t, bob2.Fingerprint(), info.PeerFingerprint)
				require.Equal(t, bob2.Fingerprint().String(), protocol.Fingerprint(stored.Fingerprint).String())
				requireSameKey(t, alice, bob2, info.Epoch)
			}
			if !tc.event {
				require.Nil(t, report)
				return
			}
			require.NotNil(t, report, "no EventTrustChanged")
			require.Equal(t, KeyUnaccounted, report.Change)
			require.Equal(t, tc.refused, report.Refused)
			require.Equal(t, tc.initial, report.Previous)
			require.Equal(t, tc.after, report.State)
			require.NotEmpty(t, report.Reason)
			require.Equal(t, held.Fingerprint, report.Known[:])

			if tc.after == ps.TrustChanged {
				// The user compares safety numbers again and confirms.
				require.NoError(t, aliceStore.SetTrust(bob.ID(), ps.TrustVerified))
				p, err := aliceStore.Peer(bob.ID())
				require.NoError(t, err)
				require.Equal(t, ps.TrustVerified, p.Trust)
			}
		})
	}
}

// TestTrustExpiredHeldRecord: once the held record expired the protocol no
// longer compares sequence numbers (the record counts as missing), but the
// node still does: a record that goes back is an unaccounted change.
func TestTrustExpiredHeldRecord(t *testing.T) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	later := func() time.Time { return time.Now().Add(protocol.DefaultRecordLifetime + time.Hour) }

	bobStore := ps.NewMemory()
	require.NoError(t, bobStore.SetIdentity(sk))
	bob := newNode(t, WithStore(bobStore))
	require.NoError(t, bob.RotateExchangeKey()) // sequence 2
	aliceStore := ps.NewMemory()
	alice := newNode(t, WithStore(aliceStore))
	introduce(alice, bob)
	exchange(t, alice, bob)
	require.NoError(t, aliceStore.SetTrust(bob.ID(), ps.TrustVerified))
	require.NoError(t, alice.Close())
	require.NoError(t, bob.Close())

	// A month later: Bob's held record expired; a Bob with a fresh key
	// store (sequence 1) answers.
	bob2Store := ps.NewMemory()
	require.NoError(t, bob2Store.SetIdentity(sk))
	bob2 := newNode(t, WithStore(bob2Store), WithClock(later))
	alice2 := newNode(t, WithStore(aliceStore), WithClock(later))
	introduce(alice2, bob2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = alice2.Exchange(ctx, bob2.ID())
	require.ErrorIs(t, err, ErrKeyChanged)
	require.ErrorContains(t, err, "sequence 1 does not follow the held 2")
	p, err := aliceStore.Peer(bob.ID())
	require.NoError(t, err)
	require.Equal(t, ps.TrustVerified, p.Trust)
}

func TestClassify(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	rec := func(seq uint64, created time.Time, fp byte) *protocol.PeerRecord {
		r := &protocol.PeerRecord{KeyRecord: protocol.KeyRecord{Seq: seq, Created: created}}
		r.Fingerprint[2] = fp
		return r
	}
	held := rec(3, t0, 1)
	for _, tc := range []struct {
		rec  *protocol.PeerRecord
		want KeyChange
	}{
		{rec(3, t0, 1), KeyRotated},                       // the same record
		{rec(4, t0, 2), KeyRotated},                       // next, same second
		{rec(9, t0.Add(time.Hour), 2), KeyRotated},        // several rotations later
		{rec(3, t0.Add(time.Hour), 2), KeyUnaccounted},    // same sequence, another key
		{rec(2, t0.Add(time.Hour), 2), KeyUnaccounted},    // sequence went back
		{rec(4, t0.Add(-time.Second), 2), KeyUnaccounted}, // created before the held one
	} {
		got, _ := classify(held, tc.rec)
		require.Equal(t, tc.want, got, "seq %d created %s", tc.rec.Seq, tc.rec.Created)
	}
	got, _ := classify(nil, held)
	require.Equal(t, KeyFirstContact, got)
}
