package main

import (
	"bufio"
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"text/tabwriter"
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

// TestPeerTableAsTabwriter: the table prints what text/tabwriter printed
// (minimum width 0, padding 2, spaces) of the same lines, for random
// cells, multi-byte runes and empty cells among them.
func TestPeerTableAsTabwriter(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	alphabet := []rune("ab-Z09:é世")
	cell := func() string {
		rs := make([]rune, r.IntN(12))
		for i := range rs {
			rs[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(rs)
	}
	// Up to 40 lines; then lines over several chunks of the table's
	// text, and one line longer than a chunk.
	sizes := []int{3000}
	for n := range 40 {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		var want, got bytes.Buffer
		tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
		tab := &peerTable{w: bufio.NewWriter(&got)}
		for i := range n {
			cells := peerCols[:]
			if i > 0 {
				cells = make([]string, len(peerCols))
				for j := range cells {
					cells[j] = cell()
				}
				if i == n/2 && n > 100 {
					cells[6] = strings.Repeat("x", tableChunk+10) // the last column: no padding
				}
			}
			tab.row(cells...)
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		require.NoError(t, tw.Flush())
		require.NoError(t, tab.end())
		if n == 0 {
			require.Equal(t, "no peers\n", got.String())
			continue
		}
		require.Equal(t, want.String(), got.String(), "%d lines", n)
	}
}
