package protocol

import (
	"fmt"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// chunkData returns how many bytes of an item fit in one notice.
func chunkData(noticeSize int) int { return noticeSize - chunkOverhead }

// chunking returns how many bytes each chunk of an item of size bytes
// carries (the last one the rest) and how many chunks there are, when each
// must fit a notice of noticeSize.
func chunking(size, noticeSize int) (per, count int) {
	per = chunkData(noticeSize)
	return per, (size + per - 1) / per
}

// reassembly collects the chunks of one item, in order, within bounds.
type reassembly struct {
	max   int    // largest item accepted
	count uint32 // 0 until the first chunk
	next  uint32
	data  []byte
	buf   *[]byte // the pooled buffer (pool.go) data lives in, or nil
}

// check validates c as the next chunk without changing r. It returns the
// whole item when c is the last chunk, else nil.
func (r *reassembly) check(c *pb.Chunk) ([]byte, error) {
	switch {
	case c.Count == 0 || c.Count > MaxChunks:
		return nil, fmt.Errorf("%w: %d chunks, limit %d", ErrChunk, c.Count, MaxChunks)
	case r.count != 0 && c.Count != r.count:
		return nil, fmt.Errorf("%w: chunk count changed from %d to %d", ErrChunk, r.count, c.Count)
	case c.Index >= c.Count:
		return nil, fmt.Errorf("%w: chunk %d of %d", ErrChunk, c.Index, c.Count)
	case c.Index != r.next:
		return nil, fmt.Errorf("%w: chunk %d, expected %d", ErrChunk, c.Index, r.next)
	case len(c.Data) == 0:
		return nil, fmt.Errorf("%w: empty chunk", ErrChunk)
	case len(r.data)+len(c.Data) > r.max:
		return nil, fmt.Errorf("%w: item larger than %d bytes", ErrChunk, r.max)
	}
	if c.Index+1 < c.Count {
		return nil, nil
	}
	if c.Count == 1 {
		// The whole item is in c: add, if the chunk is accepted, copies it.
		return c.Data, nil
	}
	if len(c.Data) <= cap(r.data)-len(r.data) {
		// The item is built in the room add made for it: r.data keeps its
		// length, so r is unchanged, and add, if the chunk is accepted,
		// appends the same bytes in the same place.
		return append(r.data, c.Data...), nil
	}
	item := make([]byte, 0, len(r.data)+len(c.Data))
	return append(append(item, r.data...), c.Data...), nil
}

// add appends a chunk that check accepted. The first chunk makes room for
// the whole item: every chunk but the last is as long as the first (split),
// so Count times its length is enough, within the item's bound. The room is
// a pooled buffer (pool.go) when it fits one; release returns it.
func (r *reassembly) add(c *pb.Chunk) {
	if r.data == nil {
		if n := min(r.max, int(c.Count)*len(c.Data)); n <= pooledBuf {
			r.buf = getBuf()
			r.data = (*r.buf)[:0]
		} else {
			r.data = make([]byte, 0, n)
		}
	}
	r.count = c.Count
	r.next++
	r.data = append(r.data, c.Data...)
}

// release drops the data collected so far, returning its pooled buffer:
// once the machine is done with the item (or has failed). Neither the data
// nor an item check returned may be used afterwards; count and next remain,
// so done still reports completion. Releasing again does nothing.
func (r *reassembly) release() {
	putBuf(r.buf)
	r.buf, r.data = nil, nil
}

// done reports whether the last chunk was added.
func (r *reassembly) done() bool { return r.count != 0 && r.next == r.count }
