package protocol

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/multiformats/go-varint"
	"github.com/stretchr/testify/require"
)

// prefixOnlyReader returns its bytes (a length prefix) and then fails the
// test if it is read again: a frame whose length is refused must not have
// its body read.
type prefixOnlyReader struct {
	t    *testing.T
	data []byte
}

func (r *prefixOnlyReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.t.Errorf("the frame body was read after its length %x", p)
		return 0, errors.New("read past the length prefix")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func frameLen(n uint64) []byte { return varint.ToUvarint(n) }

func TestFrameReaderExactLimit(t *testing.T) {
	for _, limit := range []int{1, 127, 128, 129, 16383, 16384, MaxNoticeSize} {
		body := bytes.Repeat([]byte{0xa5}, limit)
		in := append(frameLen(uint64(limit)), body...)
		r := bytes.NewReader(in)
		got, err := NewFrameReader(r).ReadFrame(limit)
		require.NoError(t, err, "limit %d", limit)
		require.Equal(t, body, got)
		require.Zero(t, r.Len())
	}
}

func TestFrameReaderOverLimitRefusedBeforeBody(t *testing.T) {
	for _, limit := range []int{0, 1, 127, 128, MinNoticeSize, DefaultNoticeSize, MaxNoticeSize} {
		r := &prefixOnlyReader{t: t, data: frameLen(uint64(limit) + 1)}
		_, err := NewFrameReader(r).ReadFrame(limit)
		require.ErrorIs(t, err, ErrFrameTooLarge, "limit %d", limit)
		require.Empty(t, r.data, "the whole prefix is read")
	}
}

// TestFrameReaderOverLimitAllocatesNothing reads a frame whose length is
// 2^40 with a limit just below: if the body were allocated before the check,
// the test would allocate a terabyte.
func TestFrameReaderOverLimitAllocatesNothing(t *testing.T) {
	const n = 1 << 40
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := &prefixOnlyReader{t: t, data: frameLen(n)}
	_, err := NewFrameReader(r).ReadFrame(n - 1)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, ErrFrameTooLarge)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20))
}

func TestFrameReaderHugeLengths(t *testing.T) {
	for _, c := range []struct {
		name string
		pre  []byte
		want error
	}{
		{"2^62", frameLen(1 << 62), ErrFrameTooLarge},
		{"2^63-1", frameLen(1<<63 - 1), ErrFrameTooLarge},
		// 2^63 needs a tenth byte (or a ninth with its high bit set):
		// beyond the 63 bits a length may have.
		{"2^63", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, ErrMalformed},
		{"nine-bytes-high-bit", bytes.Repeat([]byte{0xff}, 9), ErrMalformed},
		{"2^64-1", frameLen(1<<64 - 1), ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			pre := c.pre
			if c.want == ErrMalformed {
				pre = pre[:min(len(pre), varint.MaxLenUvarint63)]
			}
			r := &prefixOnlyReader{t: t, data: pre}
			_, err := NewFrameReader(r).ReadFrame(MaxNoticeSize)
			require.ErrorIs(t, err, c.want)
		})
	}
}

func TestFrameReaderNonMinimalLength(t *testing.T) {
	for _, pre := range [][]byte{
		{0x80, 0x00},             // 0 in two bytes
		{0x81, 0x00},             // 1 in two bytes
		{0xff, 0x80, 0x00},       // 127 in three bytes
		{0x80, 0x81, 0x80, 0x00}, // 128 in four bytes
	} {
		in := append(bytes.Clone(pre), bytes.Repeat([]byte{1}, 200)...)
		_, err := NewFrameReader(bytes.NewReader(in)).ReadFrame(MaxNoticeSize)
		require.ErrorIs(t, err, ErrMalformed, "%x", pre)
	}
}

func TestFrameReaderZeroLength(t *testing.T) {
	r := bytes.NewReader([]byte{0x00, 0x01, 0x02})
	_, err := NewFrameReader(r).ReadFrame(MaxNoticeSize)
	require.ErrorIs(t, err, ErrMalformed)
	require.Equal(t, 2, r.Len(), "nothing after the empty frame was read")
}

func TestFrameReaderTruncated(t *testing.T) {
	for _, in := range [][]byte{
		{0x05, 0x01, 0x02}, // body cut short
		{0x05},             // body missing
		{0x80},             // length cut short
		{0x80, 0x80},       // length cut short
		append(frameLen(300), make([]byte, 299)...),
	} {
		_, err := NewFrameReader(bytes.NewReader(in)).ReadFrame(MaxNoticeSize)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "%x", in)
		require.False(t, errors.Is(err, io.EOF), "a truncated frame is not a clean end")
	}
}

func TestFrameReaderCleanEOF(t *testing.T) {
	_, err := NewFrameReader(bytes.NewReader(nil)).ReadFrame(MaxNoticeSize)
	require.Equal(t, io.EOF, err)

	in := AppendFrame(AppendFrame(nil, []byte("one")), []byte("two"))
	fr := NewFrameReader(bytes.NewReader(in))
	for _, want := range []string{"one", "two"} {
		got, err := fr.ReadFrame(MaxNoticeSize)
		require.NoError(t, err)
		require.Equal(t, want, string(got))
	}
	_, err = fr.ReadFrame(MaxNoticeSize)
	require.Equal(t, io.EOF, err)
}

// TestFrameReaderLimitPerFrame: the limit may change between frames, as the
// notice size is negotiated, and no byte beyond the current frame is read.
func TestFrameReaderLimitPerFrame(t *testing.T) {
	in := AppendFrame(nil, make([]byte, 200))
	in = AppendFrame(in, make([]byte, 200))
	in = append(in, 0xee)
	r := bytes.NewReader(in)
	fr := NewFrameReader(r)
	_, err := fr.ReadFrame(200)
	require.NoError(t, err)
	require.Equal(t, 202+1, r.Len())
	_, err = fr.ReadFrame(199)
	require.ErrorIs(t, err, ErrFrameTooLarge)
	require.Equal(t, 200+1, r.Len(), "only the prefix of the refused frame was read")
}

// countingWriter records every Write.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestWriteFramesRoundTrip(t *testing.T) {
	sizes := []int{1, 2, 127, 128, 129, 16383, 16384, 16385, MaxNoticeSize, 1 << 20}
	var msgs [][]byte
	for i, n := range sizes {
		msgs = append(msgs, bytes.Repeat([]byte{byte(i + 1)}, n))
	}
	var w countingWriter
	require.NoError(t, WriteFrames(&w, msgs))
	require.Equal(t, 1, w.writes, "frames produced together leave in one Write")

	var manual []byte
	for _, m := range msgs {
		manual = AppendFrame(manual, m)
	}
	require.Equal(t, manual, w.Bytes())

	fr := NewFrameReader(bytes.NewReader(w.Bytes()))
	for _, m := range msgs {
		got, err := fr.ReadFrame(len(m))
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := fr.ReadFrame(MaxNoticeSize)
	require.Equal(t, io.EOF, err)

	var none countingWriter
	require.NoError(t, WriteFrames(&none, nil))
	require.Zero(t, none.writes)
}

func TestWriteFramesError(t *testing.T) {
	err := WriteFrames(failingWriter{}, [][]byte{{1}})
	require.ErrorIs(t, err, io.ErrClosedPipe)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// FuzzFrameReader reads frames from arbitrary bytes with an arbitrary limit.
// It checks that ReadFrame never panics, returns only frames within the
// limit, reads nothing beyond the frame it returns (or beyond the prefix of
// a frame it refuses), fails only with the documented errors, and that the
// frames read re-encode to exactly the bytes consumed (the prefix encoding
// is canonical).
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{}, uint32(128))
	f.Add([]byte{0x00}, uint32(128))
	f.Add([]byte{0x01, 0xaa}, uint32(1))
	f.Add([]byte{0x02, 0xaa}, uint32(1))
	f.Add([]byte{0x80, 0x00}, uint32(128))
	f.Add([]byte{0x80, 0x01}, uint32(128))
	f.Add(append([]byte{0x80, 0x01}, make([]byte, 128)...), uint32(128))
	f.Add(append([]byte{0x81, 0x01}, make([]byte, 129)...), uint32(128))
	f.Add(bytes.Repeat([]byte{0xff}, 10), uint32(MaxNoticeSize))
	f.Add(append(bytes.Repeat([]byte{0xff}, 8), 0x7f), uint32(MaxNoticeSize))
	f.Add(AppendFrame(AppendFrame(nil, []byte("first")), []byte("second")), uint32(6))
	f.Add(AppendFrame(AppendFrame(nil, []byte("first")), []byte("second")), uint32(5))
	f.Add([]byte{0x05, 0x01}, uint32(128))
	f.Fuzz(func(t *testing.T, data []byte, limit uint32) {
		max := int(limit % (2*MaxNoticeSize + 1))
		r := bytes.NewReader(data)
		fr := NewFrameReader(r)
		var reencoded []byte
		for {
			pos := len(data) - r.Len()
			frame, err := fr.ReadFrame(max)
			consumed := len(data) - r.Len() - pos
			if err != nil {
				n, plen, verr := varint.FromUvarint(data[pos:])
				switch {
				case err == io.EOF:
					require.Equal(t, len(data), pos, "io.EOF only between frames")
				case errors.Is(err, io.ErrUnexpectedEOF):
					require.True(t, errors.Is(verr, varint.ErrUnderflow) || (verr == nil && uint64(len(data)-pos-plen) < n), "truncated, but not")
				case errors.Is(err, ErrFrameTooLarge):
					require.NoError(t, verr)
					require.Greater(t, n, uint64(max))
					require.Equal(t, plen, consumed, "only the prefix of a refused frame is read")
				case errors.Is(err, ErrMalformed):
					require.True(t, verr != nil || n == 0, "malformed, but the prefix is fine: %v", err)
				default:
					t.Fatalf("undocumented error: %v", err)
				}
				break
			}
			require.NotEmpty(t, frame)
			require.LessOrEqual(t, len(frame), max)
			before := len(reencoded)
			reencoded = AppendFrame(reencoded, frame)
			require.Equal(t, len(reencoded)-before, consumed, "read beyond the frame")
		}
		require.True(t, bytes.Equal(data[:len(reencoded)], reencoded), "frames do not re-encode to the bytes read")
	})
}
