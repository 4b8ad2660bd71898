package node

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
)

// TestKeyRotationLifetimeBounded: a node cannot be configured to publish
// records its peers refuse for their lifetime (docs/PROTOCOL.md section 8,
// protocol.MaxRecordLifetime); the longest allowed lifetime works.
func TestKeyRotationLifetimeBounded(t *testing.T) {
	_, err := New(context.Background(), WithKeyRotation(protocol.MaxRecordLifetime+time.Second, time.Hour))
	require.ErrorContains(t, err, "lifetime <=")

	n, err := New(context.Background(), WithListenAddrs("/ip4/127.0.0.1/tcp/0"), WithKeyRotation(protocol.MaxRecordLifetime, time.Hour))
	require.NoError(t, err)
	defer func() { require.NoError(t, n.Close()) }()
	rec, err := protocol.ParsePeerRecord(n.ExchangeKey().Envelope, n.ID(), time.Now())
	require.NoError(t, err)
	require.Equal(t, protocol.MaxRecordLifetime, rec.Expires.Sub(rec.Created))
}
