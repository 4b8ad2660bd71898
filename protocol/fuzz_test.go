package protocol

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// fuzzParties are fixed identities, so that seeds stay meaningful across runs.
func fuzzParties(t testing.TB) (*party, *party) {
	t.Helper()
	mk := func(seed byte) *party {
		sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		return newPartyFromKey(t, sk)
	}
	return mk(1), mk(2)
}

// FuzzExchange runs a real in-memory exchange in which the notice number
// index (counted over both directions) is replaced by data, the way
// quic-go fuzzes its handshake. combo picks which records each side holds,
// small the notice size. Whatever data is, nothing panics, and no side
// finishes with a key the other side does not hold.
func FuzzExchange(f *testing.F) {
	a, b := fuzzParties(f)
	// Seeds: every notice of an honest run of each combination, slightly
	// mutated and intact.
	for combo := range 4 {
		for _, small := range []bool{false, true} {
			ma, mb := fuzzPair(f, a, b, uint8(combo), small)
			log, _, _ := pump(f, ma, mb, nil)
			for i, w := range log {
				f.Add(uint8(combo), small, uint8(i), w.frame.Bytes)
				if len(w.frame.Bytes) > 4 {
					mut := bytes.Clone(w.frame.Bytes)
					mut[len(mut)/2] ^= 0x40
					f.Add(uint8(combo), small, uint8(i), mut)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, combo uint8, small bool, index uint8, data []byte) {
		ma, mb := fuzzPair(t, a, b, combo%4, small)
		replaced := false
		var original []byte
		_, errA, errB := pump(t, ma, mb, func(i int, w wire) []byte {
			if i == int(index) {
				replaced = true
				original = w.frame.Bytes
				return data
			}
			return w.frame.Bytes
		})
		if ma.Done() && mb.Done() {
			ra, rb := ma.Result(), mb.Result()
			if ra.Key != rb.Key || ra.KeyID != rb.KeyID || ra.Epoch != rb.Epoch {
				t.Fatalf("both sides finished with different keys (replaced %v)", replaced)
			}
			if replaced && !bytes.Equal(data, original) {
				t.Fatalf("exchange finished although notice %d was replaced", index)
			}
			return
		}
		// Key confirmation: a side may finish only if the other one has
		// the same key (it verified the other's MAC over the transcript).
		if ma.Done() && errB == nil && !mb.Done() {
			t.Fatalf("initiator finished, responder stuck without error")
		}
		if mb.Done() && errA == nil && !ma.Done() {
			t.Fatalf("responder finished, initiator stuck without error")
		}
		_ = errA
		_ = errB
	})
}

func fuzzPair(t testing.TB, a, b *party, combo uint8, small bool) (*Machine, *Machine) {
	var kb, ka *PeerRecord
	if combo&1 != 0 {
		kb = b.record()
	}
	if combo&2 != 0 {
		ka = a.record()
	}
	size := DefaultNoticeSize
	if small {
		size = MinNoticeSize
	}
	return pair(t, a, b, kb, ka, func(c *Config) { c.NoticeSize = size })
}

// FuzzParsePeerRecord feeds arbitrary envelopes to the record parser.
func FuzzParsePeerRecord(f *testing.F) {
	a, _ := fuzzParties(f)
	f.Add(a.key.Envelope)
	mut := bytes.Clone(a.key.Envelope)
	mut[len(mut)-1] ^= 1
	f.Add(mut)
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	now := time.Now()
	f.Fuzz(func(t *testing.T, envelope []byte) {
		rec, err := ParsePeerRecord(envelope, a.id, now)
		if err != nil {
			return
		}
		// Anything accepted is a record of a.id, signed by a, that
		// marshals back to a record with the same content.
		if rec.Peer != a.id || len(rec.Keys) == 0 {
			t.Fatalf("accepted a record of %s with %d keys", rec.Peer, len(rec.Keys))
		}
		if _, err := peer.IDFromBytes([]byte(rec.Peer)); err != nil {
			t.Fatal(err)
		}
		if rec.Fingerprint != FingerprintOf(envelope) {
			t.Fatal("fingerprint does not match the envelope")
		}
	})
}
