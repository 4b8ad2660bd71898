package server

import "github.com/libp2p/go-libp2p/core/peer"

// b58Digits is base58btc's alphabet, by digit value.
const b58Digits = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// b58Chunk is 58^5, the largest power of 58 below 2^32: each division of
// the number by it yields five digits.
const b58Chunk = 58 * 58 * 58 * 58 * 58

// idString is p.String() (base58btc of the ID's bytes), for the listing of
// every known peer: the encoder p.String uses works a digit and a byte at
// a time, which made it a third of the CPU of listing 100,000 peers
// (docs/performance/store.md, "Listing the known peers"); this one
// divides a 32-bit limb at a time by 58^5. TestIDString and FuzzIDString
// hold it to p.String.
func idString(p peer.ID) string {
	const maxBytes = 64 // longer than any ID derived from a key
	if len(p) > maxBytes {
		return p.String()
	}
	zeros := 0
	for zeros < len(p) && p[zeros] == 0 {
		zeros++
	}
	// The bytes after the leading zeros as a big-endian number in 32-bit
	// limbs, the most significant first.
	var buf [maxBytes / 4]uint32
	rest := p[zeros:]
	limbs := buf[:(len(rest)+3)/4]
	head := len(rest) % 4
	if head == 0 {
		head = 4
	}
	for i, j := 0, 0; i < len(rest); j++ {
		n := 4
		if j == 0 {
			n = head
		}
		var v uint32
		for _, c := range []byte(rest[i : i+n]) {
			v = v<<8 | uint32(c)
		}
		limbs[j] = v
		i += n
	}
	// Digits from the least significant, written from the end of out: at
	// most 64 zero bytes and 88 digits, and the last chunk's four padding
	// zeros.
	var out [64 + 88 + 4]byte
	i := len(out)
	for len(limbs) > 0 {
		var rem uint64
		for j := range limbs {
			cur := rem<<32 | uint64(limbs[j])
			limbs[j] = uint32(cur / b58Chunk)
			rem = cur % b58Chunk
		}
		for len(limbs) > 0 && limbs[0] == 0 {
			limbs = limbs[1:]
		}
		for range 5 {
			i--
			out[i] = b58Digits[rem%58]
			rem /= 58
		}
	}
	for i < len(out) && out[i] == b58Digits[0] {
		i++ // the last chunk's padding
	}
	for range zeros {
		i--
		out[i] = b58Digits[0]
	}
	return string(out[i:])
}
