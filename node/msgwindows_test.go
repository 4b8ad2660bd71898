package node

import (
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
)

// windowEpochs lists the epochs b keeps replay windows of for p.
func windowEpochs(b *Node, p peer.ID) []uint64 {
	b.msg.mu.Lock()
	defer b.msg.mu.Unlock()
	var out []uint64
	if mp := b.msg.recv[p]; mp != nil {
		for k := range mp.streams {
			if !slices.Contains(out, k.epoch) {
				out = append(out, k.epoch)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestMessageWindowsBounded: a peer that exchanges keys and sends a message
// in each new epoch, faster than the grace period, leaves the receiver with
// windows of two epochs at most (the active and the previous one), not one
// per epoch (what tools/soak found growing, about 1 KB per epoch). A message
// under the previous epoch is still accepted within the grace period, and
// one under an epoch before it is refused.
func TestMessageWindowsBounded(t *testing.T) {
	leakCheck(t)
	a, b := newNode(t), newNode(t)
	introduce(a, b)
	inb, stop := b.Messages(0)
	defer stop()

	var last uint64
	for i := range 12 {
		last = exchange(t, a, b).Epoch
		require.NoError(t, a.Send(ctxT(t), b.ID(), []byte{byte(i)}))
		receive(t, inb)
		got := windowEpochs(b, a.ID())
		require.LessOrEqual(t, len(got), 2, "after %d epochs, windows of epochs %v", i+1, got)
		require.Equal(t, last, got[len(got)-1])
	}

	// Sealed under the active epoch E, sent after the next exchange (E+1)
	// and a message under it: E is the previous epoch, within the grace.
	old := seal(t, a, b.ID(), "previous epoch")
	next := exchange(t, a, b).Epoch
	require.NoError(t, a.Send(ctxT(t), b.ID(), []byte("active epoch")))
	receive(t, inb)
	require.NoError(t, sendRaw(t, a, b.ID(), old))
	require.Equal(t, "previous epoch", string(receive(t, inb).Data))
	require.Equal(t, []uint64{last, next}, windowEpochs(b, a.ID()))

	// One more epoch: E is now two back and refused, replayed or not.
	exchange(t, a, b)
	require.NoError(t, a.Send(ctxT(t), b.ID(), []byte("newest")))
	receive(t, inb)
	require.ErrorIs(t, sendRaw(t, a, b.ID(), old), ErrEpochExpired)
	require.Len(t, windowEpochs(b, a.ID()), 2)
}
