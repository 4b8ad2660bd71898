package main

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/api"
)

// TestPeerJSONAsPrintJSON: peers --json, printed one peer at a time as
// they are read, prints the bytes printJSON printed of the whole list.
func TestPeerJSONAsPrintJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	all := []api.Peer{
		{Peer: "12D3KooWA", Addrs: []string{}, Discovered: []string{}, Known: true, Trust: "first-use", Epoch: 3, KeyID: "0011223344556677", Suite: "X25519", LastExchange: &at},
		{Peer: "12D3KooWB<&>", Connected: true, Connection: "relayed", Addrs: []string{"/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/2/quic-v1"}, Discovered: []string{"mdns", "dht"}, Trust: "unknown"},
		{Peer: "QmC", Addrs: []string{}, Discovered: []string{"dht"}, Known: true, Trust: "verified"},
	}
	for n := range len(all) + 1 {
		var want, got bytes.Buffer
		require.NoError(t, printJSON(&want, all[:n]))
		j := &peerJSON{w: bufio.NewWriter(&got)}
		for _, p := range all[:n] {
			require.NoError(t, j.add(p))
		}
		require.NoError(t, j.end())
		require.Equal(t, want.String(), got.String(), "%d peers", n)
	}
}
