package server

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestIDString: idString is peer.ID.String for the IDs of every kind of
// key, and for any bytes: every length to 70, leading zero bytes, all
// zeros, all 0xff.
func TestIDString(t *testing.T) {
	check := func(p peer.ID) {
		t.Helper()
		if got, want := idString(p), p.String(); got != want {
			t.Fatalf("idString(%x) = %q, want %q", []byte(p), got, want)
		}
	}
	for _, typ := range []int{crypto.Ed25519, crypto.Secp256k1, crypto.ECDSA, crypto.RSA} {
		for range 20 {
			_, pub, err := crypto.GenerateKeyPairWithReader(typ, 2048, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			id, err := peer.IDFromPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			check(id)
			if typ == crypto.RSA {
				break // slow to make; one is enough
			}
		}
	}
	r := mrand.New(mrand.NewPCG(3, 4))
	for n := range 71 {
		check(peer.ID(make([]byte, n)))
		ff := make([]byte, n)
		for i := range ff {
			ff[i] = 0xff
		}
		check(peer.ID(ff))
		for range 300 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			for i := range min(n, r.IntN(4)) {
				b[i] = 0
			}
			check(peer.ID(b))
		}
	}
}

func FuzzIDString(f *testing.F) {
	f.Add([]byte{0, 0x24, 8, 1, 0x12, 0x20, 1, 2, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := idString(peer.ID(b)), peer.ID(b).String(); got != want {
			t.Fatalf("idString(%x) = %q, want %q", b, got, want)
		}
	})
}
