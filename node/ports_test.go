package node

import (
	"context"
	"fmt"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"
)

// portOf returns the port of n's first listen address of transport code.
func portOf(t *testing.T, n *Node, code int) string {
	t.Helper()
	for _, a := range n.Host().Addrs() {
		if v, err := a.ValueForProtocol(code); err == nil {
			return v
		}
	}
	t.Fatalf("no address of protocol %d in %v", code, n.Host().Addrs())
	return ""
}

// TestPortInUse: a node asked to listen on an explicit TCP or UDP port that
// another node already listens on (libp2p binds TCP with SO_REUSEPORT, so
// the kernel would let both bind and split the connections between them)
// fails to start, with an error naming the port. Port 0 and a port freed
// again keep working.
func TestPortInUse(t *testing.T) {
	first := newNode(t, WithListenAddrs("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"))
	tcp, udp := portOf(t, first, ma.P_TCP), portOf(t, first, ma.P_UDP)
	for _, tc := range []struct {
		listen []string
		want   string
	}{
		{[]string{"/ip4/127.0.0.1/tcp/" + tcp}, "listen port tcp/" + tcp + " is in use by another process"},
		{[]string{"/ip4/0.0.0.0/tcp/" + tcp}, "listen port tcp/" + tcp + " is in use"},
		{[]string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/" + udp + "/quic-v1"}, "listen port udp/" + udp + " is in use"},
	} {
		t.Run(fmt.Sprint(tc.listen), func(t *testing.T) {
			n, err := New(context.Background(), WithListenAddrs(tc.listen...))
			if err == nil {
				n.Close()
			}
			require.ErrorIs(t, err, ErrPortInUse)
			require.ErrorContains(t, err, tc.want)
			var pe *PortInUseError
			require.ErrorAs(t, err, &pe)
		})
	}

	// Port 0 twice, and the same explicit ports once the first node let
	// them go.
	newNode(t, WithListenAddrs("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"))
	require.NoError(t, first.Close())
	again := newNode(t, WithListenAddrs("/ip4/127.0.0.1/tcp/"+tcp, "/ip4/127.0.0.1/udp/"+udp+"/quic-v1"))
	require.Equal(t, tcp, portOf(t, again, ma.P_TCP))
	require.Equal(t, udp, portOf(t, again, ma.P_UDP))
}
