package peerstore

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/test"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// TestBoltLookupDoesNotOpenKeys checks that the bbolt store's Lookup reads
// the active epoch without opening the session key (the node calls it on
// every exchange; ActiveSession decrypts): with the key's slot in the key
// file destroyed, ActiveSession fails and Lookup still answers.
func TestBoltLookupDoesNotOpenKeys(t *testing.T) {
	st, err := OpenBolt(filepath.Join(t.TempDir(), "store"))
	require.NoError(t, err)
	defer st.Close()
	s := st.(*boltStore)
	p, err := test.RandPeerID()
	require.NoError(t, err)
	now := time.Now()
	for epoch := uint64(1); epoch <= 2; epoch++ {
		require.NoError(t, st.CommitExchange(Commit{
			Session: SessionKey{Peer: p, Epoch: epoch, Key: Key{byte(epoch)}, Suite: 1, Created: now},
			PeerKey: &PeerKey{Peer: p, Seq: 1, Record: []byte("record"), Fingerprint: []byte("fp"), Trust: TrustFirstUse, FirstSeen: now, LastSeen: now},
			Seen:    now,
		}))
	}
	var slot uint64
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		b, err := peerSessions(tx, p)
		if err != nil {
			return err
		}
		k, v := b.Cursor().Last()
		slot, err = sessionSlot([]byte(p), k, v)
		return err
	}))
	require.NoError(t, s.keys.wipe([]uint64{slot}))

	_, err = st.ActiveSession(p)
	require.ErrorIs(t, err, ErrCorrupt, "the active key no longer opens")
	ls, err := st.Lookup(p)
	require.NoError(t, err, "Lookup opened the session key")
	require.EqualValues(t, 2, ls.Epoch)
	require.True(t, ls.Record)
	require.Equal(t, "fp", string(ls.Fingerprint))
}

// BenchmarkExchangeReads compares what an exchange with a known peer reads
// of the store before it starts: Lookup (since issue 15) against what it
// read before, Peer (a copy of the record; the responder's admission read
// it again) and ActiveSession (on bbolt a decryption of the session key),
// per side.
func BenchmarkExchangeReads(b *testing.B) {
	for _, kind := range []string{"memory", "bolt"} {
		b.Run(kind, func(b *testing.B) {
			var st Store = NewMemory()
			if kind == "bolt" {
				var err error
				if st, err = OpenBolt(filepath.Join(b.TempDir(), "store")); err != nil {
					b.Fatal(err)
				}
			}
			defer st.Close()
			p, err := test.RandPeerID()
			require.NoError(b, err)
			now := time.Now()
			require.NoError(b, st.CommitExchange(Commit{
				Session: SessionKey{Peer: p, Epoch: 1, Suite: 1, Created: now},
				PeerKey: &PeerKey{Peer: p, Seq: 1, Record: make([]byte, 1400), Fingerprint: make([]byte, 34), Trust: TrustFirstUse, FirstSeen: now, LastSeen: now},
				Seen:    now,
			}))
			b.Run("Lookup", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := st.Lookup(p); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("PeerActiveSession", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := st.Peer(p); err != nil {
						b.Fatal(err)
					}
					act, err := st.ActiveSession(p)
					if err != nil {
						b.Fatal(err)
					}
					clear(act.Key[:])
				}
			})
		})
	}
}

// TestSplitKeys: the bounds of warmState's ranges lie between the first
// and the last key, in order; keys without a byte to split on give none.
func TestSplitKeys(t *testing.T) {
	p := func(s ...byte) []byte { return append([]byte("pre"), s...) }
	require.Equal(t, [][]byte{p(0x40), p(0x80), p(0xc0)}, splitKeys(p(0x00, 9), p(0xff, 1), 4))
	require.Equal(t, [][]byte{p(0x11)}, splitKeys(p(0x10), p(0x11), 8), "two values: one bound")
	require.Nil(t, splitKeys(p(0x10), p(0x10, 1), 4), "first a prefix of last")
	require.Nil(t, splitKeys(p(0x10), p(0x20), 1))
	for n := 2; n < 10; n++ {
		first, last := p(3, 0xff), p(200)
		prev := first
		for _, b := range splitKeys(first, last, n) {
			require.Positive(t, bytes.Compare(b, prev))
			require.LessOrEqual(t, bytes.Compare(b, last), 0)
			prev = b
		}
	}
}
