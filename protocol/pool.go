package protocol

import "sync"

// Pooled buffers, for byte strings that live only within one call and that
// what they are passed to reads and does not keep:
//
//   - the frames the driver reads (Run): Consume keeps nothing of the frame
//     it is given, so the buffer is reused as soon as Consume returns;
//   - the flights the driver writes (writeFrames): an io.Writer keeps
//     nothing of what it is given;
//   - the machine's scratch: the signature input of a key part (signed or
//     verified, then dropped), the HPKE info of a part (read by the key
//     schedule), the marshalled sealed part (cut into
//     notices, which copy it), a reassembled item (parsed into copies).
//
// None of them holds a secret. 2 KiB holds each of them at the default
// notice size and suites; a need larger than that is met by a slice of its
// own (or, for append, a new one), left to the collector, and the pooled
// buffer goes back unchanged. The frames the machine returns are never
// pooled: the caller owns them.
const pooledBuf = 2 << 10

var bufs = sync.Pool{New: func() any {
	b := make([]byte, 0, pooledBuf)
	return &b
}}

// getBuf returns a pooled buffer; use it as (*b)[:0].
func getBuf() *[]byte { return bufs.Get().(*[]byte) }

// putBuf returns a buffer from getBuf (nil: nothing), exactly once and
// after the last use of any slice of it.
func putBuf(bp *[]byte) {
	if bp == nil || cap(*bp) != pooledBuf {
		return
	}
	*bp = (*bp)[:0]
	bufs.Put(bp)
}
