package protocol

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// chunkTestNoticeSizes spans 128..65536 with the sizes where varint lengths
// and chunk counts change.
var chunkTestNoticeSizes = []int{
	MinNoticeSize, MinNoticeSize + 1, MinNoticeSize + 2, 150, 151, 152, 200, 255, 256, 257,
	300, 511, 512, 513, 1000, 1023, DefaultNoticeSize, 1025, 2048, 4095, 4096, 4097,
	8192, 8215, 8216, 8217, 16383, 16384, 16385, 16407, 16408, 16409, 32768,
	MaxNoticeSize - 1, MaxNoticeSize,
}

// itemSizesAround returns 1 and every size within one byte of a multiple of
// the chunk data size, up to limit.
func itemSizesAround(per, limit int) []int {
	sizes := []int{1, 2}
	for k := 1; k*per-1 <= limit; k++ {
		for _, n := range []int{k*per - 1, k * per, k*per + 1} {
			if n > 2 && n <= limit {
				sizes = append(sizes, n)
			}
		}
	}
	return sizes
}

func TestSplitReassembleRoundTrip(t *testing.T) {
	for _, size := range chunkTestNoticeSizes {
		per := chunkData(size)
		limit := max(MaxRecordSize, 2*per+1)
		for _, n := range itemSizesAround(per, limit) {
			item := make([]byte, n)
			for i := range item {
				item[i] = byte(i*7 + n)
			}
			chunks := split(item, size)
			want := (n + per - 1) / per
			require.Len(t, chunks, want, "notice %d, item %d", size, n)
			if n <= MaxRecordSize {
				require.LessOrEqual(t, len(chunks), MaxChunks, "a record fits MaxChunks at notice %d", size)
			}
			for i, c := range chunks {
				require.EqualValues(t, i, c.Index)
				require.EqualValues(t, want, c.Count)
				require.NotEmpty(t, c.Data)
				require.LessOrEqual(t, len(c.Data), per)
				for _, typ := range []pb.Notice_Type{pb.Notice_KEY, pb.Notice_PART} {
					b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.Notice{Type: typ, Chunk: c})
					require.NoError(t, err)
					require.LessOrEqual(t, len(b), size, "%v chunk %d/%d of a %d-byte item at notice %d", typ, i, want, n, size)
				}
			}
			if len(chunks) > MaxChunks {
				continue
			}
			// Reassembly with the item's exact size as its bound accepts it...
			r := reassembly{max: n}
			for i, c := range chunks {
				got, err := r.check(c)
				require.NoError(t, err)
				if i < len(chunks)-1 {
					require.Nil(t, got)
				} else {
					require.Equal(t, item, got)
				}
				r.add(c)
			}
			require.True(t, r.done())
			// ...and with one byte less refuses it.
			r = reassembly{max: n - 1}
			var err error
			for _, c := range chunks {
				if _, err = r.check(c); err != nil {
					break
				}
				r.add(c)
			}
			require.ErrorIs(t, err, ErrChunk)
		}
	}
}

// TestChunkOverheadWorstCase checks the bound behind chunkData: a chunk with
// the largest index and count a notice may carry and a full data field fits
// every notice size.
func TestChunkOverheadWorstCase(t *testing.T) {
	var sizes []int
	for size := MinNoticeSize; size <= MaxNoticeSize; size++ {
		// Every size where a length varint may grow (up to 2048 and around
		// 2^14), the top of the range, and a stride through the rest.
		if size <= 2048 || (size >= 1<<14-64 && size <= 1<<14+64) || size >= MaxNoticeSize-256 || size%97 == 0 {
			sizes = append(sizes, size)
		}
	}
	for _, size := range sizes {
		c := &pb.Chunk{Index: MaxChunks - 1, Count: MaxChunks, Data: make([]byte, chunkData(size))}
		b, err := proto.Marshal(&pb.Notice{Type: pb.Notice_PART, Chunk: c})
		require.NoError(t, err)
		if len(b) > size {
			t.Fatalf("notice size %d: a full chunk notice is %d bytes", size, len(b))
		}
	}
}

// TestReassemblyRefusals covers each refusal of reassembly.check, and that
// check never changes the reassembly.
func TestReassemblyRefusals(t *testing.T) {
	two := func(i uint32) *pb.Chunk { return &pb.Chunk{Index: i, Count: 2, Data: []byte{1, 2, 3}} }
	cases := []struct {
		name  string
		max   int
		first []*pb.Chunk // accepted first
		bad   *pb.Chunk
	}{
		{"zero-count", 100, nil, &pb.Chunk{Index: 0, Count: 0, Data: []byte{1}}},
		{"too-many-chunks", 1000, nil, &pb.Chunk{Index: 0, Count: MaxChunks + 1, Data: []byte{1}}},
		{"count-2^32-1", 1000, nil, &pb.Chunk{Index: 0, Count: 1<<32 - 1, Data: []byte{1}}},
		{"count-changed", 100, []*pb.Chunk{two(0)}, &pb.Chunk{Index: 1, Count: 3, Data: []byte{1}}},
		{"first-not-zero", 100, nil, two(1)},
		{"skipped", 100, []*pb.Chunk{{Index: 0, Count: 3, Data: []byte{1}}}, &pb.Chunk{Index: 2, Count: 3, Data: []byte{1}}},
		{"repeated", 100, []*pb.Chunk{two(0)}, two(0)},
		{"empty", 100, nil, &pb.Chunk{Index: 0, Count: 2}},
		{"empty-last", 100, []*pb.Chunk{two(0)}, &pb.Chunk{Index: 1, Count: 2}},
		{"over-bound", 5, []*pb.Chunk{two(0)}, two(1)},
		{"over-bound-in-one", 2, nil, &pb.Chunk{Index: 0, Count: 1, Data: []byte{1, 2, 3}}},
		{"after-the-last", 100, []*pb.Chunk{two(0), two(1)}, two(2)},
		{"index-past-count", 100, []*pb.Chunk{two(0), two(1)}, &pb.Chunk{Index: 2, Count: 2, Data: []byte{1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := reassembly{max: c.max}
			for _, ch := range c.first {
				_, err := r.check(ch)
				require.NoError(t, err)
				r.add(ch)
			}
			before := snapAsm(&r)
			got, err := r.check(c.bad)
			require.ErrorIs(t, err, ErrChunk)
			require.Nil(t, got)
			require.Equal(t, before, snapAsm(&r))
		})
	}
}

// FuzzReassembly feeds arbitrary chunk sequences to a reassembly, as the
// machine does: a refused chunk is dropped and the next one tried. The
// reassembly must never panic, never change on a refusal, never hold or
// return more than its bound, never accept more than MaxChunks chunks or
// anything after the last, and must return exactly the accepted data.
//
// Input: a bound selector byte, then records of index (1 byte, 0xff meaning
// 2^32-1), count (1 byte, 0xff meaning 2^32-1, 0xfe meaning MaxChunks+1),
// and data length (2 bytes, big endian, modulo 2*MaxRecordSize).
func FuzzReassembly(f *testing.F) {
	rec := func(index, count byte, n uint16) []byte {
		return binary.BigEndian.AppendUint16([]byte{index, count}, n)
	}
	f.Add([]byte{0})
	f.Add(append([]byte{0}, rec(0, 1, 10)...))
	f.Add(append(append([]byte{1}, rec(0, 2, 4096)...), rec(1, 2, 1)...))
	f.Add(append(append([]byte{0}, rec(0, 2, 10)...), rec(0, 2, 10)...))
	f.Add(append(append(append([]byte{0}, rec(0, 1, 10)...), rec(1, 1, 10)...), rec(1, 2, 10)...))
	f.Add(append([]byte{0}, rec(0, 0xfe, 1)...))
	f.Add(append([]byte{0}, rec(0xff, 0xff, 1)...))
	f.Add(append([]byte{1}, rec(0, 1, MaxSealedPartSize+1)...))
	f.Add(append([]byte{0}, rec(0, 1, 0)...))
	var full []byte
	full = append(full, 2)
	for i := 0; i <= MaxChunks; i++ {
		full = append(full, rec(byte(i), MaxChunks, 1)...)
	}
	f.Add(full)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		bound := []int{MaxRecordSize, MaxSealedPartSize, MaxChunks + 1, 1}[int(data[0])%4]
		data = data[1:]
		r := reassembly{max: bound}
		var accepted []byte
		chunks := 0
		complete := false
		for i := 0; len(data) >= 4; i++ {
			c := &pb.Chunk{Index: uint32(data[0]), Count: uint32(data[1])}
			if data[0] == 0xff {
				c.Index = 1<<32 - 1
			}
			switch data[1] {
			case 0xff:
				c.Count = 1<<32 - 1
			case 0xfe:
				c.Count = MaxChunks + 1
			}
			c.Data = bytes.Repeat([]byte{byte(i)}, int(binary.BigEndian.Uint16(data[2:4]))%(2*MaxRecordSize))
			data = data[4:]

			before := snapAsm(&r)
			item, err := r.check(c)
			if err != nil {
				require.ErrorIs(t, err, ErrChunk)
				require.Nil(t, item)
				require.Equal(t, before, snapAsm(&r), "check changed the reassembly")
				continue
			}
			require.False(t, complete, "chunk accepted after the last one")
			require.NotEmpty(t, c.Data)
			require.Less(t, c.Index, c.Count)
			require.LessOrEqual(t, c.Count, uint32(MaxChunks))
			require.EqualValues(t, chunks, c.Index, "chunks accepted out of order")
			r.add(c)
			chunks++
			accepted = append(accepted, c.Data...)
			require.LessOrEqual(t, chunks, MaxChunks)
			require.LessOrEqual(t, len(r.data), bound)
			require.Equal(t, accepted, r.data)
			if item != nil {
				require.Equal(t, accepted, item)
				require.LessOrEqual(t, len(item), bound)
				require.True(t, r.done())
				complete = true
			} else {
				require.False(t, r.done())
			}
		}
	})
}

// split cuts item into chunks that each fit a notice of noticeSize, as the
// machine cuts an item it sends (Machine.sendChunks, chunking).
func split(item []byte, noticeSize int) []*pb.Chunk {
	per, count := chunking(len(item), noticeSize)
	chunks := make([]*pb.Chunk, 0, count)
	for i := 0; i < count; i++ {
		end := min((i+1)*per, len(item))
		chunks = append(chunks, &pb.Chunk{Index: uint32(i), Count: uint32(count), Data: item[i*per : end]})
	}
	return chunks
}
