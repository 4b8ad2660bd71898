package main

import (
	"errors"
	"net"
	"strings"

	"github.com/libp2p/go-libp2p/core/network"
	lswarm "github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

type protocolAbort = protocol.AbortError

// resetStatus returns the status a peer's stream reset carries
// (protocol.AbortCodeBase + status: the node resets a stream it gives up on
// with the ABORT status, which may come before the initiator has finished
// negotiating the protocol, where no AbortError is made of it).
func resetStatus(err error) (pb.Status, bool) {
	if ae := protocol.AbortFromReset(err); ae != nil {
		return ae.Status, true
	}
	return 0, false
}

// isTimeout: a deadline ran out (the node's phase timeout, a stream or dial
// deadline).
func isTimeout(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, protocol.ErrTimeout) {
		return true
	}

	s := err.Error()
	return strings.Contains(s, "timeout") || strings.Contains(s, "deadline exceeded")
}

// isPeerTimeout: the peer gave up on a deadline of its own (it sent ABORT
// TIMEOUT, or reset the stream with that status): for a first contact,
// usually the responder's phase-1 deadline for unknown peers
// (node.DefaultUnknownPhase1Timeout, 2 s from the stream's arrival).
func isPeerTimeout(err error) bool {
	var abort *protocol.AbortError
	if errors.As(err, &abort) && abort.Status == pb.Status_TIMEOUT {
		return true
	}
	st, ok := resetStatus(err)
	return ok && st == pb.Status_TIMEOUT
}

// isRefusal: the peer answered, and said no (ABORT, a refused message, a
// resource limit, a protocol it does not serve).
func isRefusal(err error) bool {
	var re *node.RefusedError
	if errors.As(err, &re) || errors.Is(err, protocol.ErrBusy) || errors.Is(err, network.ErrResourceLimitExceeded) {
		return true
	}
	if _, ok := resetStatus(err); ok {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "protocols not supported") || strings.Contains(s, "resource limit")
}

// isBackoff: libp2p did not even try to dial the peer, because dials to
// its addresses failed within the last seconds (the swarm's dial backoff,
// 5 s and up), typically while the peer was away.
func isBackoff(err error) bool {
	return errors.Is(err, lswarm.ErrDialBackoff) || strings.Contains(err.Error(), lswarm.ErrDialBackoff.Error())
}

// isDial: no connection to the peer could be made.
func isDial(err error) bool {
	var de *lswarm.DialError
	if errors.As(err, &de) || errors.Is(err, lswarm.ErrDialBackoff) || errors.Is(err, lswarm.ErrNoAddresses) {
		return true
	}
	return strings.Contains(err.Error(), "failed to dial")
}
