package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// TestTrustAPI: Peers, PeerInfo, ConfirmPeer, RevokePeer and Forget, on a
// node with a host of its own and on one attached to an application's.
func TestTrustAPI(t *testing.T) {
	for _, withHost := range []bool{false, true} {
		t.Run(fmt.Sprintf("withHost=%v", withHost), func(t *testing.T) {
			alice := newAlice(t, withHost)
			bob, carol := newNode(t), newNode(t)
			introduce(alice, bob)
			introduce(alice, carol)
			info := exchange(t, alice, bob)
			exchange(t, alice, carol)

			peers, err := alice.Peers()
			require.NoError(t, err)
			require.Len(t, peers, 2)
			require.Less(t, string(peers[0].ID), string(peers[1].ID), "sorted by peer ID")
			pi, err := alice.PeerInfo(bob.ID())
			require.NoError(t, err)
			require.Contains(t, peers, pi)
			rec := bob.ExchangeKey()
			require.Equal(t, bob.ID(), pi.ID)
			require.Equal(t, ps.TrustFirstUse, pi.Trust)
			require.Equal(t, rec.Fingerprint, pi.Fingerprint)
			require.Equal(t, rec.Seq, pi.Seq)
			require.True(t, rec.Created.Equal(pi.Created))
			require.True(t, rec.Expires.Equal(pi.Expires))
			require.Equal(t, []protocol.Suite{protocol.SuiteMLKEM768X25519, protocol.SuiteX25519}, pi.Suites)
			require.Equal(t, info.Epoch, pi.Epoch)
			require.Equal(t, info.KeyID, pi.KeyID)
			require.Equal(t, info.Suite, pi.Suite)
			require.False(t, pi.FirstSeen.IsZero())
			_, err = alice.PeerInfo(alice.ID())
			require.ErrorIs(t, err, ps.ErrNotFound)

			// Confirm: a wrong number changes nothing; the right one, typed
			// with any spacing, verifies.
			digits := bob.SafetyNumber(alice.ID()).Digits()
			wrong := []byte(digits)
			if wrong[0] == '9' {
				wrong[0] = '0'
			} else {
				wrong[0]++
			}
			for _, bad := range []string{string(wrong), "", digits[:len(digits)-1], digits + "1", bob.SafetyNumber(alice.ID()).Words()} {
				require.ErrorIs(t, alice.ConfirmPeer(bob.ID(), bad), ErrSafetyNumberMismatch, "%q", bad)
			}
			pi, err = alice.PeerInfo(bob.ID())
			require.NoError(t, err)
			require.Equal(t, ps.TrustFirstUse, pi.Trust)
			require.NoError(t, alice.ConfirmPeer(bob.ID(), " "+strings.ReplaceAll(digits, " ", "\t")+"\n"))
			pi, err = alice.PeerInfo(bob.ID())
			require.NoError(t, err)
			require.Equal(t, ps.TrustVerified, pi.Trust)
			require.ErrorIs(t, alice.ConfirmPeer(newNode(t).ID(), digits), ps.ErrNotFound)

			// Revoke: back to first-use; once only.
			require.NoError(t, alice.RevokePeer(bob.ID()))
			pi, err = alice.PeerInfo(bob.ID())
			require.NoError(t, err)
			require.Equal(t, ps.TrustFirstUse, pi.Trust)
			require.ErrorIs(t, alice.RevokePeer(bob.ID()), ErrNotVerified)

			// A message, so that there is message state to forget.
			inbox, stopInbox := bob.Messages(0)
			defer stopInbox()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, alice.Send(ctx, bob.ID(), []byte("hi")))
			<-inbox
			alice.mu.Lock()
			require.NotNil(t, alice.kept[bob.ID()], "a stream kept for the next exchange")
			alice.mu.Unlock()

			// Forget: everything of Bob goes, Carol stays.
			require.NoError(t, alice.ConfirmPeer(bob.ID(), digits))
			res, err := alice.Forget(bob.ID())
			require.NoError(t, err)
			require.Equal(t, ForgetResult{Record: true, Trust: ps.TrustVerified, Sessions: 1}, res)
			_, err = alice.PeerInfo(bob.ID())
			require.ErrorIs(t, err, ps.ErrNotFound)
			_, err = alice.ActiveKey(bob.ID())
			require.ErrorIs(t, err, ps.ErrNotFound)
			require.ErrorIs(t, alice.Send(ctx, bob.ID(), []byte("hi")), ErrNoKey)
			alice.mu.Lock()
			require.Nil(t, alice.kept[bob.ID()], "kept stream")
			alice.mu.Unlock()
			alice.records.mu.Lock()
			require.NotContains(t, alice.records.m, bob.ID(), "parsed record")
			alice.records.mu.Unlock()
			alice.msg.mu.Lock()
			require.NotContains(t, alice.msg.send, bob.ID(), "message keys")
			alice.msg.mu.Unlock()
			peers, err = alice.Peers()
			require.NoError(t, err)
			require.Len(t, peers, 1)
			require.Equal(t, carol.ID(), peers[0].ID)
			res, err = alice.Forget(bob.ID())
			require.NoError(t, err)
			require.Equal(t, ForgetResult{}, res)

			// Bob again: a first contact, at an epoch past Bob's.
			info2, evs, err := exchangeEvents(t, alice, bob.ID())
			require.NoError(t, err)
			require.Len(t, evs, 1)
			require.Equal(t, KeyFirstContact, evs[0].Change)
			require.Greater(t, info2.Epoch, info.Epoch)
			requireSameKey(t, alice, bob, info2.Epoch)

			require.NoError(t, alice.Close())
			_, err = alice.Forget(bob.ID())
			require.ErrorIs(t, err, ErrClosed)
		})
	}
}

// TestRequirePQ: with WithRequirePQ a node offers, holds and accepts only
// post-quantum suites.
func TestRequirePQ(t *testing.T) {
	_, err := New(context.Background(), WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
		WithRequirePQ(true), WithSuites(protocol.SuiteX25519))
	require.ErrorContains(t, err, "post-quantum")
	// The order of the options does not matter.
	_, err = New(context.Background(), WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
		WithSuites(protocol.SuiteX25519), WithRequirePQ(true))
	require.ErrorContains(t, err, "post-quantum")

	// A store whose exchange key covers a classical suite: rotated at start.
	store := ps.NewMemory()
	old := newNode(t, WithStore(store))
	require.Len(t, old.ExchangeKey().Keys, 2)
	oldSeq := old.ExchangeKey().Seq
	require.NoError(t, old.Close())
	pq := newNode(t, WithStore(store), WithRequirePQ(true))
	rec := pq.ExchangeKey()
	require.Greater(t, rec.Seq, oldSeq)
	require.Len(t, rec.Keys, 1)
	require.NotNil(t, rec.Keys[protocol.SuiteMLKEM768X25519])

	classical := newNode(t, WithSuites(protocol.SuiteX25519))
	def := newNode(t)
	introduce(pq, classical)
	introduce(classical, pq)
	introduce(pq, def)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = pq.Exchange(ctx, classical.ID())
	require.ErrorContains(t, err, "no common suite", "offered")
	_, err = classical.Exchange(ctx, pq.ID())
	require.Error(t, err, "accepted")
	_, err = pq.ActiveKey(classical.ID())
	require.ErrorIs(t, err, ps.ErrNotFound)

	info := exchange(t, pq, def)
	require.Equal(t, protocol.SuiteMLKEM768X25519, info.Suite)
	require.Equal(t, protocol.SuiteMLKEM768X25519, info.Trust[0].Suite)
}
