package node

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/protocol"
)

// Streams that carry one exchange after another (docs/PROTOCOL.md section 2).
//
// Opening a stream costs libp2p six frames besides the exchange's own (the
// muxer's SYN and ACK, multistream-select's header and echo, and both
// sides' FIN), each a record and a system call on either side, and the
// resource manager's and the muxer's bookkeeping: about a sixth of an
// exchange's CPU beside its cryptography (docs/PERFORMANCE.md). So after a
// successful exchange the initiator keeps its stream to the peer for its
// next exchange with that peer, and the responder keeps reading it for the
// next START. Either side may end an idle stream at any time; an initiator
// whose START meets a stream the responder has just ended opens a new one.

// DefaultStreamIdleTimeout is how long an initiator keeps a stream between
// two exchanges with a peer (WithStreamIdleTimeout). A responder waits a
// minute longer (responderIdleTimeout), so that it is the initiator that
// normally ends an idle stream, never while its next START is on the way.
const DefaultStreamIdleTimeout = 5 * time.Minute

const responderIdleTimeout = DefaultStreamIdleTimeout + time.Minute

// keptStream is an initiator's idle stream to a peer.
type keptStream struct {
	s     network.Stream
	timer *time.Timer
}

// keepOutbound keeps s, whose exchange with p has succeeded, for the next
// exchange with p. The node keeps one stream per peer, at most as many as
// the inbound exchanges it admits (WithInboundLimits); beyond that, once the
// node closes, or when s runs over a limited (relayed) connection, s is
// closed: a relayed connection lasts only as long as the relay allows, and
// the next exchange should go over the direct connection hole punching may
// have opened since (NewStream prefers it).
func (n *Node) keepOutbound(p peer.ID, s network.Stream) {
	if s.Conn().Stat().Limited {
		_ = s.Close()
		return
	}
	n.mu.Lock()
	old := n.kept[p]
	if n.closed || n.cfg.streamIdle == 0 || (old == nil && len(n.kept) >= n.cfg.maxInbound) {
		n.mu.Unlock()
		_ = s.Close()
		return
	}
	k := &keptStream{s: s}
	k.timer = time.AfterFunc(n.cfg.streamIdle, func() {
		if n.takeKept(p, k) {
			_ = s.Close()
		}
	})
	n.kept[p] = k
	n.mu.Unlock()
	if old != nil {
		old.timer.Stop()
		_ = old.s.Close()
	}
}

// takeKept removes k from the kept streams; it reports whether k was there.
func (n *Node) takeKept(p peer.ID, k *keptStream) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kept[p] != k {
		return false
	}
	delete(n.kept, p)
	k.timer.Stop()
	return true
}

// keptOutbound takes the stream kept for p, if there is one whose
// connection is still open.
func (n *Node) keptOutbound(p peer.ID) network.Stream {
	n.mu.Lock()
	k := n.kept[p]
	delete(n.kept, p)
	n.mu.Unlock()
	if k == nil {
		return nil
	}
	k.timer.Stop() // its takeKept finds k gone, if it runs
	if k.s.Conn().IsClosed() {
		_ = k.s.Reset()
		return nil
	}
	return k.s
}

// closeKept closes every kept stream (Close).
func (n *Node) closeKept() {
	n.mu.Lock()
	kept := n.kept
	n.kept = map[peer.ID]*keptStream{}
	n.mu.Unlock()
	for _, k := range kept {
		k.timer.Stop()
		_ = k.s.Close()
	}
}

// initiateOnKept runs an exchange on a kept stream. again reports that the
// stream turned out to be closed before the peer read the START (the peer
// ended it while idle, or the connection went): nothing of the exchange
// happened on the peer's side, and the caller should open a new stream.
func (n *Node) initiateOnKept(ctx context.Context, s network.Stream, sl *slot) (info *KeyInfo, again bool, err error) {
	release, err := protocol.ReserveExchange(s, n.cfg.noticeSize)
	if err != nil {
		_ = s.Reset()
		return nil, false, err // a new stream would be over the same limit
	}
	defer release()
	info, err = n.run(ctx, s, protocol.Initiator, sl, time.Time{})
	if err == nil || ctx.Err() != nil {
		return info, false, err
	}
	n.mu.Lock()
	answered := sl.answered
	n.mu.Unlock()
	var ae *protocol.AbortError
	closed := errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, network.ErrReset)
	return nil, !answered && closed && !errors.As(err, &ae), err
}

// awaitNext waits on s, whose exchange as responder has succeeded, for the
// peer's next exchange, and returns the stream to run it on. It returns nil
// once s has ended: the peer closed it, it stayed idle for
// responderIdleTimeout, or the node closes. Idle streams are bounded like
// running exchanges (WithInboundLimits); beyond that, s is closed at once.
func (n *Node) awaitNext(s network.Stream) network.Stream {
	n.mu.Lock()
	if n.closed || n.idleInbound >= n.cfg.maxInbound {
		n.mu.Unlock()
		_ = s.Close()
		return nil
	}
	n.idleInbound++
	n.wg.Add(1)
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.idleInbound--
		n.mu.Unlock()
		n.wg.Done()
	}()
	// A reset, not a deadline, ends the wait when the node closes: it also
	// ends it on a stream that ignores deadlines (mocknet's).
	stop := context.AfterFunc(n.ctx, func() { _ = s.Reset() })
	defer stop()
	_ = s.SetReadDeadline(time.Now().Add(responderIdleTimeout))
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		_ = s.Close()
		return nil
	}
	return &resumedStream{Stream: s, first: b[0]}
}

// resumedStream is a kept inbound stream whose first byte awaitNext has
// read; Read gives it back first. (The FrameReader reads a frame's length
// byte by byte, so nothing else is ever buffered.)
type resumedStream struct {
	network.Stream
	first byte
	given bool
}

func (r *resumedStream) Read(b []byte) (int, error) {
	if !r.given && len(b) > 0 {
		b[0], r.given = r.first, true
		return 1, nil
	}
	return r.Stream.Read(b)
}
