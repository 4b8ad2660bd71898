package protocol

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// The four phase-2 combinations: which side already holds the other's
// current record.
var combos = []struct {
	name                 string
	aKnowsB, bKnowsA     bool
	wantISent, wantRSent bool
}{
	{"no-keys", false, false, true, true},
	{"only-alice-known", false, true, false, true},
	{"only-bob-known", true, false, true, false},
	{"both-known", true, true, false, false},
}

func TestMachineAllCombinations(t *testing.T) {
	sizes := []int{MinNoticeSize, 200, 512, DefaultNoticeSize, 4096, MaxNoticeSize}
	for _, suite := range DefaultSuites() {
		a, b := newParty(t), newParty(t)
		for _, c := range combos {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("%v/%s/%d", suite, c.name, size), func(t *testing.T) {
					var kb, ka *PeerRecord
					if c.aKnowsB {
						kb = b.record()
					}
					if c.bKnowsA {
						ka = a.record()
					}
					ma, mb := pair(t, a, b, kb, ka, func(cfg *Config) {
						cfg.Suites = []Suite{suite}
						cfg.NoticeSize = size
					})
					log, errA, errB := pump(t, ma, mb, nil)
					require.NoError(t, errA)
					require.NoError(t, errB)
					require.True(t, ma.Done())
					require.True(t, mb.Done())
					ra, rb := ma.Result(), mb.Result()
					require.Equal(t, ra.Key, rb.Key)
					require.Equal(t, ra.KeyID, rb.KeyID)
					require.NotEqual(t, [KeySize]byte{}, ra.Key)
					require.Equal(t, suite, ra.Suite)
					require.Equal(t, size, ra.NoticeSize)
					require.Equal(t, c.wantISent, ra.InitiatorKeySent)
					require.Equal(t, c.wantRSent, ra.ResponderKeySent)
					require.Equal(t, ra.InitiatorKeySent, rb.InitiatorKeySent)
					require.Equal(t, ra.ResponderKeySent, rb.ResponderKeySent)
					require.Equal(t, c.wantRSent, ra.Received)
					require.Equal(t, c.wantISent, rb.Received)
					require.Equal(t, b.key.Fingerprint, ra.PeerRecord.Fingerprint)
					require.Equal(t, a.key.Fingerprint, rb.PeerRecord.Fingerprint)
					// Every notice fits the negotiated size; KEY travels only when needed.
					keys := map[Role]int{}
					for _, w := range log {
						require.LessOrEqual(t, len(w.frame.Bytes), size, "%v", w.frame.Type)
						if w.frame.Type == pb.Notice_KEY {
							keys[w.from]++
						}
					}
					require.Equal(t, c.wantISent, keys[Initiator] > 0)
					require.Equal(t, c.wantRSent, keys[Responder] > 0)
				})
			}
		}
	}
}

func TestPhase1NoticesFitMinimumSize(t *testing.T) {
	a, b := newParty(t), newParty(t)
	ma, mb := pair(t, a, b, b.record(), a.record(), func(c *Config) { c.NoticeSize = MaxNoticeSize; c.Epoch = MaxEpoch })
	log, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	for _, w := range log[:3] {
		require.LessOrEqual(t, len(w.frame.Bytes), MinNoticeSize, "%v", w.frame.Type)
	}
}

func TestEpochIsTheLargerProposal(t *testing.T) {
	a, b := newParty(t), newParty(t)
	ma, mb := pair(t, a, b, nil, nil, nil)
	mb.cfg.Epoch = 7
	_, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.EqualValues(t, 7, ma.Result().Epoch)
	require.EqualValues(t, 7, mb.Result().Epoch)
}

func TestSessionsDiffer(t *testing.T) {
	a, b := newParty(t), newParty(t)
	seen := map[[KeySize]byte]bool{}
	for i := 0; i < 5; i++ {
		ma, mb := pair(t, a, b, b.record(), a.record(), nil)
		_, errA, errB := pump(t, ma, mb, nil)
		require.NoError(t, errA)
		require.NoError(t, errB)
		k := ma.Result().Key
		require.False(t, seen[k])
		seen[k] = true
	}
}

func TestRotationSendsOnlyRotatedKey(t *testing.T) {
	a, b := newParty(t), newParty(t)
	old := b.record()
	b.rotate(t)
	ma, mb := pair(t, a, b, old, a.record(), nil)
	_, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	r := ma.Result()
	require.False(t, r.InitiatorKeySent)
	require.True(t, r.ResponderKeySent)
	require.True(t, r.Received)
	require.EqualValues(t, 2, r.PeerRecord.Seq)
}

func TestExpiredRecords(t *testing.T) {
	a, b := newParty(t), newParty(t)
	// A held record of the peer that has expired counts as missing: the
	// fingerprint is not sent and phase 2 fetches the current record.
	later := func() time.Time { return time.Now().Add(DefaultRecordLifetime / 2) }
	stale, err := NewExchangeKey(b.sk, DefaultSuites(), 1, time.Now().Add(-DefaultRecordLifetime), DefaultRecordLifetime/4)
	require.NoError(t, err)
	b.key = stale
	old := b.record()
	b.rotate(t) // current record, seq 2, valid now
	ma, mb := pair(t, a, b, old, a.record(), func(c *Config) { c.Now = nil })
	require.Nil(t, ma.cfg.Known, "expired held record must be dropped")
	_, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.True(t, ma.Result().ResponderKeySent)

	// An expired own record is refused: the node must rotate first.
	_, err = NewMachine(Config{Role: Initiator, Identity: a.sk, Remote: b.id, Own: a.key, Epoch: 1, Now: func() time.Time { return later().Add(DefaultRecordLifetime) }})
	require.ErrorContains(t, err, "expired")
}
