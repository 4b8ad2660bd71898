package protocol

import (
	"fmt"
	"time"
)

// RecordRelation says how a received exchange-key record of a peer relates
// to the record held for that peer (docs/PROTOCOL.md section 8).
//
// Records of one identity are ordered by creation time first and sequence
// number second. An honest owner only ever moves forward in that order:
// every rotation has a higher sequence number and a creation time not
// before the previous one, and an owner that lost its store starts again at
// a low sequence number but at a later creation time. A record that is
// earlier in that order than the held one can only be an old record
// replayed (or a copy of the owner's key store running elsewhere), and is
// refused under every trust policy.
type RecordRelation uint8

const (
	// RecordFirst: no record is held.
	RecordFirst RecordRelation = iota + 1
	// RecordSame: the held record itself.
	RecordSame
	// RecordRotation: a later record with a higher sequence number, created
	// no earlier than the held one (and within MaxSeqJump of it).
	RecordRotation
	// RecordReset: created after the held record, but with a sequence
	// number not above it: the owner's store was lost or reset. The trust
	// policy decides.
	RecordReset
	// RecordRollback: created before the held record, or at the same
	// second without a higher sequence number, or a sequence jump beyond
	// MaxSeqJump. Refused under every policy (ErrRollback).
	RecordRollback
)

func (r RecordRelation) String() string {
	switch r {
	case RecordFirst:
		return "first contact"
	case RecordSame:
		return "same record"
	case RecordRotation:
		return "rotation"
	case RecordReset:
		return "store reset"
	case RecordRollback:
		return "rollback"
	}
	return "unknown"
}

// RelateRecords places rec against held (nil if none) and says why, for a
// rollback or a reset, in reason.
func RelateRecords(held, rec *PeerRecord) (rel RecordRelation, reason string) {
	switch {
	case held == nil:
		return RecordFirst, ""
	case rec.Fingerprint.Equal(held.Fingerprint):
		return RecordSame, ""
	case rec.Created.Before(held.Created):
		return RecordRollback, fmt.Sprintf("sequence %d created %s, before the held sequence %d created %s",
			rec.Seq, stamp(rec.Created), held.Seq, stamp(held.Created))
	case rec.Seq > held.Seq && rec.Seq-held.Seq > MaxSeqJump:
		return RecordRollback, fmt.Sprintf("sequence %d jumps more than %d past the held %d", rec.Seq, uint64(MaxSeqJump), held.Seq)
	case rec.Seq > held.Seq:
		return RecordRotation, ""
	case rec.Created.Equal(held.Created):
		return RecordRollback, fmt.Sprintf("sequence %d after %d, created at the same time", rec.Seq, held.Seq)
	}
	return RecordReset, fmt.Sprintf("sequence %d after %d, created %s after the held record's %s: the peer's store was reset",
		rec.Seq, held.Seq, stamp(rec.Created), stamp(held.Created))
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
