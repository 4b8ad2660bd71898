package protocol

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/require"
)

// TestExchangeAllocs bounds the allocations of one exchange run by Run over
// an in-memory pipe, both sides, with both records known. Most of them are
// the standard library's (crypto/hpke's key schedule, HKDF and HMAC
// objects, ML-KEM), the rest the machine's and the driver's own (notices,
// transcript) and the pipe's. The bound is the count measured when it was
// set plus a margin for the pools' refills and the pipe's buffers; a change
// that adds allocations per exchange fails here (an exchange under load
// pays for them in garbage collection: docs/performance/cpu.md).
func TestExchangeAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 50 exchanges")
	}
	if underRace {
		t.Skip("the race detector changes allocation counts (sync.Pool drops items at random)")
	}
	a, c := newParty(t, SuiteMLKEM768X25519), newParty(t, SuiteMLKEM768X25519)
	knownC, knownA := c.record(), a.record()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(50, func() {
		ma, mc := pair(t, a, c, knownC, knownA, nil)
		pa, pc := bufferedPipe()
		ch := runAsync(ctx, pc, mc, driverLongPhase)
		ra, err := Run(ctx, pa, ma, driverLongPhase)
		rc := <-ch
		pa.Close()
		pc.Close()
		if err != nil || rc.err != nil {
			t.Fatal(err, rc.err)
		}
		ra.Wipe()
		rc.res.Wipe()
	})
	t.Logf("%.0f allocations per exchange, both sides", allocs)
	if allocs > exchangeAllocsBound {
		t.Errorf("%.0f allocations per exchange, bound %d", allocs, exchangeAllocsBound)
	}
}

const exchangeAllocsBound = 570

// TestNewMachineIdentity: NewMachine checks Config.Identity against the
// exchange key without deriving a peer ID when the key is the one the
// exchange key was made with, and still refuses another identity's.
func TestNewMachineIdentity(t *testing.T) {
	a, c := newParty(t), newParty(t)
	cfg := Config{Role: Initiator, Identity: a.sk, Remote: c.id, Own: a.key, Epoch: 1}
	_, err := NewMachine(cfg)
	require.NoError(t, err)

	// An equal key in another object (as read back from a store).
	raw, err := crypto.MarshalPrivateKey(a.sk)
	require.NoError(t, err)
	cfg.Identity, err = crypto.UnmarshalPrivateKey(raw)
	require.NoError(t, err)
	_, err = NewMachine(cfg)
	require.NoError(t, err)

	cfg.Identity = c.sk
	cfg.Remote = a.id
	_, err = NewMachine(cfg)
	require.ErrorContains(t, err, "exchange key belongs to another identity")
	b := newParty(t)
	cfg.Identity, cfg.Remote = b.sk, c.id
	_, err = NewMachine(cfg)
	require.ErrorContains(t, err, "exchange key belongs to another identity")
}
