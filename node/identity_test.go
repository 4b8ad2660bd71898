package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
)

// TestIdentityChange: Alice knows Bob (an exchange, then a trust state);
// then Bob's address answers with another identity, Carol's — Bob's machine
// reinstalled, or someone else in its place. Dialling Bob there is reported
// loudly, and the trust policy decides whether Alice may go on with Carol;
// if she does, Carol starts out as "changed", not "first-use".
func TestIdentityChange(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  TrustPolicy // nil: the default
		initial ps.TrustState
		refused bool
	}{
		{name: "verified/default-policy/refused", initial: ps.TrustVerified, refused: true},
		{name: "verified/strict/refused", policy: TrustStrict, initial: ps.TrustVerified, refused: true},
		{name: "verified/accept-all/allowed", policy: TrustAcceptAll, initial: ps.TrustVerified},
		{name: "first-use/default-policy/allowed", initial: ps.TrustFirstUse},
		{name: "first-use/strict/refused", policy: TrustStrict, initial: ps.TrustFirstUse, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aliceStore := ps.NewMemory()
			opts := []Option{WithStore(aliceStore)}
			if tc.policy != nil {
				opts = append(opts, WithTrustPolicy(tc.policy))
			}
			alice := newNode(t, opts...)
			bob := newNode(t)
			carol := newNode(t)
			introduce(alice, bob)
			exchange(t, alice, bob)
			require.NoError(t, aliceStore.SetTrust(bob.ID(), tc.initial))

			events, stop := alice.Subscribe(16)
			defer stop()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// Bob's address now answers as Carol.
			err := dialElsewhere(t, alice, bob.ID(), func() error {
				return alice.Connect(ctx, peer.AddrInfo{ID: bob.ID(), Addrs: carol.Host().Addrs()})
			})
			var ice *IdentityChangeError
			require.ErrorAs(t, err, &ice)
			require.ErrorIs(t, err, ErrIdentityChanged)
			require.Equal(t, bob.ID(), ice.Peer)
			require.Equal(t, carol.ID(), ice.Presented)
			require.Equal(t, tc.initial, ice.Trust)
			require.NotNil(t, ice.Addr)
			require.Equal(t, tc.refused, ice.Refused)
			require.Contains(t, err.Error(), "IDENTITY CHANGED")
			require.Contains(t, err.Error(), carol.ID().String())

			// Reported loudly, whatever the verdict.
			e := nextEvent(t, events, EventTrustChanged)
			require.Equal(t, bob.ID(), e.Peer)
			require.Equal(t, KeyNewIdentity, e.Trust.Change)
			require.Equal(t, carol.ID(), e.Trust.Presented)
			require.Equal(t, tc.refused, e.Trust.Refused)

			// Bob's record and trust state are untouched either way.
			held, err := aliceStore.Peer(bob.ID())
			require.NoError(t, err)
			require.Equal(t, tc.initial, held.Trust)
			_, err = aliceStore.Peer(carol.ID())
			require.ErrorIs(t, err, ps.ErrNotFound)

			if tc.refused {
				return
			}
			// Allowed: Alice goes on with Carol, who is stored as changed.
			require.NoError(t, alice.Connect(ctx, peer.AddrInfo{ID: ice.Presented, Addrs: carol.Host().Addrs()}))
			exchange(t, alice, carol)
			got, err := aliceStore.Peer(carol.ID())
			require.NoError(t, err)
			require.Equal(t, ps.TrustChanged, got.Trust)
		})
	}
}

// TestIdentityChangeOnExchangeAndSend: the dials Exchange and Send make
// report a known peer's changed identity too.
func TestIdentityChangeOnExchangeAndSend(t *testing.T) {
	alice, bob, carol := newNode(t), newNode(t), newNode(t)
	introduce(alice, bob)
	exchange(t, alice, bob)
	require.NoError(t, alice.Store().SetTrust(bob.ID(), ps.TrustVerified))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := dialElsewhere(t, alice, bob.ID(), func() error {
		alice.Host().Peerstore().AddAddrs(bob.ID(), carol.Host().Addrs(), time.Hour)
		_, err := alice.Exchange(ctx, bob.ID())
		return err
	})
	var ice *IdentityChangeError
	require.ErrorAs(t, err, &ice)
	require.True(t, ice.Refused)
	require.Equal(t, carol.ID(), ice.Presented)

	err = dialElsewhere(t, alice, bob.ID(), func() error {
		alice.Host().Peerstore().AddAddrs(bob.ID(), carol.Host().Addrs(), time.Hour)
		return alice.Send(ctx, bob.ID(), []byte("hello"))
	})
	require.ErrorAs(t, err, &ice)
	require.True(t, ice.Refused)
}

// TestIdentityMismatchUnknownPeer: a peer the node knows nothing of is not
// "changed": dialling it at an address where another node answers is a
// plain dial error, and no trust event is published.
func TestIdentityMismatchUnknownPeer(t *testing.T) {
	alice, bob, carol := newNode(t), newNode(t), newNode(t)
	events, stop := alice.Subscribe(16)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := alice.Connect(ctx, peer.AddrInfo{ID: bob.ID(), Addrs: carol.Host().Addrs()})
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrIdentityChanged), "unknown peer reported as changed: %v", err)
	select {
	case e := <-events:
		require.NotEqual(t, EventTrustChanged, e.Kind, "unexpected trust event %+v", e)
	case <-time.After(100 * time.Millisecond):
	}
}

// dialElsewhere disconnects a from p, makes it forget p's addresses and
// dial backoff, and runs dial, which dials p somewhere else. libp2p's
// identify service updates p's addresses in the background for a moment
// after a connection closes, which can leave dial with no address: dial is
// retried until it fails for another reason, or for a few seconds.
func dialElsewhere(t *testing.T, a *Node, p peer.ID, dial func() error) error {
	t.Helper()
	require.NoError(t, a.Host().Network().ClosePeer(p))
	var err error
	for range 100 {
		a.Host().Peerstore().ClearAddrs(p)
		if sw, ok := a.Host().Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(p)
		}
		if err = dial(); !errors.Is(err, swarm.ErrNoAddresses) && !errors.Is(err, swarm.ErrDialBackoff) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// nextEvent returns the next event of kind, failing after a while.
func nextEvent(t *testing.T, events <-chan Event, kind EventKind) Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %v event", kind)
		}
	}
}
