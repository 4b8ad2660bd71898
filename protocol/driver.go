package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Stream is what Run needs of a stream. network.Stream has it, and so has
// net.Conn, which tests use.
type Stream interface {
	io.Reader
	io.Writer
	SetDeadline(time.Time) error
}

// abortWriteTimeout bounds the best-effort write of ABORT after a failure.
const abortWriteTimeout = time.Second

// Run drives m over s until the exchange finishes or fails: it sends START
// (initiator), then reads one frame at a time, feeds it to the machine and
// writes what the machine answers. Every phase gets phaseTimeout (default
// DefaultPhaseTimeout); cancelling ctx ends the exchange at once. On failure
// Run writes ABORT (best effort) and returns the error; the caller resets
// the stream and installs nothing. On success the caller stores the result
// and then closes the stream.
func Run(ctx context.Context, s Stream, m *Machine, phaseTimeout time.Duration) (*Result, error) {
	if phaseTimeout <= 0 {
		phaseTimeout = DefaultPhaseTimeout
	}
	if err := ctx.Err(); err != nil {
		m.Fail(err)
		return nil, err
	}
	growStack()
	stop := context.AfterFunc(ctx, func() { _ = s.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	fail := func(err error) (*Result, error) {
		if ae := AbortFromReset(err); ae != nil {
			err = ae
		}
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%v: %w", m.Phase(), cerr)
		} else if isTimeout(err) {
			err = fmt.Errorf("%w: %v", ErrTimeout, m.Phase())
		}
		if f := m.Fail(err); f != nil && ctx.Err() == nil {
			_ = s.SetDeadline(time.Now().Add(abortWriteTimeout))
			_ = WriteFrames(s, [][]byte{f.Bytes})
		}
		return nil, err
	}

	var out []Frame
	var err error
	if m.Role() == Initiator {
		if out, err = m.Start(); err != nil {
			return fail(err)
		}
	}
	phase := PhaseNone
	fr := NewFrameReader(s)
	for {
		// The machine is done only after consuming the peer's
		// PART_RECEIVED, which it answers with nothing: no deadline for it.
		if p := m.Phase(); p != phase && p != PhaseDone {
			phase = p
			_ = s.SetDeadline(time.Now().Add(phaseTimeout))
		}
		if len(out) > 0 {
			if err := checkPhase1Sizes(out); err != nil {
				return fail(err)
			}
			err := writeFrames(s, out, func(f Frame) []byte { return f.Bytes })
			releaseFrames(out) // written (or failed): nothing keeps them
			if err != nil {
				return fail(err)
			}
		}
		if m.Done() {
			return m.Result(), nil
		}
		// A cancellation while the machine ran may have set its deadline
		// before the phase deadline above replaced it.
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		// Into a pooled buffer: Consume keeps nothing of the frame it is
		// given (it hashes the bytes and decodes copies of what it keeps).
		frame, buf, err := fr.readFrame(m.MaxFrame(), true)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: stream closed in %v", io.ErrUnexpectedEOF, m.Phase())
			}
			return fail(err)
		}
		out, err = m.Consume(frame)
		putBuf(buf)
		if err != nil {
			return fail(err)
		}
	}
}

// checkPhase1Sizes refuses to send a START, CONTINUE or NEXT larger than
// MinNoticeSize: the peer reads START under its own notice size, which may
// be 128, and a receiver may reject a larger phase-1 notice under rule V2
// whatever its encoding (docs/PROTOCOL.md section 3). The Go machine's
// notices are within it (TestPhase1NoticesFitMinimumSize); this keeps a
// future suite list or field from breaking the rule unnoticed.
func checkPhase1Sizes(out []Frame) error {
	for _, f := range out {
		switch f.Type {
		case pb.Notice_START, pb.Notice_CONTINUE, pb.Notice_NEXT:
			if len(f.Bytes) > MinNoticeSize {
				return fmt.Errorf("own %v notice is %d bytes, more than the %d every phase-1 notice must fit", f.Type, len(f.Bytes), MinNoticeSize)
			}
		}
	}
	return nil
}

// stackReserve is the stack Run makes room for before the exchange starts:
// what the deepest cryptography of an exchange (ML-KEM encapsulation inside
// HPKE, below the machine and the driver) needs, with some margin.
const stackReserve = 16 << 10

// growStack grows the calling goroutine's stack in one step, by calling a
// function with a stackReserve frame, so that the cryptography does not
// grow it step by step later. Every exchange runs on a new goroutine (the
// initiator's from Exchange, the responder's from libp2p's stream handler),
// whose stack starts small; growing it in the middle of the cryptography
// copies (and adjusts) every frame above, once per doubling, which took
// about 3 % of the CPU of an exchange under load. Here the stack is shallow
// and the copy cheap. The price is memory: the goroutine holds a 32 KiB
// stack for the exchange, about 6 KB more per exchange in flight
// (docs/PERFORMANCE.md); 8 KiB saved less CPU and cost nearly as much.
//
//go:noinline
func growStack() byte {
	var pad [stackReserve]byte
	return touchStack(pad[:])
}

//go:noinline
func touchStack(b []byte) byte { return b[len(b)-1] }

// GrowStack grows the calling goroutine's stack at once to what an exchange
// needs, as Run does before it starts. A caller that does other deep work
// on the goroutine before Run (the node's stream handler reads the store
// for admission; its initiator opens the stream) calls it first: the stack
// then grows once, while it is shallow, instead of growing in that work
// and being copied again, deeper, by Run.
func GrowStack() { growStack() }

// AbortCodeBase is the base of the stream reset error codes of the
// protocol. A side that gives up writes ABORT and then resets the stream
// with AbortCodeBase + status, because the reset may overtake the ABORT
// frame at the peer (yamux drops unread data on reset).
const AbortCodeBase network.StreamErrorCode = 0x7e0000

// ResetCode is the reset error code that carries err's status.
func ResetCode(err error) network.StreamErrorCode {
	return AbortCodeBase + network.StreamErrorCode(StatusOf(err))
}

// AbortFromReset turns a reset by the peer that carries a status into the
// AbortError the ABORT frame would have produced; nil for any other error.
// Run applies it to every error of the stream; a caller applies it to the
// errors it meets outside Run (a reset during protocol negotiation).
func AbortFromReset(err error) *AbortError {
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode > AbortCodeBase && se.ErrorCode <= AbortCodeBase+0xff {
		return &AbortError{Status: pb.Status(se.ErrorCode - AbortCodeBase)}
	}
	return nil
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Reservation is the memory an exchange reserves with the
// resource manager: both items at their bounds and two notices.
func Reservation(noticeSize int) int {
	return MaxRecordSize + MaxSealedPartSize + 2*noticeSize
}

// PrepareStream opens a stream of the exchange the way every handler of the
// protocol must, in both roles: it attaches the stream to ServiceName, then
// reserves for its first exchange (ReserveExchange). Run sets the phase
// deadline before it reads. On error the caller resets the stream. release
// returns the reservation.
func PrepareStream(s network.Stream, noticeSize int) (release func(), err error) {
	if err := AttachStream(s); err != nil {
		return nil, err
	}
	return ReserveExchange(s, noticeSize)
}

// AttachStream attaches a stream of the exchange to ServiceName, whose
// limits then apply to it (the first step of PrepareStream).
func AttachStream(s network.Stream) error {
	if err := s.Scope().SetService(ServiceName); err != nil {
		return fmt.Errorf("attach to service %s: %w", ServiceName, err)
	}
	return nil
}

// ReserveExchange reserves memory for an exchange on a stream attached to
// ServiceName (PrepareStream). A stream that carries several exchanges
// (section 2 of docs/PROTOCOL.md) reserves for each, and holds nothing
// between them. release returns the reservation.
func ReserveExchange(s network.Stream, noticeSize int) (release func(), err error) {
	size := Reservation(noticeSize)
	if err := s.Scope().ReserveMemory(size, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("reserve %d bytes: %w", size, err)
	}
	return func() { s.Scope().ReleaseMemory(size) }, nil
}
