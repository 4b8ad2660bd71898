package protocol

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Errors of the exchange. Each one a peer can cause maps to the status sent
// in ABORT (see [StatusOf]); callers branch on them with errors.Is.
var (
	// ErrUnexpected: a notice of the wrong type for the current state, or a
	// notice whose body does not match its type.
	ErrUnexpected = errors.New("unexpected notice")
	// ErrMalformed: a notice that does not decode or has fields of the wrong size.
	ErrMalformed = errors.New("malformed notice")
	// ErrFrameTooLarge: a frame longer than the negotiated notice size.
	ErrFrameTooLarge = errors.New("frame larger than the notice size")
	// ErrVersion: the peer speaks another protocol version.
	ErrVersion = errors.New("unsupported protocol version")
	// ErrNoCommonSuite: no suite both sides support.
	ErrNoCommonSuite = errors.New("no common suite")
	// ErrNoticeSize: a notice size outside [MinNoticeSize, MaxNoticeSize] or
	// above what was offered.
	ErrNoticeSize = errors.New("bad notice size")
	// ErrChunk: chunks out of order, inconsistent counts, too many chunks, or
	// an item larger than its bound.
	ErrChunk = errors.New("bad chunking")
	// ErrBadRecord: an exchange-key record that does not parse, is not
	// validly signed, is expired, was created in the future, has a lifetime
	// that is empty or longer than MaxRecordLifetime, or carries no usable
	// key.
	ErrBadRecord = errors.New("bad exchange-key record")
	// ErrWrongSigner: a record signed by, or naming, a peer other than the
	// authenticated remote peer.
	ErrWrongSigner = errors.New("record signer is not the remote peer")
	// ErrRollback: a record that comes before the held one in the order of
	// a peer's records (RelateRecords: created earlier, or at the same
	// second without a higher sequence number, or a sequence jump beyond
	// MaxSeqJump). Refused whatever the trust policy says.
	ErrRollback = errors.New("exchange-key record rolled back")
	// ErrDowngrade: the responder chose a suite other than the first of the
	// initiator's offered suites that its record supports (docs/PROTOCOL.md
	// section 6). The initiator aborts with SUITE_DOWNGRADE.
	ErrDowngrade = errors.New("suite downgrade")
	// ErrKeyRejected: the trust policy refused the peer's record.
	ErrKeyRejected = errors.New("exchange key refused by trust policy")
	// ErrFingerprint: a fingerprint that is malformed or names another record.
	ErrFingerprint = errors.New("wrong fingerprint")
	// ErrBadSignature: the key part's signature does not verify under the
	// remote peer's identity key.
	ErrBadSignature = errors.New("bad signature on key part")
	// ErrDecrypt: the key part does not open with our exchange key.
	ErrDecrypt = errors.New("key part does not decrypt")
	// ErrCommitment: the key part does not match the peer's commitment.
	ErrCommitment = errors.New("key part does not match its commitment")
	// ErrConfirmation: the peer's confirmation MAC does not verify.
	ErrConfirmation = errors.New("bad key confirmation")
	// ErrTimeout: a phase did not finish within its deadline.
	ErrTimeout = errors.New("phase timed out")
	// ErrDone: the machine has already finished or failed.
	ErrDone = errors.New("exchange already finished")
	// ErrMissingKey: the node has no exchange key for the negotiated suite.
	ErrMissingKey = errors.New("no exchange key for the suite")
)

// AbortError is returned when the peer sent ABORT.
type AbortError struct {
	Status pb.Status
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("peer aborted the exchange: %s", statusText(e.Status))
}

// Is makes errors.Is(err, ErrBusy) and friends work on remote aborts.
func (e *AbortError) Is(target error) bool {
	switch target {
	case ErrBusy:
		return e.Status == pb.Status_BUSY
	case ErrConflict:
		return e.Status == pb.Status_CONFLICT
	}
	return false
}

var (
	// ErrBusy: the peer refused the exchange because of its limits.
	ErrBusy = errors.New("peer is busy")
	// ErrConflict: the peer started an exchange with us at the same moment
	// and won the tie-break; the caller should join that exchange.
	ErrConflict = errors.New("simultaneous exchange")
)

func statusText(s pb.Status) string {
	switch s {
	case pb.Status_PROTOCOL_ERROR:
		return "protocol error"
	case pb.Status_UNSUPPORTED_VERSION:
		return "unsupported version"
	case pb.Status_NO_COMMON_SUITE:
		return "no common suite"
	case pb.Status_BAD_NOTICE_SIZE:
		return "bad notice size"
	case pb.Status_KEY_REJECTED:
		return "exchange key rejected"
	case pb.Status_BAD_SIGNATURE:
		return "bad signature"
	case pb.Status_DECRYPT_FAILED:
		return "decryption failed"
	case pb.Status_BAD_COMMITMENT:
		return "commitment mismatch"
	case pb.Status_BAD_CONFIRMATION:
		return "bad confirmation"
	case pb.Status_BUSY:
		return "busy"
	case pb.Status_CONFLICT:
		return "simultaneous exchange"
	case pb.Status_TIMEOUT:
		return "timeout"
	case pb.Status_INTERNAL_ERROR:
		return "internal error"
	case pb.Status_SUITE_DOWNGRADE:
		return "suite downgrade"
	}
	return fmt.Sprintf("status %d", int32(s))
}

// StatusOf maps an error to the status an ABORT carries.
func StatusOf(err error) pb.Status {
	switch {
	case errors.Is(err, ErrVersion):
		return pb.Status_UNSUPPORTED_VERSION
	case errors.Is(err, ErrNoCommonSuite), errors.Is(err, ErrMissingKey):
		return pb.Status_NO_COMMON_SUITE
	case errors.Is(err, ErrNoticeSize):
		return pb.Status_BAD_NOTICE_SIZE
	case errors.Is(err, ErrDowngrade):
		return pb.Status_SUITE_DOWNGRADE
	case errors.Is(err, ErrBadRecord), errors.Is(err, ErrWrongSigner),
		errors.Is(err, ErrRollback), errors.Is(err, ErrKeyRejected):
		return pb.Status_KEY_REJECTED
	case errors.Is(err, ErrBadSignature):
		return pb.Status_BAD_SIGNATURE
	case errors.Is(err, ErrDecrypt):
		return pb.Status_DECRYPT_FAILED
	case errors.Is(err, ErrCommitment):
		return pb.Status_BAD_COMMITMENT
	case errors.Is(err, ErrConfirmation):
		return pb.Status_BAD_CONFIRMATION
	case errors.Is(err, ErrTimeout):
		return pb.Status_TIMEOUT
	case errors.Is(err, ErrBusy):
		return pb.Status_BUSY
	case errors.Is(err, ErrConflict):
		return pb.Status_CONFLICT
	case errors.Is(err, ErrUnexpected), errors.Is(err, ErrMalformed), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrChunk),
		errors.Is(err, ErrFingerprint):
		return pb.Status_PROTOCOL_ERROR
	}
	return pb.Status_INTERNAL_ERROR
}

// AbortNotice returns the serialized ABORT notice for err, for a node that
// refuses an exchange before running a machine (busy, conflict).
func AbortNotice(err error) ([]byte, error) {
	return proto.Marshal(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: StatusOf(err)}})
}
