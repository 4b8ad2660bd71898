package protocol

// Scratch buffers for byte strings that live only within one call of the
// machine (or, for a reassembly, until its item is complete) and that what
// they are passed to reads and does not keep: the signature input of a key
// part (signed or verified, then dropped), the marshalled sealed part (cut
// into notices, which copy it), a reassembled item (parsed into copies).
// They share the pool of the driver's frame buffers (frame.go), whose size
// holds each of them at the default notice size and suites. None of them
// holds a secret. A need that outgrows a buffer is met by append with a new
// slice, left to the collector; the pooled buffer goes back unchanged.
//
// The frames the machine returns are never pooled: the caller owns them.

// getScratch returns a pooled buffer; use it as (*b)[:0].
func getScratch() *[]byte { return getFrameBuf() }

// putScratch returns a buffer from getScratch (nil: nothing), exactly once
// and after the last use of any slice of it.
func putScratch(b *[]byte) { putFrameBuf(b) }
