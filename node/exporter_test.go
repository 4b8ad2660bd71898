package node

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
)

// TestExportKey: both peers export the same key from their session, the
// one section 11.7 of the spec gives for the active session; a new epoch
// gives a new key; errors name what is missing.
func TestExportKey(t *testing.T) {
	a, b := newNode(t), newNode(t)
	_, err := a.ExportKey(b.ID(), "test", nil, 32)
	require.True(t, errors.Is(err, ErrNoKey), "%v", err)
	introduce(a, b)
	info := exchange(t, a, b)

	ka, err := a.Export(b.ID(), "test", []byte("ctx"), 48)
	require.NoError(t, err)
	kb, err := b.ExportKey(a.ID(), "test", []byte("ctx"), 48)
	require.NoError(t, err)
	require.Equal(t, ka.Key, kb)
	require.Len(t, kb, 48)
	require.Equal(t, info.Epoch, ka.Epoch)
	require.Equal(t, info.KeyID, ka.KeyID)
	require.Equal(t, b.ID(), ka.Peer)

	s, err := a.ActiveKey(b.ID())
	require.NoError(t, err)
	want, err := protocol.ExportKey((*[protocol.KeySize]byte)(&s.Key), [protocol.KeyIDSize]byte(s.ID), s.Epoch, "test", []byte("ctx"), 48)
	require.NoError(t, err)
	require.Equal(t, want, kb)
	require.NotEqual(t, s.Key[:], kb[:32], "the exporter must not hand out the session key")

	other, err := a.ExportKey(b.ID(), "test2", []byte("ctx"), 48)
	require.NoError(t, err)
	require.NotEqual(t, kb, other)

	info2 := exchange(t, a, b)
	require.Equal(t, info.Epoch+1, info2.Epoch)
	next, err := a.Export(b.ID(), "test", []byte("ctx"), 48)
	require.NoError(t, err)
	require.Equal(t, info2.Epoch, next.Epoch)
	require.NotEqual(t, ka.Key, next.Key)

	_, err = a.ExportKey(b.ID(), "", nil, 32)
	require.True(t, errors.Is(err, protocol.ErrExport), "%v", err)
	_, err = a.ExportKey(b.ID(), "x", nil, protocol.MaxExportLength+1)
	require.True(t, errors.Is(err, protocol.ErrExport), "%v", err)
}
