package protocol

import (
	"errors"
	"fmt"
	"io"

	"github.com/multiformats/go-varint"
)

// A frame is an unsigned-varint length (minimal encoding, at most 63 bits)
// followed by that many bytes: one serialized pb.Notice.
//
// FrameReader does not buffer beyond the frame it returns, so the stream may
// carry other data after the exchange, and its size limit can change between
// frames as the notice size is negotiated. (go-msgio's readers fix the limit
// at construction and buffer ahead; the transcript also needs each frame's
// exact bytes, which a pbio reader would not return.)
type FrameReader struct {
	r   io.Reader
	one [1]byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// ReadByte reads one byte, for the varint decoder.
func (f *FrameReader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(f.r, f.one[:]); err != nil {
		return 0, err
	}
	return f.one[0], nil
}

// ReadFrame reads one frame of at most max bytes. The length is checked
// before anything is allocated; a longer frame fails with ErrFrameTooLarge. A
// stream that ends inside a frame fails with io.ErrUnexpectedEOF; one that
// ends between frames with io.EOF.
func (f *FrameReader) ReadFrame(max int) ([]byte, error) {
	frame, _, err := f.readFrame(max, false)
	return frame, err
}

// readFrame is ReadFrame, into a pooled buffer if pooled and the frame fits
// one; the caller then returns it with putBuf once done with the frame.
// The buffer is taken only once the length is known, so that a reader
// waiting for the next frame holds none.
func (f *FrameReader) readFrame(max int, pooled bool) ([]byte, *[]byte, error) {
	n, err := varint.ReadUvarint(f)
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return nil, nil, io.EOF
		case errors.Is(err, varint.ErrOverflow), errors.Is(err, varint.ErrNotMinimal):
			return nil, nil, fmt.Errorf("%w: frame length: %v", ErrMalformed, err)
		}
		return nil, nil, err
	}
	if n > uint64(max) {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	var bp *[]byte
	var buf []byte
	if pooled && n <= pooledBuf {
		bp = getBuf()
		buf = (*bp)[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(f.r, buf); err != nil {
		putBuf(bp)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, err
	}
	return buf, bp, nil
}

// AppendFrame appends the framing of msg to dst.
func AppendFrame(dst, msg []byte) []byte {
	var pre [varint.MaxLenUvarint63]byte
	n := varint.PutUvarint(pre[:], uint64(len(msg)))
	dst = append(dst, pre[:n]...)
	return append(dst, msg...)
}

// WriteFrames writes msgs as frames in one Write, so that notices produced
// together leave together.
func WriteFrames(w io.Writer, msgs [][]byte) error {
	return writeFrames(w, msgs, func(m []byte) []byte { return m })
}

// writeFrames writes the messages of items as frames in one Write, from a
// pooled buffer when they fit one (an io.Writer keeps nothing of what it is
// given: the buffer is free again when Write returns).
func writeFrames[T any](w io.Writer, items []T, msg func(T) []byte) error {
	if len(items) == 0 {
		return nil
	}
	size := 0
	for _, it := range items {
		size += len(msg(it)) + varint.MaxLenUvarint63
	}
	var bp *[]byte
	var buf []byte
	if size <= pooledBuf {
		bp = getBuf()
		buf = (*bp)[:0]
	} else {
		buf = make([]byte, 0, size)
	}
	for _, it := range items {
		buf = AppendFrame(buf, msg(it))
	}
	_, err := w.Write(buf)
	putBuf(bp)
	return err
}
