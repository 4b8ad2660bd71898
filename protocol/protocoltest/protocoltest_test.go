package protocoltest_test

import (
	"context"
	"crypto/rand"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
	"github.com/p2pkex/p2pkex/protocol/protocoltest"
)

const testTimeout = 20 * time.Second

// newHost starts a libp2p host on loopback TCP.
func newHost(t *testing.T) (host.Host, crypto.PrivKey) {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h, sk
}

func exchangeKey(t *testing.T, sk crypto.PrivKey, suites ...protocol.Suite) *protocol.ExchangeKey {
	t.Helper()
	k, err := protocol.NewExchangeKey(sk, suites, 1, time.Now(), protocol.DefaultRecordLifetime)
	require.NoError(t, err)
	return k
}

// initiate runs an honest initiator on h against the peer of h2, the way a
// node does (protocol.PrepareStream, protocol.NewMachine, protocol.Run),
// offering suites.
func initiate(t *testing.T, h host.Host, sk crypto.PrivKey, to host.Host, suites ...protocol.Suite) (*protocol.Result, error) {
	t.Helper()
	h.Peerstore().AddAddrs(to.ID(), to.Addrs(), peerstore.TempAddrTTL)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, to.ID(), protocol.ID)
	require.NoError(t, err)
	release, err := protocol.PrepareStream(s, protocol.DefaultNoticeSize)
	require.NoError(t, err)
	defer release()
	m, err := protocol.NewMachine(protocol.Config{
		Role:      protocol.Initiator,
		Identity:  sk,
		Remote:    to.ID(),
		RemoteKey: s.Conn().RemotePublicKey(),
		Own:       exchangeKey(t, sk, protocol.DefaultSuites()...),
		Suites:    suites,
		Epoch:     1,
	})
	require.NoError(t, err)
	res, err := protocol.Run(ctx, s, m, 0)
	if err != nil {
		_ = s.ResetWithError(protocol.ResetCode(err))
		return nil, err
	}
	require.NoError(t, s.Close())
	return res, nil
}

func TestServeDowngradingResponder(t *testing.T) {
	rh, rsk := newHost(t)
	stop := protocoltest.ServeDowngradingResponder(rh, rsk, exchangeKey(t, rsk, protocol.DefaultSuites()...))
	defer stop()
	ih, isk := newHost(t)

	// The default offer, hybrid first: the responder takes X25519.
	res, err := initiate(t, ih, isk, rh)
	require.ErrorIs(t, err, protocol.ErrDowngrade)
	require.Equal(t, pb.Status_SUITE_DOWNGRADE, protocol.StatusOf(err))
	require.Nil(t, res)

	// X25519 preferred: the responder takes the hybrid suite, still not
	// what the initiator asked for.
	_, err = initiate(t, ih, isk, rh, protocol.SuiteX25519, protocol.SuiteMLKEM768X25519)
	require.ErrorIs(t, err, protocol.ErrDowngrade)

	// With one suite offered there is nothing to downgrade to: the
	// responder is otherwise honest and the exchange completes.
	res, err = initiate(t, ih, isk, rh, protocol.SuiteMLKEM768X25519)
	require.NoError(t, err)
	require.Equal(t, protocol.SuiteMLKEM768X25519, res.Suite)
	res.Wipe()

	// After stop, nothing answers.
	stop()
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// (The protocol is negotiated lazily: the first read fails.)
	s, err := ih.NewStream(ctx, rh.ID(), protocol.ID)
	if err == nil {
		_, err = s.Read(make([]byte, 1))
		_ = s.Reset()
	}
	require.Error(t, err)
}

// serveHonest answers one exchange on h as an honest responder with key.
func serveHonest(t *testing.T, h host.Host, sk crypto.PrivKey, key *protocol.ExchangeKey) <-chan error {
	done := make(chan error, 1)
	h.SetStreamHandler(protocol.ID, func(s network.Stream) {
		release, err := protocol.PrepareStream(s, protocol.DefaultNoticeSize)
		if err != nil {
			done <- err
			_ = s.Reset()
			return
		}
		defer release()
		m, err := protocol.NewMachine(protocol.Config{Role: protocol.Responder, Identity: sk, Remote: s.Conn().RemotePeer(),
			RemoteKey: s.Conn().RemotePublicKey(), Own: key, Epoch: 1})
		if err != nil {
			done <- err
			_ = s.Reset()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		res, err := protocol.Run(ctx, s, m, 0)
		if err != nil {
			_ = s.ResetWithError(protocol.ResetCode(err))
		} else {
			res.Wipe()
			_ = s.Close()
		}
		done <- err
	})
	return done
}

func TestForgeExchangeKey(t *testing.T) {
	_, sk := newHost(t)
	now := time.Now()
	created, expires := now.Add(-time.Hour), now.Add(10*365*24*time.Hour)
	k, err := protocoltest.ForgeExchangeKey(sk, []protocol.Suite{protocol.SuiteX25519}, math.MaxUint64, created, expires)
	require.NoError(t, err)
	require.EqualValues(t, uint64(math.MaxUint64), k.Seq)
	require.Equal(t, created.Unix(), k.Created.Unix())
	require.Equal(t, expires.Unix(), k.Expires.Unix())
	require.Equal(t, []protocol.Suite{protocol.SuiteX25519}, k.Suites())
	// Correctly signed (the signature and signer are checked before the
	// lifetime): refused for its lifetime only.
	_, err = protocol.ParsePeerRecord(k.Envelope, k.Peer, now)
	require.ErrorIs(t, err, protocol.ErrBadRecord)
	require.ErrorContains(t, err, "more than")

	// NewExchangeKey would not make it.
	_, err = protocol.NewExchangeKey(sk, []protocol.Suite{protocol.SuiteX25519}, 1, created, expires.Sub(created))
	require.Error(t, err)

	_, err = protocoltest.ForgeExchangeKey(sk, nil, 1, created, expires)
	require.Error(t, err)
}

// TestForgedRecordRefusedOverLibp2p: an honest initiator refuses, as
// ErrBadRecord, a responder whose record is valid for ten years.
func TestForgedRecordRefusedOverLibp2p(t *testing.T) {
	rh, rsk := newHost(t)
	now := time.Now()
	k, err := protocoltest.ForgeExchangeKey(rsk, protocol.DefaultSuites(), 1, now, now.Add(10*365*24*time.Hour))
	require.NoError(t, err)
	done := serveHonest(t, rh, rsk, k)
	ih, isk := newHost(t)
	_, err = initiate(t, ih, isk, rh)
	require.ErrorIs(t, err, protocol.ErrBadRecord)
	require.Equal(t, pb.Status_KEY_REJECTED, protocol.StatusOf(err))
	select {
	case rerr := <-done:
		require.Error(t, rerr, "the responder must not complete")
	case <-time.After(testTimeout):
		t.Fatal("the responder never finished")
	}

	// Control: the same responder with a bounded record completes.
	k, err = protocoltest.ForgeExchangeKey(rsk, protocol.DefaultSuites(), 1, now, now.Add(protocol.MaxRecordLifetime))
	require.NoError(t, err)
	done = serveHonest(t, rh, rsk, k)
	res, err := initiate(t, ih, isk, rh)
	require.NoError(t, err)
	res.Wipe()
	require.NoError(t, <-done)
}
