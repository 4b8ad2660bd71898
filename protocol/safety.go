package protocol

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// SafetyNumberSize is the size of a safety number's digest.
const SafetyNumberSize = sha512.Size

// SafetyNumber is a human-comparable value that two peers compute from their
// two identities (docs/PROTOCOL.md, section 11.6). Both sides get the same
// number; a man in the middle, who must present another identity to at least
// one side, makes the numbers differ. The exchange-key records are not part
// of it: they are certified by the identity keys, so a rotation does not
// change the number and does not need a new comparison.
type SafetyNumber [SafetyNumberSize]byte

// Safety-number presentation: 60 decimal digits in 12 groups of 5, and 12
// words of SafetyWords.
const (
	safetyGroups     = 12
	safetyGroupBytes = 5
	safetyWords      = 12
)

// NewSafetyNumber derives the safety number of peers a and b:
//
//	lo, hi = the two peer IDs' bytes, sorted (bytewise)
//	digest = SHA-512( lp("p2pkex/1.0.0 safety number") || lp(lo) || lp(hi) )
//
// It is symmetric: NewSafetyNumber(a, b) == NewSafetyNumber(b, a).
func NewSafetyNumber(a, b peer.ID) SafetyNumber {
	lo, hi := []byte(a), []byte(b)
	if bytes.Compare(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	var in []byte
	in = lp(in, []byte(labelSafety))
	in = lp(in, lo)
	in = lp(in, hi)
	return sha512.Sum512(in)
}

// Digits returns the number as 60 decimal digits in 12 groups of 5,
// separated by spaces: group i is the big-endian integer of digest bytes
// 5i..5i+4, modulo 100000, zero-padded.
func (s SafetyNumber) Digits() string {
	groups := make([]string, safetyGroups)
	for i := range groups {
		var b [8]byte
		copy(b[3:], s[i*safetyGroupBytes:(i+1)*safetyGroupBytes])
		groups[i] = fmt.Sprintf("%05d", binary.BigEndian.Uint64(b[:])%100000)
	}
	return strings.Join(groups, " ")
}

// Words returns the number as 12 words of SafetyWords, separated by spaces:
// word i is SafetyWords[digest byte i]. They carry 96 bits of the digest.
func (s SafetyNumber) Words() string {
	words := make([]string, safetyWords)
	for i := range words {
		words[i] = SafetyWords[s[i]]
	}
	return strings.Join(words, " ")
}

// String returns the digits.
func (s SafetyNumber) String() string { return s.Digits() }
