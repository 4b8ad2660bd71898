package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
)

// newAlice starts a node on loopback, on a host of its own or, withHost,
// attached to a libp2p host the test built (as an application would).
func newAlice(t *testing.T, withHost bool, opts ...Option) *Node {
	t.Helper()
	if !withHost {
		return newNode(t, opts...)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	n, err := New(context.Background(), append([]Option{WithHost(h)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}

// substitute stops p and starts another node, with an identity of its own,
// listening on p's address, which a still has for p: p's machine
// reinstalled, or someone else took its port.
func substitute(t *testing.T, a *Node, p *Node) (x *Node, addr ma.Multiaddr) {
	t.Helper()
	addr = p.Host().Addrs()[0]
	id := p.ID()
	require.NoError(t, p.Close())
	// p has been gone a while: a has seen its connections close (a stream
	// opened on a connection a has yet to see closed would fail with a
	// reset, which is no identity matter).
	require.Eventually(t, func() bool {
		return a.Host().Network().Connectedness(id) != network.Connected
	}, 10*time.Second, 5*time.Millisecond)
	x = newNode(t, WithListenAddrs(addr.String()))
	require.Equal(t, addr.String(), x.Host().Addrs()[0].String())
	return x, addr
}

// clearBackoff forgets a's failed dials to p, so that the next operation
// dials again instead of failing on libp2p's dial backoff.
func clearBackoff(a *Node, p peer.ID) {
	if sw, ok := a.Host().Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}

// TestIdentityRule: Alice knows Bob (an exchange, then a trust state);
// then Bob's address, which Alice holds for Bob, answers with another
// identity, Carol's. Under every policy and trust state, with Alice on a
// host of her own or on an application's (WithHost), every operation on
// Bob — Exchange (whose kept stream is gone), Send, Connect — fails with
// an *IdentityChangeError naming the address, Bob and Carol, reported as a
// trust event; nothing is stored for Carol and Bob's state is untouched.
func TestIdentityRule(t *testing.T) {
	for _, withHost := range []bool{false, true} {
		for _, pol := range []struct {
			name   string
			policy TrustPolicy
		}{{"tofu", TrustTOFU}, {"strict", TrustStrict}, {"accept", TrustAcceptAll}} {
			for _, initial := range []ps.TrustState{ps.TrustVerified, ps.TrustFirstUse} {
				t.Run(fmt.Sprintf("withHost=%v/%s/%s", withHost, pol.name, initial), func(t *testing.T) {
					aliceStore := ps.NewMemory()
					alice := newAlice(t, withHost, WithStore(aliceStore), WithTrustPolicy(pol.policy))
					bob := newNode(t)
					introduce(alice, bob)
					first := exchange(t, alice, bob)
					require.NoError(t, aliceStore.SetTrust(bob.ID(), initial))
					bobID, held := bob.ID(), bob.Fingerprint()
					carol, addr := substitute(t, alice, bob)

					events, stop := alice.Subscribe(64)
					defer stop()
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					ops := []struct {
						name string
						run  func() error
					}{
						{"exchange", func() error { _, err := alice.Exchange(ctx, bobID); return err }},
						{"send", func() error { return alice.Send(ctx, bobID, []byte("hello")) }},
						{"connect", func() error {
							return alice.Connect(ctx, peer.AddrInfo{ID: bobID, Addrs: []ma.Multiaddr{addr}})
						}},
					}
					for _, op := range ops {
						clearBackoff(alice, bobID)
						err := op.run()
						var ice *IdentityChangeError
						require.ErrorAs(t, err, &ice, "%s: %v", op.name, err)
						require.ErrorIs(t, err, ErrIdentityChanged)
						require.Equal(t, bobID, ice.Peer, op.name)
						require.Equal(t, carol.ID(), ice.Presented, op.name)
						require.Equal(t, initial, ice.Trust, op.name)
						require.True(t, ice.Refused, op.name)
						require.NotNil(t, ice.Addr, op.name)
						msg := err.Error()
						require.NotContains(t, msg, "\n", op.name)
						for _, want := range []string{"IDENTITY CHANGED", bobID.String(), carol.ID().String(), ice.Addr.String()} {
							require.Contains(t, msg, want, op.name)
						}
						require.Equal(t, "refused", ExchangeResult(err))

						// A trust event, published and carried by the error.
						e := nextEvent(t, events, EventTrustChanged)
						require.Equal(t, bobID, e.Peer, op.name)
						require.Equal(t, KeyNewIdentity, e.Trust.Change, op.name)
						require.Equal(t, carol.ID(), e.Trust.Presented, op.name)
						require.True(t, e.Trust.Refused, op.name)
						require.Equal(t, held, e.Trust.Known, op.name)
						require.Equal(t, []TrustChange{*e.Trust}, TrustEvents(err), op.name)
					}

					// Bob's record, trust state and key are untouched; nothing
					// is stored for Carol.
					got, err := aliceStore.Peer(bobID)
					require.NoError(t, err)
					require.Equal(t, initial, got.Trust)
					require.Equal(t, held[:], got.Fingerprint)
					key, err := alice.ActiveKey(bobID)
					require.NoError(t, err)
					require.Equal(t, first.Epoch, key.Epoch)
					_, err = aliceStore.Peer(carol.ID())
					require.ErrorIs(t, err, ps.ErrNotFound)
					_, err = aliceStore.Sessions(carol.ID())
					require.ErrorIs(t, err, ps.ErrNotFound)

					// To talk to Carol, Alice names her: a first contact.
					introduce(alice, carol)
					info, evs, err := exchangeEvents(t, alice, carol.ID())
					require.NoError(t, err)
					require.Len(t, evs, 1)
					require.Equal(t, KeyFirstContact, evs[0].Change)
					require.Equal(t, carol.ID(), info.Peer)
					c, err := aliceStore.Peer(carol.ID())
					require.NoError(t, err)
					require.Equal(t, ps.TrustFirstUse, c.Trust)
				})
			}
		}
	}
}

// TestIdentityMismatchUnknownPeer: for a peer the node knows nothing of,
// another identity at its address is a wrong address: the same error
// (nothing is used in the peer's place), but no trust event.
func TestIdentityMismatchUnknownPeer(t *testing.T) {
	for _, withHost := range []bool{false, true} {
		t.Run(fmt.Sprintf("withHost=%v", withHost), func(t *testing.T) {
			alice := newAlice(t, withHost)
			bob := newNode(t)
			introduce(alice, bob)
			bobID := bob.ID()
			carol, _ := substitute(t, alice, bob)
			events, stop := alice.Subscribe(16)
			defer stop()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, run := range []func() error{
				func() error { _, err := alice.Exchange(ctx, bobID); return err },
				func() error { return alice.Connect(ctx, peer.AddrInfo{ID: bobID, Addrs: carol.Host().Addrs()}) },
			} {
				clearBackoff(alice, bobID)
				err := run()
				var ice *IdentityChangeError
				require.ErrorAs(t, err, &ice)
				require.Equal(t, bobID, ice.Peer)
				require.Equal(t, carol.ID(), ice.Presented)
				require.Equal(t, ps.TrustUnknown, ice.Trust)
				require.NotContains(t, err.Error(), "IDENTITY CHANGED")
				require.Contains(t, err.Error(), carol.ID().String())
				require.Contains(t, err.Error(), bobID.String())
				require.Nil(t, TrustEvents(err))
			}
			select {
			case e := <-events:
				require.NotEqual(t, EventTrustChanged, e.Kind, "unexpected trust event %+v", e)
			case <-time.After(100 * time.Millisecond):
			}
			_, err := alice.Store().Peer(carol.ID())
			require.ErrorIs(t, err, ps.ErrNotFound)
			_, err = alice.Store().Peer(bobID)
			require.ErrorIs(t, err, ps.ErrNotFound)
		})
	}
}

// TestIdentityChangeOtherErrorsUnchanged: a dial error that is not an
// identity mismatch is returned as it is.
func TestIdentityChangeOtherErrorsUnchanged(t *testing.T) {
	n := newNode(t)
	err := errors.New("connection refused")
	require.Same(t, err, n.identityChanged(n.ID(), err))
	require.NoError(t, n.identityChanged(n.ID(), nil))
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
