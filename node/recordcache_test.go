package node

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
)

// A cached record is returned only for the fingerprint of the envelope it
// was parsed from and only while ParsePeerRecord would accept it.
func TestRecordCache(t *testing.T) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	now := time.Now()
	xk, err := protocol.NewExchangeKey(sk, []protocol.Suite{protocol.SuiteX25519}, 1, now, time.Hour)
	require.NoError(t, err)
	rec, err := protocol.ParsePeerRecord(xk.Envelope, id, now)
	require.NoError(t, err)

	var c recordCache
	fp := rec.Fingerprint[:]
	require.Nil(t, c.get(id, fp, now), "empty cache")
	c.put(rec)
	got := c.get(id, fp, now)
	require.NotNil(t, got)
	require.Equal(t, rec.Fingerprint, got.Fingerprint)

	other := append([]byte(nil), xk.Envelope...)
	other[len(other)-1] ^= 1
	otherFP := protocol.FingerprintOf(other)
	require.Nil(t, c.get(id, otherFP[:], now), "another record's fingerprint")
	require.Nil(t, c.get(id, nil, now), "no fingerprint")
	require.Nil(t, c.get(id, fp, now.Add(2*time.Hour)), "expired")
	require.Nil(t, c.get(id, fp, now.Add(-time.Hour)), "created in the future")
	_, err = protocol.ParsePeerRecord(xk.Envelope, id, now.Add(2*time.Hour))
	require.Error(t, err, "the parser agrees: expired")

	for range recordCacheSize + 10 {
		p, err := peer.Decode("12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf")
		require.NoError(t, err)
		r := *rec
		r.Peer = p + peer.ID(rand.Text())
		c.put(&r)
	}
	require.LessOrEqual(t, len(c.m), recordCacheSize)
}
