package protocol

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// relRec is a record as RelateRecords sees it: sequence number, creation
// time and fingerprint (name stands for distinct envelopes).
func relRec(name string, seq uint64, created time.Time) *PeerRecord {
	r := &PeerRecord{Fingerprint: FingerprintOf([]byte(name))}
	r.Seq, r.Created = seq, created
	return r
}

// TestRelateRecords backs the ordering of a peer's records
// (docs/PROTOCOL.md section 8, rule V40): by creation time, then sequence
// number, with MaxSeqJump the largest step forward.
func TestRelateRecords(t *testing.T) {
	t0 := time.Unix(1767225600, 0)
	held := relRec("held", 10, t0)
	later, earlier := t0.Add(time.Hour), t0.Add(-time.Second)
	for _, c := range []struct {
		name     string
		held     *PeerRecord
		rec      *PeerRecord
		want     RecordRelation
		inReason string
	}{
		{"nothing held", nil, relRec("r", 1, t0), RecordFirst, ""},
		{"the held record", held, relRec("held", 10, t0), RecordSame, ""},
		{"rotation in the same second", held, relRec("r", 11, t0), RecordRotation, ""},
		{"rotation later", held, relRec("r", 11, later), RecordRotation, ""},
		{"rotation by exactly MaxSeqJump", held, relRec("r", 10+MaxSeqJump, later), RecordRotation, ""},
		{"seq jump one beyond MaxSeqJump", held, relRec("r", 10+MaxSeqJump+1, later), RecordRollback, "jumps more than"},
		{"seq jump to the end of the range", held, relRec("r", math.MaxUint64, later), RecordRollback, "jumps more than"},
		{"seq jump beyond the bound in the same second", held, relRec("r", 10+MaxSeqJump+1, t0), RecordRollback, "jumps more than"},
		{"reset: lower seq, created later", held, relRec("r", 1, later), RecordReset, "store was reset"},
		{"reset: equal seq, created later", held, relRec("r", 10, later), RecordReset, "store was reset"},
		{"reset one second later", held, relRec("r", 9, t0.Add(time.Second)), RecordReset, "store was reset"},
		{"rollback: lower seq, created earlier", held, relRec("r", 9, earlier), RecordRollback, "before the held"},
		{"rollback: higher seq, created earlier", held, relRec("r", 11, earlier), RecordRollback, "before the held"},
		{"rollback: lower seq, same second", held, relRec("r", 9, t0), RecordRollback, "same time"},
		{"rollback: equal seq, same second, other record", held, relRec("r", 10, t0), RecordRollback, "same time"},
		{"reset below a held seq at the end of the range", relRec("h", math.MaxUint64, t0), relRec("r", 1, later), RecordReset, "store was reset"},
		{"nothing above a held seq at the end of the range", relRec("h", math.MaxUint64, t0), relRec("r", math.MaxUint64, t0), RecordRollback, "same time"},
		{"rotation from seq 0", relRec("h", 0, t0), relRec("r", MaxSeqJump, t0), RecordRotation, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, reason := RelateRecords(c.held, c.rec)
			require.Equal(t, c.want, got, "reason %q", reason)
			if c.inReason == "" {
				require.Empty(t, reason)
			} else {
				require.Contains(t, reason, c.inReason)
			}
		})
	}
	for r := RecordFirst; r <= RecordRollback; r++ {
		require.NotEqual(t, "unknown", r.String())
	}
	require.Equal(t, "unknown", RecordRelation(0).String())
}

// relParty makes p's current exchange key one of sequence seq created at
// created, valid for lifetime.
func relParty(t *testing.T, p *party, seq uint64, created time.Time, lifetime time.Duration) *PeerRecord {
	t.Helper()
	k, err := NewExchangeKey(p.sk, DefaultSuites(), seq, created, lifetime)
	require.NoError(t, err)
	p.key = k
	return p.record()
}

// TestRecordOrderInExchange backs rule V40 in the machine: a received
// record that rolls back is refused with ErrRollback whatever the trust
// policy says, also against a held record that expired; a reset goes to
// the policy, which decides.
func TestRecordOrderInExchange(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clock := func(c *Config) { c.Now = func() time.Time { return now } }
	type call struct{ known, received *PeerRecord }

	run := func(t *testing.T, a, b *party, held *PeerRecord, refuse error) (calls []call, errA error) {
		t.Helper()
		ma, mb := pair(t, a, b, held, nil, func(c *Config) {
			clock(c)
			if c.Role != Initiator {
				return // b receives a's record on first contact: not under test
			}
			c.Accept = func(_ peer.ID, known, rec *PeerRecord) error {
				calls = append(calls, call{known, rec})
				return refuse
			}
		})
		_, errA, errB := pump(t, ma, mb, nil)
		if errA == nil {
			require.NoError(t, errB)
			require.True(t, ma.Done())
		} else {
			require.Nil(t, ma.Result())
		}
		return calls, errA
	}

	t.Run("reset-goes-to-the-policy", func(t *testing.T) {
		a, b := newParty(t), newParty(t)
		held := relParty(t, b, 7, now.Add(-time.Hour), DefaultRecordLifetime)
		cur := relParty(t, b, 1, now, DefaultRecordLifetime) // b lost its store
		calls, err := run(t, a, b, held, nil)
		require.NoError(t, err)
		require.Len(t, calls, 1)
		require.Same(t, held, calls[0].known)
		require.True(t, calls[0].received.Fingerprint.Equal(cur.Fingerprint))

		errNo := fmt.Errorf("policy says no")
		calls, err = run(t, a, b, held, errNo)
		require.ErrorIs(t, err, ErrKeyRejected)
		require.ErrorIs(t, err, errNo)
		require.NotErrorIs(t, err, ErrRollback)
		require.Len(t, calls, 1)
	})

	for _, c := range []struct {
		name              string
		heldSeq, recSeq   uint64
		heldAt, recAt     time.Time
		heldLife, recLife time.Duration
	}{
		// An old record of b (seq 3, an hour old) replayed to a that
		// holds seq 4.
		{"replayed-older-record", 4, 3, now.Add(-time.Minute), now.Add(-time.Hour), DefaultRecordLifetime, DefaultRecordLifetime},
		// A record with a higher seq but created before the held one.
		{"higher-seq-created-earlier", 4, 5, now, now.Add(-time.Hour), DefaultRecordLifetime, DefaultRecordLifetime},
		// Another record with the held seq, signed the same second.
		{"equal-seq-same-second", 4, 4, now, now, DefaultRecordLifetime, DefaultRecordLifetime},
		{"seq-jump-beyond-MaxSeqJump", 4, 4 + MaxSeqJump + 1, now.Add(-time.Hour), now, DefaultRecordLifetime, DefaultRecordLifetime},
		// The held record (seq 3, created 40 days ago) expired ten days
		// ago; b's older record of seq 2 (created 50 days ago, valid 60)
		// is still valid, and still older than the held one.
		{"older-than-an-expired-held-record", 3, 2, now.Add(-40 * 24 * time.Hour), now.Add(-50 * 24 * time.Hour), 30 * 24 * time.Hour, MaxRecordLifetime},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := newParty(t), newParty(t)
			held := relParty(t, b, c.heldSeq, c.heldAt, c.heldLife)
			relParty(t, b, c.recSeq, c.recAt, c.recLife)
			calls, err := run(t, a, b, held, nil) // a policy that accepts everything
			require.ErrorIs(t, err, ErrRollback)
			require.Equal(t, pb.Status_KEY_REJECTED, StatusOf(err))
			require.Empty(t, calls, "the trust policy must not see a rollback")
		})
	}

	t.Run("seq-jump-of-exactly-MaxSeqJump", func(t *testing.T) {
		a, b := newParty(t), newParty(t)
		held := relParty(t, b, 4, now.Add(-time.Hour), DefaultRecordLifetime)
		relParty(t, b, 4+MaxSeqJump, now, DefaultRecordLifetime)
		calls, err := run(t, a, b, held, nil)
		require.NoError(t, err)
		require.Len(t, calls, 1)
	})

	t.Run("expired-held-record-is-not-offered-but-orders", func(t *testing.T) {
		a, b := newParty(t), newParty(t)
		held := relParty(t, b, 3, now.Add(-40*24*time.Hour), 30*24*time.Hour)
		relParty(t, b, 4, now, DefaultRecordLifetime)
		ma, mb := pair(t, a, b, held, nil, clock)
		require.Nil(t, ma.cfg.Known, "an expired record is not offered")
		require.Same(t, held, ma.held)
		var known *PeerRecord
		ma.cfg.Accept = func(_ peer.ID, k, _ *PeerRecord) error { known = k; return nil }
		_, errA, errB := pump(t, ma, mb, nil)
		require.NoError(t, errA)
		require.NoError(t, errB)
		require.Same(t, held, known, "the policy sees the held record, expired or not")
		require.True(t, ma.Result().ResponderKeySent)
	})
}

// TestRecordOrderReasons: the error of a refused rollback says why, in
// terms a user can check against the records.
func TestRecordOrderReasons(t *testing.T) {
	t0 := time.Unix(1767225600, 0)
	_, reason := RelateRecords(relRec("h", 3, t0), relRec("r", 1, t0.Add(-time.Hour)))
	require.True(t, strings.Contains(reason, "sequence 1") && strings.Contains(reason, "held sequence 3"), reason)
}
