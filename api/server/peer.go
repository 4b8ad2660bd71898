package server

// The peer named is the peer you get (docs/SECURITY.md, "Trust",
// the identity rule): an operation that names a peer (/p2p/<ID>, a peer ID)
// works with that peer or fails. Another identity answering at its address
// is never used in its place, under any trust policy: the dial fails with
// one line naming the address, the identity expected and the identity
// that answered, and nothing is exchanged with, sent to or stored for the
// identity that answered. To talk to it, the user names it.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// ParseMultiaddr parses a multiaddr; its error (CodeBadRequest) names the
// input once.
func ParseMultiaddr(s string) (ma.Multiaddr, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "malformed multiaddr %q: %s", s, multiaddrProblem(err))
	}
	return m, nil
}

// multiaddrProblem is go-multiaddr's reason without its own copy of the
// input ("failed to parse multiaddr \"X\": ..."), which the line names
// already.
func multiaddrProblem(err error) string {
	// go-multiaddr names the input again, sometimes normalised (a trailing
	// slash dropped): the user's own text is already in the message.
	return multiaddrPrefix.ReplaceAllString(err.Error(), "")
}

var multiaddrPrefix = regexp.MustCompile(`^failed to parse multiaddr( "[^"]*")?: `)

// ParsePeerAddr parses a full multiaddr ending in /p2p/<peer ID>.
func ParsePeerAddr(s string) (*peer.AddrInfo, error) {
	m, err := ParseMultiaddr(s)
	if err != nil {
		return nil, err
	}
	pi, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "multiaddr %q must end in /p2p/<peer ID>", s)
	}
	return pi, nil
}

// ParsePeer parses a peer given as a full multiaddr (ending in /p2p/<peer
// ID>) or as a bare peer ID (then without addresses).
func ParsePeer(s string) (*peer.AddrInfo, error) {
	if strings.HasPrefix(s, "/") {
		return ParsePeerAddr(s)
	}
	p, err := peer.Decode(s)
	if err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "%q is neither a peer ID nor a multiaddr ending in /p2p/<peer ID>", s)
	}
	return &peer.AddrInfo{ID: p}, nil
}

// ParsePeerID is ParsePeer's peer ID.
func ParsePeerID(s string) (peer.ID, error) {
	pi, err := ParsePeer(s)
	if err != nil {
		return "", err
	}
	return pi.ID, nil
}

// resolvePeer turns an operation's peer into an address: a full
// multiaddr, or a peer ID the node can reach (connected, discovered, or
// with addresses in its libp2p peerstore).
func resolvePeer(n *node.Node, s string) (*peer.AddrInfo, error) {
	pi, err := ParsePeer(s)
	if err != nil {
		return nil, err
	}
	if len(pi.Addrs) == 0 && pi.ID != n.ID() &&
		n.Host().Network().Connectedness(pi.ID) != network.Connected &&
		len(n.Host().Peerstore().Addrs(pi.ID)) == 0 {
		return nil, api.Errorf(api.CodeNotFound, "no address known for %s: give its full multiaddr, or \"p2pkex connect\" to it first", pi.ID)
	}
	return pi, nil
}

// lineError is the line a user reads, keeping the error behind it for
// errors.Is and errors.As (a cancelled context, a node's trust events).
type lineError struct {
	msg string
	err error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.err }

// reach connects to pi.ID at pi's addresses (or where the node knows it).
// Errors are one line a user can act on.
func reach(ctx context.Context, n *node.Node, pi *peer.AddrInfo) error {
	clearBackoff(n, pi.ID)
	err := n.Connect(ctx, *pi)
	switch {
	case err == nil:
		return nil
	case wrongIdentity(pi, err) != nil:
		return wrongIdentity(pi, err)
	case ctx.Err() != nil:
		return &lineError{fmt.Sprintf("cannot reach %s: timed out", pi.ID), err}
	}
	// The node's error stays behind the line for its trust events.
	return &lineError{fmt.Sprintf("cannot reach %s: %s", pi.ID, dialReason(err)), err}
}

// clearBackoff forgets the failed dials to p: the user asked for this one,
// as kubo's "ipfs swarm connect" does.
func clearBackoff(n *node.Node, p peer.ID) {
	if sw, ok := n.Host().Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}

// wrongIdentityError: the address of the peer named answered with another
// identity.
type wrongIdentityError struct {
	Peer      peer.ID              // named
	Presented peer.ID              // answered
	Addr      ma.Multiaddr         // where; nil if unknown
	Trust     peerstore.TrustState // Peer's trust state (TrustUnknown: not a known peer)
	err       error                // the node's, for its trust events
}

func (e *wrongIdentityError) Unwrap() error { return e.err }

func (e *wrongIdentityError) Error() string {
	at := "its address"
	if e.Addr != nil {
		at = e.Addr.String()
	}
	if e.Trust == peerstore.TrustUnknown {
		return fmt.Sprintf("wrong peer: %s answered as %s, not as %s named; refused, nothing exchanged with or stored for %s (to reach %s, name it)",
			at, e.Presented, e.Peer, e.Presented, e.Presented)
	}
	return fmt.Sprintf("IDENTITY CHANGED: %s answered as %s, not as %s peer %s named; refused, nothing exchanged with or stored for %s; ask %s's owner (to reach %s, name it)",
		at, e.Presented, e.Trust, e.Peer, e.Presented, e.Peer, e.Presented)
}

// wrongIdentity returns the *wrongIdentityError of a dial to pi.ID that
// another identity answered, or nil.
func wrongIdentity(pi *peer.AddrInfo, err error) *wrongIdentityError {
	var ice *node.IdentityChangeError
	if errors.As(err, &ice) {
		return &wrongIdentityError{Peer: ice.Peer, Presented: ice.Presented, Addr: ice.Addr, Trust: ice.Trust, err: err}
	}
	// A peer the node does not know: libp2p's own mismatch error.
	var mm sec.ErrPeerIDMismatch
	if !errors.As(err, &mm) || mm.Actual == "" || mm.Actual == pi.ID {
		return nil
	}
	e := &wrongIdentityError{Peer: pi.ID, Presented: mm.Actual, err: err}
	var de *swarm.DialError
	if errors.As(err, &de) {
		for _, te := range de.DialErrors {
			var m sec.ErrPeerIDMismatch
			if errors.As(te.Cause, &m) && m.Actual == mm.Actual {
				e.Addr = te.Address
				break
			}
		}
	}
	if e.Addr == nil && len(pi.Addrs) == 1 {
		e.Addr = pi.Addrs[0]
	}
	return e
}

// shortDialError keeps libp2p's dial error to one line: its summary and
// the first address's reason.
func shortDialError(err error) string {
	lines := strings.Split(err.Error(), "\n")
	s := lines[0]
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "* ") {
			if i := strings.LastIndex(l, ": "); i >= 0 {
				l = l[i+2:]
			}
			return s + " (" + l + ")"
		}
	}
	return s
}

// dialReason is why a dial failed, in the operating system's or the
// address's words, without the swarm's wrappings ("failed to dial: failed
// to dial X: all dials failed ..."): the reason of the first address
// tried. An address that answers but not as libp2p (a web server, say)
// ends multistream's negotiation with a message about newlines or an EOF;
// that is said in a person's words.
func dialReason(err error) string {
	lines := strings.Split(err.Error(), "\n")
	reason := lastPart(lines[0])
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "* ") {
			reason = lastPart(l)
			break
		}
	}
	switch reason {
	case "message did not have trailing newline", "unexpected EOF", "EOF", "connection reset by peer",
		"message too large", "protocols not supported", "protocol not supported":
		return "the address answers, but not as a libp2p node"
	}
	return reason
}

func lastPart(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

func explainExchangeError(p peer.ID, err error) error {
	s := err.Error()
	var kc *node.KeyChangeError
	switch {
	case strings.Contains(s, "protocols not supported") || strings.Contains(s, "protocol not supported"):
		return fmt.Errorf("%s does not speak %s (not a p2pkex node?)", p, protocol.ID)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("exchange with %s timed out", p)
	case wrongIdentity(&peer.AddrInfo{ID: p}, err) != nil:
		return wrongIdentity(&peer.AddrInfo{ID: p}, err)
	case errors.As(err, &kc) && kc.Rollback: // the warning line says more
		return fmt.Errorf("exchange with %s refused under every trust policy: its exchange-key record cannot follow the one held (%s)", p, kc.Reason)
	case errors.As(err, &kc) && kc.Change == node.KeyReset:
		return fmt.Errorf("exchange with %s refused by trust policy %q: its key store was reset", p, kc.Policy)
	case errors.As(err, &kc):
		return fmt.Errorf("exchange with %s refused by trust policy %q: its exchange key changed without a rotation", p, kc.Policy)
	case errors.Is(err, protocol.ErrDowngrade):
		return fmt.Errorf("exchange with %s refused: it chose a weaker suite than both sides support (suite downgrade)", p)
	case errors.Is(err, protocol.ErrRollback): // a key change no policy may accept (docs/SECURITY.md)
		return fmt.Errorf("exchange with %s refused under every trust policy: its exchange-key record cannot follow the one held (%s)", p, err)
	}
	return fmt.Errorf("exchange with %s failed: %s", p, shortDialError(err))
}
