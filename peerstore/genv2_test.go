package peerstore_test

// Generator of testdata/v2store: run at a schema-version-2 commit with
// P2PKEX_GEN_V2=dir. Kept in history only (the commit after removes it).

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
)

type v2Want struct {
	Peer        string
	Record      bool
	Seq         uint64
	Fingerprint string
	Trust       uint8
	Epoch       uint64
}

func TestGenV2Store(t *testing.T) {
	out := os.Getenv("P2PKEX_GEN_V2")
	if out == "" {
		t.Skip("generator: set P2PKEX_GEN_V2")
	}
	dir := filepath.Join(t.TempDir(), "store")
	st, err := peerstore.OpenBolt(dir)
	require.NoError(t, err)
	id, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, st.SetIdentity(id))
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rb := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	require.NoError(t, st.RotateExchangeKey(peerstore.ExchangeKey{Seq: 1, Record: rb(200),
		Keys: []peerstore.SuiteKey{{Suite: 0x0a, Private: rb(32)}}, Created: t0}, t0, 0))
	commit := func(p string, epoch uint64, pk *peerstore.PeerKey) {}
	_ = commit
	var ids []string
	var wants []v2Want
	for i := range 8 {
		p := storetest.RandPeerID(t)
		ids = append(ids, p.String())
		var pk *peerstore.PeerKey
		epochs := uint64(1 + i%5)
		for e := uint64(1); e <= epochs; e++ {
			var ck *peerstore.PeerKey
			if i != 3 && (e == 1 || (i == 2 && e == 3)) { // peer 3: sessions only; peer 2: a new record at epoch 3
				pk = &peerstore.PeerKey{Peer: p, Seq: e, Record: rb(150), Fingerprint: rb(34), Trust: peerstore.TrustFirstUse, FirstSeen: t0, LastSeen: t0}
				ck = pk
			}
			s := peerstore.SessionKey{Peer: p, Epoch: e, Suite: 0x0a, Created: t0.Add(time.Duration(e) * time.Minute)}
			rand.Read(s.Key[:])
			require.NoError(t, st.CommitExchange(peerstore.Commit{Session: s, PeerKey: ck, Seen: t0.Add(time.Duration(e) * time.Hour)}))
		}
		w := v2Want{Peer: p.String(), Epoch: epochs}
		switch i {
		case 1:
			require.NoError(t, st.SetTrust(p, peerstore.TrustVerified))
			pk.Trust = peerstore.TrustVerified
		case 2:
			require.NoError(t, st.SetTrust(p, peerstore.TrustChanged))
			pk.Trust = peerstore.TrustChanged
		case 5: // record without sessions
			_, err := peerstore.DeletePeerSessions(st, p)
			require.NoError(t, err)
			w.Epoch = 0
		case 6: // forgotten: neither
			_, err := st.Forget(p)
			require.NoError(t, err)
			pk, w = nil, v2Want{Peer: p.String()}
		}
		if pk != nil {
			w.Record, w.Seq, w.Fingerprint, w.Trust = true, pk.Seq, hex.EncodeToString(pk.Fingerprint), uint8(pk.Trust)
		}
		wants = append(wants, w)
	}
	require.NoError(t, st.Close())
	require.NoError(t, os.MkdirAll(out, 0o755))
	for _, name := range []string{peerstore.BoltFileName, peerstore.KeysFileName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(out, name), b, 0o644))
	}
	js, err := json.MarshalIndent(wants, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(out, "peers.json"), append(js, '\n'), 0o644))
}
