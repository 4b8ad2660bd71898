package peerstore

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
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
