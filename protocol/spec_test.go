package protocol

// Tests that back statements of docs/PROTOCOL.md not covered by the
// exchange, vector and misbehaving-peer tests: framing, notice sizes, the
// status of every error, negotiation, ABORT, and that nothing is final
// before the peer's confirmation verifies.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// specFailReader fails the test if more than n bytes are read from it.
type specFailReader struct {
	t *testing.T
	r io.Reader
	n int
}

func (f *specFailReader) Read(p []byte) (int, error) {
	k, err := f.r.Read(p)
	f.n -= k
	if f.n < 0 {
		f.t.Fatalf("read %d bytes past the length prefix", -f.n)
	}
	return k, err
}

// TestSpecFraming backs "Framing": minimal uvarint, the limit checked
// before the body is read or allocated, no empty frames, and no reading
// ahead of the current frame.
func TestSpecFraming(t *testing.T) {
	cases := []struct {
		name   string
		in     []byte
		prefix int // bytes of length prefix that may be read
		limit  int
		want   error
	}{
		{"minimal", []byte{0x02, 0xaa, 0xbb}, 3, 128, nil},
		{"two-byte-length", append([]byte{0x80, 0x01}, make([]byte, 128)...), 130, 128, nil},
		{"non-minimal", []byte{0x82, 0x00, 0xaa, 0xbb}, 2, 128, ErrMalformed},
		{"over-63-bits", bytes.Repeat([]byte{0xff}, 10), 9, 128, ErrMalformed},
		{"empty", []byte{0x00}, 1, 128, ErrMalformed},
		{"one-over-limit", append([]byte{0x81, 0x01}, make([]byte, 129)...), 2, 128, ErrFrameTooLarge},
		// 2^40 bytes: must fail on the length alone, without allocating.
		{"huge", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x20}, 6, MaxNoticeSize, ErrFrameTooLarge},
		{"truncated-body", []byte{0x05, 0xaa}, 2, 128, io.ErrUnexpectedEOF},
		{"truncated-length", []byte{0x80}, 1, 128, io.ErrUnexpectedEOF},
		{"end-between-frames", nil, 0, 128, io.EOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fr := NewFrameReader(&specFailReader{t: t, r: bytes.NewReader(c.in), n: c.prefix})
			got, err := fr.ReadFrame(c.limit)
			if c.want == nil {
				require.NoError(t, err)
				k := len(c.in) - len(got)
				require.Equal(t, c.in[k:], got)
				require.Equal(t, c.in, AppendFrame(nil, got), "AppendFrame writes the minimal prefix")
				return
			}
			require.ErrorIs(t, err, c.want)
			require.Equal(t, c.want == io.EOF, errors.Is(err, io.EOF))
		})
	}
	t.Run("no-read-ahead", func(t *testing.T) {
		var stream []byte
		stream = AppendFrame(stream, []byte("first"))
		stream = AppendFrame(stream, []byte("second"))
		stream = append(stream, "after the exchange"...)
		r := bytes.NewReader(stream)
		fr := NewFrameReader(r)
		for _, want := range []string{"first", "second"} {
			got, err := fr.ReadFrame(128)
			require.NoError(t, err)
			require.Equal(t, want, string(got))
		}
		rest, err := io.ReadAll(r)
		require.NoError(t, err)
		require.Equal(t, "after the exchange", string(rest))
	})
}

func specMarshal(t *testing.T, n *pb.Notice) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(n)
	require.NoError(t, err)
	return b
}

// TestSpecNoticeSizes backs the size statements of "Framing" and
// "Chunking": phase-1 notices, receipts and ABORT fit 128 bytes at their
// largest field values, and a chunk of notice_size - 24 bytes always fits.
func TestSpecNoticeSizes(t *testing.T) {
	fp := FingerprintOf([]byte("x"))
	full := func(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }
	start := func(suites ...uint32) *pb.Notice {
		return &pb.Notice{Type: pb.Notice_START, Start: &pb.Start{Version: Version, Suites: suites,
			Nonce: full(NonceSize), KeyFingerprint: fp[:], Commitment: full(CommitmentSize),
			NoticeSize: MaxNoticeSize, Epoch: MaxEpoch}}
	}
	sizes := map[string]int{
		"START (both suites)": len(specMarshal(t, start(1, 2))),
		"START (4 suites)":    len(specMarshal(t, start(1, 2, 3, 4))),
		"CONTINUE": len(specMarshal(t, &pb.Notice{Type: pb.Notice_CONTINUE, Continue: &pb.Continue{
			Nonce: full(NonceSize), Suite: 0xffff, KeyMatched: true, KeyFingerprint: fp[:],
			Commitment: full(CommitmentSize), NoticeSize: MaxNoticeSize, Epoch: MaxEpoch}})),
		"NEXT":          len(specMarshal(t, &pb.Notice{Type: pb.Notice_NEXT, Next: &pb.Next{KeyMatched: true}})),
		"KEY_RECEIVED":  len(specMarshal(t, &pb.Notice{Type: pb.Notice_KEY_RECEIVED, KeyReceived: &pb.KeyReceived{Fingerprint: fp[:]}})),
		"PART_RECEIVED": len(specMarshal(t, &pb.Notice{Type: pb.Notice_PART_RECEIVED, PartReceived: &pb.PartReceived{Mac: full(MACSize)}})),
		"ABORT":         len(specMarshal(t, &pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_INTERNAL_ERROR}})),
	}
	for name, n := range sizes {
		require.LessOrEqual(t, n, MinNoticeSize, name)
	}
	require.Equal(t, 126, sizes["START (both suites)"])
	require.Equal(t, 126, sizes["CONTINUE"])
	require.Greater(t, len(specMarshal(t, start(1, 2, 3, 4, 5))), MinNoticeSize, "a fifth suite no longer fits")

	for _, size := range []int{MinNoticeSize, DefaultNoticeSize, MaxNoticeSize} {
		for _, typ := range []pb.Notice_Type{pb.Notice_KEY, pb.Notice_PART} {
			n := &pb.Notice{Type: typ, Chunk: &pb.Chunk{Index: MaxChunks - 1, Count: MaxChunks, Data: full(size - 24)}}
			require.LessOrEqual(t, len(specMarshal(t, n)), size, "%v at %d", typ, size)
		}
	}
	// The bounds on items allow every item in at most MaxChunks chunks.
	require.LessOrEqual(t, (MaxRecordSize+MinNoticeSize-24-1)/(MinNoticeSize-24), MaxChunks)
	require.LessOrEqual(t, (MaxSealedPartSize+MinNoticeSize-24-1)/(MinNoticeSize-24), MaxChunks)
}

// TestSpecStatusCodes backs the table of "Status codes".
func TestSpecStatusCodes(t *testing.T) {
	for err, want := range map[error]pb.Status{
		ErrUnexpected:    pb.Status_PROTOCOL_ERROR,
		ErrMalformed:     pb.Status_PROTOCOL_ERROR,
		ErrFrameTooLarge: pb.Status_PROTOCOL_ERROR,
		ErrChunk:         pb.Status_PROTOCOL_ERROR,
		ErrFingerprint:   pb.Status_PROTOCOL_ERROR,
		ErrVersion:       pb.Status_UNSUPPORTED_VERSION,
		ErrNoCommonSuite: pb.Status_NO_COMMON_SUITE,
		ErrMissingKey:    pb.Status_NO_COMMON_SUITE,
		ErrNoticeSize:    pb.Status_BAD_NOTICE_SIZE,
		ErrDowngrade:     pb.Status_SUITE_DOWNGRADE,
		ErrBadRecord:     pb.Status_KEY_REJECTED,
		ErrWrongSigner:   pb.Status_KEY_REJECTED,
		ErrRollback:      pb.Status_KEY_REJECTED,
		ErrKeyRejected:   pb.Status_KEY_REJECTED,
		ErrBadSignature:  pb.Status_BAD_SIGNATURE,
		ErrDecrypt:       pb.Status_DECRYPT_FAILED,
		ErrCommitment:    pb.Status_BAD_COMMITMENT,
		ErrConfirmation:  pb.Status_BAD_CONFIRMATION,
		ErrBusy:          pb.Status_BUSY,
		ErrConflict:      pb.Status_CONFLICT,
		ErrTimeout:       pb.Status_TIMEOUT,
		io.ErrClosedPipe: pb.Status_INTERNAL_ERROR,
	} {
		require.Equal(t, want, StatusOf(fmt.Errorf("context: %w", err)), "%v", err)
	}
}

// TestSpecNegotiation backs "Negotiation": the responder takes the first
// offered suite it supports (the initiator's preference wins), the notice
// size is the smaller of both, the epoch the larger.
func TestSpecNegotiation(t *testing.T) {
	a, b := newParty(t), newParty(t)
	ma, mb := pair(t, a, b, nil, nil, nil)
	ma.cfg.Suites = []Suite{SuiteX25519, SuiteMLKEM768X25519}
	mb.cfg.Suites = []Suite{SuiteMLKEM768X25519, SuiteX25519}
	ma.cfg.NoticeSize, mb.cfg.NoticeSize = 300, 512
	ma.cfg.Epoch, mb.cfg.Epoch = 9, 4
	_, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	for _, m := range []*Machine{ma, mb} {
		r := m.Result()
		require.Equal(t, SuiteX25519, r.Suite)
		require.Equal(t, 300, r.NoticeSize)
		require.EqualValues(t, 9, r.Epoch)
	}

	ma, mb = pair(t, a, b, nil, nil, nil)
	ma.cfg.NoticeSize, mb.cfg.NoticeSize = 512, 200
	_, errA, errB = pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.Equal(t, 200, ma.Result().NoticeSize)

	// No common suite: the responder aborts with NO_COMMON_SUITE.
	ma, mb = pair(t, a, b, nil, nil, nil)
	ma.cfg.Suites = []Suite{SuiteMLKEM768X25519}
	mb.cfg.Suites = []Suite{SuiteX25519}
	start, err := ma.Start()
	require.NoError(t, err)
	_, err = mb.Consume(start[0].Bytes)
	require.ErrorIs(t, err, ErrNoCommonSuite)
	abort := mb.Fail(err)
	require.NotNil(t, abort)
	_, err = ma.Consume(abort.Bytes)
	var ae *AbortError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, pb.Status_NO_COMMON_SUITE, ae.Status)
}

// TestSpecAbort backs "ABORT and stream reset": ABORT ends the machine in
// any phase, is not answered, and leaves no result.
func TestSpecAbort(t *testing.T) {
	a, b := newParty(t), newParty(t)
	abort := specMarshal(t, &pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_CONFLICT}})
	for _, at := range []pb.Notice_Type{pb.Notice_START, pb.Notice_CONTINUE, pb.Notice_NEXT, pb.Notice_KEY,
		pb.Notice_KEY_RECEIVED, pb.Notice_PART, pb.Notice_PART_RECEIVED} {
		t.Run(at.String(), func(t *testing.T) {
			ma, mb := pair(t, a, b, nil, nil, nil)
			var victim *Machine
			_, errA, errB := pump(t, ma, mb, func(i int, w wire) []byte {
				if w.frame.Type == at && victim == nil {
					victim = map[Role]*Machine{Initiator: mb, Responder: ma}[w.from]
					return abort
				}
				return w.frame.Bytes
			})
			require.NotNil(t, victim)
			err := map[*Machine]error{ma: errA, mb: errB}[victim]
			require.ErrorIs(t, err, ErrConflict)
			var ae *AbortError
			require.ErrorAs(t, err, &ae)
			require.Nil(t, victim.Fail(err), "ABORT is not answered")
			require.Nil(t, victim.Result())
			require.False(t, victim.Done())
		})
	}
}

// TestSpecInstallOnlyAfterConfirmation backs "Storage": a side that has
// derived the key but not verified the peer's PART_RECEIVED has no result,
// and a wrong MAC leaves none.
func TestSpecInstallOnlyAfterConfirmation(t *testing.T) {
	a, b := newParty(t), newParty(t)
	ma, mb := pair(t, a, b, b.record(), a.record(), nil)
	_, errA, errB := pump(t, ma, mb, func(i int, w wire) []byte {
		if w.frame.Type == pb.Notice_PART_RECEIVED && w.from == Responder {
			return nil // lost
		}
		return w.frame.Bytes
	})
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.True(t, mb.Done(), "the responder verified the initiator's confirmation")
	require.False(t, ma.Done())
	require.Nil(t, ma.Result(), "no key before the peer's confirmation verifies")

	ma, mb = pair(t, a, b, b.record(), a.record(), nil)
	_, errA, _ = pump(t, ma, mb, func(i int, w wire) []byte {
		if w.frame.Type == pb.Notice_PART_RECEIVED && w.from == Responder {
			bad := bytes.Clone(w.frame.Bytes)
			bad[len(bad)-1] ^= 1
			return bad
		}
		return w.frame.Bytes
	})
	require.ErrorIs(t, errA, ErrConfirmation)
	require.Nil(t, ma.Result())
	require.Equal(t, pb.Status_BAD_CONFIRMATION, StatusOf(errA))
}
