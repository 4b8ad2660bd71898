package node

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"
)

// A node owns its listen ports.
//
// libp2p binds its TCP listeners with SO_REUSEPORT (so that outgoing
// connections can leave from the listen port, which hole punching needs),
// and Linux lets any number of SO_REUSEPORT sockets of one user bind the
// same port: a second node asked to listen on a port another already
// listens on starts without complaint, and the kernel splits incoming
// connections between the two — dials of the first node's peer ID reach
// the second half the time. So before the host is built, New binds every
// explicit (non-zero) TCP and UDP listen port itself, without
// SO_REUSEPORT, and closes it at once: a socket without SO_REUSEPORT
// cannot bind where any other socket is bound (a SO_REUSEPORT listener
// included), so this fails exactly when another process holds the port.
// (Go's listeners set SO_REUSEADDR, which only lets the probe bind over
// connections in TIME_WAIT, not over a listener.)
//
// What remains: a race. Between the probe's close and libp2p's bind another
// process may take the port; and once the node listens with SO_REUSEPORT, a
// later process of the same user that also sets SO_REUSEPORT can still bind
// it (a p2pkex node cannot: it probes first). Port 0 is not probed: the
// system picks a free port.

// ErrPortInUse is wrapped by New's error when an explicit listen port is
// held by another process.
var ErrPortInUse = errors.New("listen port is in use by another process")

// PortInUseError names the port New could not own.
type PortInUseError struct {
	Network string // "tcp" or "udp"
	Port    int
	Addr    ma.Multiaddr // the listen address that asked for it
	Err     error        // the probe's bind error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("listen port %s/%d is in use by another process (listen address %s)", e.Network, e.Port, e.Addr)
}

func (e *PortInUseError) Unwrap() []error { return []error{ErrPortInUse, e.Err} }

// probePorts checks that no other process holds an explicit port of
// listen (see above).
func probePorts(listen []ma.Multiaddr) error {
	seen := map[string]bool{}
	for _, a := range listen {
		ip, network, port, ok := listenPort(a)
		if !ok || port == 0 {
			continue
		}
		hostPort := net.JoinHostPort(ip, strconv.Itoa(port))
		key := network + " " + hostPort
		if seen[key] {
			continue // quic-v1 and webtransport share one UDP port
		}
		seen[key] = true
		var err error
		switch network {
		case "tcp":
			var l net.Listener
			if l, err = net.Listen("tcp", hostPort); err == nil {
				err = l.Close()
			}
		case "udp":
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", hostPort); err == nil {
				err = c.Close()
			}
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return &PortInUseError{Network: network, Port: port, Addr: a, Err: err}
		}
		// Any other error (an address not on this machine, say) is left
		// to libp2p, which reports it in its own words.
	}
	return nil
}

// listenPort returns the IP, transport ("tcp" or "udp") and port of a
// listen address that starts /ip4/.../tcp|udp/...; ok is false for others.
func listenPort(a ma.Multiaddr) (ip, network string, port int, ok bool) {
	if len(a) < 2 {
		return "", "", 0, false
	}
	switch a[0].Protocol().Code {
	case ma.P_IP4, ma.P_IP6:
		ip = a[0].Value()
	default:
		return "", "", 0, false
	}
	switch a[1].Protocol().Code {
	case ma.P_TCP:
		network = "tcp"
	case ma.P_UDP:
		network = "udp"
	default:
		return "", "", 0, false
	}
	port, err := strconv.Atoi(a[1].Value())
	if err != nil {
		return "", "", 0, false
	}
	return ip, network, port, true
}
