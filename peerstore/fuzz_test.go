package peerstore

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/peerstore/pb"
)

// The decoders read what is on disk: any input must give a value or an error
// wrapping ErrCorrupt, never a panic.

func requireCorrupt(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error does not wrap ErrCorrupt: %v", err)
	}
}

func seedPeerID(f *testing.F) peer.ID {
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	return id
}

var seedTime = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func FuzzDecodePeerKey(f *testing.F) {
	p := seedPeerID(f)
	for _, pk := range []PeerKey{
		{},
		{Seq: 3, Record: []byte("record"), Fingerprint: []byte("fp"), Trust: TrustVerified, FirstSeen: seedTime, LastSeen: seedTime.Add(time.Hour)},
	} {
		v, err := encodePeerKey(&pk)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(p), v)
	}
	f.Add([]byte("x"), []byte{0xff})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		pk, err := decodePeerKey(k, v)
		requireCorrupt(t, err)
		if err != nil {
			return
		}
		if checkTrust(pk.Trust) != nil || checkPeerID(pk.Peer) != nil {
			t.Fatalf("decoded an invalid record: trust %d, peer %q", pk.Trust, pk.Peer)
		}
		// What decodes re-encodes to the same record.
		v2, err := encodePeerKey(pk)
		if err != nil {
			t.Fatal(err)
		}
		pk2, err := decodePeerKey(k, v2)
		if err != nil {
			t.Fatal(err)
		}
		if pk2.Seq != pk.Seq || string(pk2.Record) != string(pk.Record) || !pk2.FirstSeen.Equal(pk.FirstSeen) || !pk2.LastSeen.Equal(pk.LastSeen) {
			t.Fatal("round trip changed the record")
		}
	})
}

// FuzzPeekPeerKey: peekPeerKey, which commitTx uses instead of decoding
// the stored record, reads every value exactly as decodePeerKey does: it
// fails where decodePeerKey fails, and where it reads a record its fields
// are decodePeerKey's.
func FuzzPeekPeerKey(f *testing.F) {
	p := seedPeerID(f)
	for _, pk := range []PeerKey{
		{Trust: TrustFirstUse},
		{Seq: 3, Record: []byte("record"), Fingerprint: []byte("fp"), Trust: TrustVerified, FirstSeen: seedTime, LastSeen: seedTime.Add(time.Hour)},
		{Seq: 1 << 40, Trust: TrustChanged, LastSeen: time.Unix(-5, 999_999_999)},
	} {
		v, err := encodePeerKey(&pk)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	tag := func(num, typ byte) byte { return num<<3 | typ }
	for _, v := range [][]byte{
		{tag(4, 0), 1, tag(4, 0), 9},                             // the last trust wins: out of range
		{tag(4, 0), 9, tag(4, 0), 1},                             // the last trust wins: in range
		{tag(4, 0), 1, tag(6, 2), 2, tag(2, 0), 5, tag(6, 2), 0}, // LastSeen's occurrences merge
		{tag(4, 0), 1, tag(6, 2), 2, tag(2, 0), 0x7f},            // nanoseconds 127
		{tag(4, 0), 1, tag(2, 0), 7},                             // record as a varint: unknown
		{tag(4, 0), 1, tag(7, 3), tag(1, 0), 1, tag(7, 4)},       // a group
		{tag(4, 0), 1, tag(7, 4)},                                // end of a group never started
		{tag(4, 0), 1, tag(6, 2), 3, tag(7, 3), tag(7, 4), 0},    // a group inside a time, then field number 0
		{tag(4, 0), 0x81, 0x80, 0x80, 0x80, 0x10},                // trust truncated to 32 bits: 1
		{tag(4, 0), 1, 0xf8, 0xff, 0xff, 0xff, 0x0f, 0},          // field number 2^29-1, the maximum
		{tag(4, 0), 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0},          // field number 2^29: above it
		{tag(4, 0), 1, tag(6, 2), 11, tag(2, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // nanos -1 as 10 bytes
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		got, ok := peekPeerKey(v)
		want, err := decodePeerKey([]byte(p), v)
		if ok != (err == nil) {
			t.Fatalf("peek ok %v, decode error %v", ok, err)
		}
		if !ok {
			return
		}
		if got.Seq != want.Seq || got.Trust != want.Trust || !bytes.Equal(got.Record, want.Record) ||
			!bytes.Equal(got.Fingerprint, want.Fingerprint) || !got.FirstSeen.Equal(want.FirstSeen) ||
			!got.LastSeen.Equal(want.LastSeen) || got.FirstSeen.IsZero() != want.FirstSeen.IsZero() ||
			got.LastSeen.IsZero() != want.LastSeen.IsZero() {
			t.Fatalf("peek read %+v, decode %+v", got, want)
		}
	})
}

// FuzzPeekSessionSlot: peekSessionSlot, which commitTx uses to find the
// slot of the epoch it prunes, reads every value exactly as sessionSlot
// does: it fails where sessionSlot fails, and names the same slot where it
// does not; and peekSession, which ListPeers uses, reads the key ID, suite
// and creation time decodeSession reads.
func FuzzPeekSessionSlot(f *testing.F) {
	p := seedPeerID(f)
	ek := encodeEpoch(7)
	sealed := make([]byte, sealedOverhead+KeySize)
	sealed[7] = 1 // slot 1
	for _, sk := range []SessionKey{{Suite: 0x20, Created: seedTime}, {Suite: 0xffff}} {
		v, err := encodeSession(&sk, sealed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	plain, err := proto.Marshal(&pb.SessionKey{Key: make([]byte, KeySize), KeyId: make([]byte, KeyIDSize)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain) // version 1: no slot
	both, err := proto.Marshal(&pb.SessionKey{Key: make([]byte, KeySize), Sealed: sealed, KeyId: make([]byte, KeyIDSize)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(both)
	f.Fuzz(func(t *testing.T, v []byte) {
		got, ok := peekSessionSlot(v)
		want, err := sessionSlot([]byte(p), ek, v)
		if ok != (err == nil) {
			t.Fatalf("peek ok %v, sessionSlot error %v", ok, err)
		}
		if ok && got != want {
			t.Fatalf("peek read slot %d, sessionSlot %d", got, want)
		}
		m, mok := peekSession(v)
		if mok != ok || m.slot != got {
			t.Fatalf("peekSession ok %v slot %d, peekSessionSlot ok %v slot %d", mok, m.slot, ok, got)
		}
		if !ok {
			return
		}
		sk, _, err := decodeSession([]byte(p), ek, v)
		if err != nil {
			t.Fatalf("peek ok, decodeSession: %v", err)
		}
		if m.id != sk.ID || m.suite != sk.Suite || !m.created.Equal(sk.Created) || m.created.IsZero() != sk.Created.IsZero() {
			t.Fatalf("peekSession read %x %#x %v, decodeSession %x %#x %v", m.id, m.suite, m.created, sk.ID, sk.Suite, sk.Created)
		}
	})
}

func FuzzDecodeSession(f *testing.F) {
	p := seedPeerID(f)
	sk := SessionKey{Peer: p, Epoch: 7, Suite: 0x20, Created: seedTime}
	sealed := make([]byte, sealedOverhead+KeySize)
	sealed[7] = 1 // slot 1
	v, err := encodeSession(&sk, sealed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(p), encodeEpoch(7), v)
	f.Add([]byte(p), encodeEpoch(0), v)
	f.Add([]byte(p), []byte{1}, []byte{})
	f.Fuzz(func(t *testing.T, pk, ek, v []byte) {
		sk, sealed, err := decodeSession(pk, ek, v)
		requireCorrupt(t, err)
		if err != nil {
			return
		}
		if sk.Epoch == 0 || checkPeerID(sk.Peer) != nil {
			t.Fatalf("decoded an invalid session: epoch %d", sk.Epoch)
		}
		if sealed != nil {
			if _, err := sealedSlot(sealed, KeySize); err != nil {
				t.Fatalf("decoded a session whose sealed key is malformed: %v", err)
			}
		}
	})
}

func FuzzDecodeExchangeKey(f *testing.F) {
	for _, k := range []ExchangeKey{
		{},
		{Seq: 1, Record: []byte("record"), Keys: []SuiteKey{{Suite: 0x0a}, {Suite: 0x20}}, Created: seedTime, Retire: seedTime.Add(time.Hour)},
	} {
		sealed := make([][]byte, len(k.Keys))
		for i := range sealed {
			sealed[i] = make([]byte, sealedOverhead+32)
			sealed[i][7] = byte(i + 1) // slot i+1
		}
		v, err := encodeExchangeKey(&k, sealed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add([]byte{0x22, 0x02, 0x10, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		_, _, err := decodeExchangeKey(v)
		requireCorrupt(t, err)
	})
}

func FuzzDecodeIdentity(f *testing.F) {
	for _, typ := range []int{crypto.Ed25519, crypto.Secp256k1, crypto.ECDSA} {
		k, _, err := crypto.GenerateKeyPairWithReader(typ, 0, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		v, err := crypto.MarshalPrivateKey(k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add([]byte{0x08, 0x63})
	f.Fuzz(func(t *testing.T, v []byte) {
		_, err := decodeIdentity(v)
		requireCorrupt(t, err)
	})
}

func FuzzDecodeState(f *testing.F) {
	for _, st := range []PeerState{
		{Epoch: 1},
		{Record: true, Seq: 3, Fingerprint: []byte("fingerprint"), Trust: TrustVerified},
		{Record: true, Seq: 1, Trust: TrustFirstUse, Epoch: 7},
	} {
		f.Add(encodeState(&st))
	}
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		st, err := decodeState(v)
		requireCorrupt(t, err)
		if err != nil {
			return
		}
		if !st.Record && st.Epoch == 0 || st.Record && checkTrust(st.Trust) != nil {
			t.Fatalf("decoded an invalid state: %+v", st)
		}
		// What decodes re-encodes to the same bytes.
		if string(encodeState(&st)) != string(v) {
			t.Fatal("round trip changed the state")
		}
	})
}
