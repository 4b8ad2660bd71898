package protocol

import (
	"crypto/hpke"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// forgeKey signs a record of p with exactly these times and no bound
// checked, as a misbehaving peer (or protocoltest.ForgeExchangeKey) would.
func forgeKey(t testing.TB, p *party, seq uint64, created, expires time.Time) *ExchangeKey {
	t.Helper()
	kem, err := SuiteX25519.KEM()
	require.NoError(t, err)
	sk, err := kem.GenerateKey()
	require.NoError(t, err)
	k, err := sealRecord(p.sk, KeyRecord{Peer: p.id, Seq: seq, Created: created, Expires: expires},
		map[Suite]hpke.PrivateKey{SuiteX25519: sk})
	require.NoError(t, err)
	return k
}

// TestParsePeerRecordBounds backs rules V37, V38, V50 and V51: a record's
// lifetime is not empty and at most MaxRecordLifetime, its creation is not
// in the future beyond MaxClockSkew, and it has not expired.
func TestParsePeerRecordBounds(t *testing.T) {
	p := newParty(t)
	now := time.Unix(1767225600, 0)
	day := 24 * time.Hour
	for _, c := range []struct {
		name             string
		created, expires time.Time
		ok               bool
		inErr            string
	}{
		{"default lifetime", now.Add(-day), now.Add(-day + DefaultRecordLifetime), true, ""},
		{"exactly MaxRecordLifetime", now.Add(-day), now.Add(-day + MaxRecordLifetime), true, ""},
		{"one second over MaxRecordLifetime", now.Add(-day), now.Add(-day + MaxRecordLifetime + time.Second), false, "more than"},
		{"ten years", now.Add(-day), now.Add(10 * 365 * day), false, "more than"},
		// Within the clock skew and not yet expired: only the lifetime
		// check can refuse these.
		{"expires when created", now.Add(5 * time.Minute), now.Add(5 * time.Minute), false, "not after its creation"},
		{"expires before created", now.Add(5 * time.Minute), now.Add(time.Minute), false, "not after its creation"},
		{"one second of lifetime", now, now.Add(time.Second), true, ""},
		{"created at the skew limit", now.Add(MaxClockSkew), now.Add(MaxClockSkew + time.Hour), true, ""},
		{"created beyond the skew limit", now.Add(MaxClockSkew + time.Second), now.Add(MaxClockSkew + time.Hour), false, "future"},
		{"expired", now.Add(-2 * time.Hour), now.Add(-time.Hour), false, "expired"},
		{"expires now", now.Add(-2 * time.Hour), now, false, "expired"},
		// time.Unix wraps at the int64 extremes; whatever they become, the
		// record is refused.
		{"extremes of the wire's range", time.Unix(math.MinInt64, 0), time.Unix(math.MaxInt64, 0), false, ""},
		{"created at the start of the wire's range", time.Unix(math.MinInt64, 0), now.Add(time.Hour), false, ""},
		{"created at the end of the wire's range", time.Unix(math.MaxInt64, 0), now.Add(time.Hour), false, ""},
		{"created a year ago, valid ten more", now.Add(-365 * day), now.Add(10 * 365 * day), false, "more than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := forgeKey(t, p, 1, c.created, c.expires)
			rec, err := ParsePeerRecord(k.Envelope, p.id, now)
			if c.ok {
				require.NoError(t, err)
				require.Equal(t, c.created.Unix(), rec.Created.Unix())
				require.Equal(t, c.expires.Unix(), rec.Expires.Unix())
				return
			}
			require.ErrorIs(t, err, ErrBadRecord)
			require.ErrorContains(t, err, c.inErr)
		})
	}
}

// TestNewExchangeKeyLifetime: a node cannot make a record its peers would
// refuse for its lifetime.
func TestNewExchangeKeyLifetime(t *testing.T) {
	p := newParty(t)
	now := time.Unix(1767225600, 0) // a whole second: nothing is lost to truncation
	for _, bad := range []time.Duration{0, -time.Hour, MaxRecordLifetime + time.Second, 100 * 365 * 24 * time.Hour, 500 * time.Millisecond} {
		_, err := NewExchangeKey(p.sk, DefaultSuites(), 1, now, bad)
		require.Error(t, err, "lifetime %v", bad)
	}
	for _, good := range []time.Duration{time.Second, time.Hour, DefaultRecordLifetime, MaxRecordLifetime} {
		k, err := NewExchangeKey(p.sk, DefaultSuites(), 1, now, good)
		require.NoError(t, err, "lifetime %v", good)
		_, err = ParsePeerRecord(k.Envelope, p.id, now)
		require.NoError(t, err, "a record of lifetime %v must parse", good)
	}
	// Created mid-second: the record's times are whole seconds and its
	// lifetime still within the bound.
	k, err := NewExchangeKey(p.sk, DefaultSuites(), 1, now.Add(999*time.Millisecond), MaxRecordLifetime)
	require.NoError(t, err)
	require.LessOrEqual(t, k.Expires.Sub(k.Created), MaxRecordLifetime)
	_, err = ParsePeerRecord(k.Envelope, p.id, now.Add(time.Second))
	require.NoError(t, err)
}

// TestExchangeRefusesUnboundedRecord: a peer whose record is valid for ten
// years is refused in phase 2 (ErrBadRecord, KEY_REJECTED) before the trust
// policy sees it, and nothing is held of it.
func TestExchangeRefusesUnboundedRecord(t *testing.T) {
	a, b := newParty(t), newParty(t)
	now := time.Now()
	b.key = forgeKey(t, b, 1, now.Add(-time.Minute), now.Add(10*365*24*time.Hour))
	ma, mb := pair(t, a, b, nil, nil, func(c *Config) {
		c.Suites = []Suite{SuiteX25519}
		if c.Role == Initiator {
			c.Accept = func(_ peer.ID, _, _ *PeerRecord) error {
				t.Error("the trust policy saw an out-of-bounds record")
				return nil
			}
		}
	})
	_, errA, _ := pump(t, ma, mb, nil)
	require.ErrorIs(t, errA, ErrBadRecord)
	require.ErrorContains(t, errA, "more than")
	require.Equal(t, pb.Status_KEY_REJECTED, StatusOf(errA))
	require.Nil(t, ma.Result())
	require.False(t, mb.Done())
}
