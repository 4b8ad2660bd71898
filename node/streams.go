package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
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

// closeWait bounds how long a side that ends a stream after its last notice
// waits for the peer's end of stream (docs/PROTOCOL.md section 2): closing
// the connection, or exiting, while the peer has not read everything can
// drop the last PART_RECEIVED (a TCP close with unread data resets).
const closeWait = 2 * time.Second

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
		n.closeGracefully(s)
		return
	}
	n.mu.Lock()
	old := n.kept[p]
	if n.closed || n.cfg.streamIdle == 0 || (old == nil && len(n.kept) >= n.cfg.maxInbound) {
		n.mu.Unlock()
		n.closeGracefully(s)
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

// closingStreams counts a peer's outbound streams that closeGracefully is
// ending; done is closed when the last has ended.
type closingStreams struct {
	n    int
	done chan struct{}
}

// closeGracefully ends an outbound stream after the last notice of an
// exchange: half-close, then wait (in the background, at most closeWait)
// for the peer's end of stream before closing, so that the notices written
// last reach the peer even if the node closes its host right after
// (docs/PROTOCOL.md section 2). Close waits for it, and so does the next
// new stream to the peer (awaitClosing).
func (n *Node) closeGracefully(s network.Stream) {
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return
	}
	p := s.Conn().RemotePeer()
	n.mu.Lock()
	c := n.closing[p]
	if c == nil {
		c = &closingStreams{done: make(chan struct{})}
		n.closing[p] = c
	}
	c.n++
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			if c.n--; c.n == 0 {
				delete(n.closing, p)
				close(c.done)
			}
			n.mu.Unlock()
		}()
		_ = s.SetReadDeadline(time.Now().Add(closeWait))
		// The peer sends nothing more after its last notice; bound what
		// is read in case it does.
		if _, err := io.Copy(io.Discard, io.LimitReader(s, protocol.MaxNoticeSize)); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	}()
}

// awaitClosing waits until no stream to p is still closing
// (closeGracefully), or ctx ends. The resource manager counts a closing
// stream against the service's per-peer outbound limit until it has ended
// (SetServiceLimits allows one beside the exchange's own): exchanges on new
// streams one after another with a peer slow to end them (a loaded
// responder; kept streams off, or over a relayed connection) would
// otherwise pile up closing streams until the node's own limit refused the
// next exchange. The wait is short in the usual case: the peer's end of
// stream is due as soon as it has read the last notice, and closeGracefully
// waits for it at most closeWait.
func (n *Node) awaitClosing(ctx context.Context, p peer.ID) error {
	n.mu.Lock()
	c := n.closing[p]
	n.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the last exchange stream to %s to close: %w", p, ctx.Err())
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
		n.closeGracefully(k.s)
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
	info, err = n.run(ctx, s, protocol.Initiator, sl, false)
	if err == nil || ctx.Err() != nil {
		return info, false, err
	}
	n.mu.Lock()
	answered := sl.answered
	n.mu.Unlock()
	// Before the peer's CONTINUE, an ABORT (or a reset with a status) other
	// than a refusal may be the end of the previous exchange on this stream:
	// the peer rejected our last PART_RECEIVED after we had verified its
	// own and installed (docs/PROTOCOL.md section 16). It is not this
	// exchange's answer, so this exchange runs again on a new stream. A
	// START the peer really rejected is rejected there again.
	var ae *protocol.AbortError
	stale := errors.As(err, &ae) && !errors.Is(err, protocol.ErrBusy) && !errors.Is(err, protocol.ErrConflict)
	closed := errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, network.ErrReset)
	return nil, !answered && (stale || (closed && ae == nil)), err
}

// awaitNext waits on s, whose exchange as responder has succeeded (its
// commit may still be in flight: pipeline.go), for the peer's next
// exchange, and returns the stream to run it on. It returns nil
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
	// The idle timeout runs until the next START; Run then sets the phase
	// deadline (docs/PROTOCOL.md section 2).
	_ = s.SetReadDeadline(time.Now().Add(responderIdleTimeout))
	frame, err := protocol.NewFrameReader(s).ReadFrame(n.cfg.noticeSize)
	switch {
	case errors.Is(err, io.EOF):
		_ = s.Close()
		return nil
	case err != nil:
		// A reset (with or without a status: either ends the previous
		// exchange, see below), or a first frame that breaks V1-V3.
		log.Debugw("idle exchange stream ended", "peer", s.Conn().RemotePeer(), "err", err)
		if errors.Is(err, protocol.ErrFrameTooLarge) || errors.Is(err, protocol.ErrMalformed) {
			abortStream(s, err)
		} else {
			// A reset by the peer, the idle timeout, or this node
			// closing the stream: nothing is owed to the peer, so end it
			// as before, with Close. (A Reset here would race a Close of
			// the stream by this node: go-yamux's CloseRead wakes this
			// read with ErrStreamReset, and the Close then fails.)
			_ = s.Close()
		}
		return nil
	}
	var notice pb.Notice
	if proto.Unmarshal(frame, &notice) == nil && notice.Type == pb.Notice_ABORT {
		// The peer gave up on the exchange this side completed (it
		// rejected our PART_RECEIVED after we verified its own). It
		// belongs to that exchange, not to a next one: this side keeps its
		// key (docs/PROTOCOL.md section 16) and ends the stream.
		log.Debugw("ABORT after a completed exchange", "peer", s.Conn().RemotePeer(), "status", notice.GetAbort().GetStatus())
		_ = s.Reset()
		return nil
	}
	return &resumedStream{Stream: s, first: protocol.AppendFrame(nil, frame)}
}

// abortStream answers a notice that breaks a rule with ABORT and a reset
// that carries the status (docs/PROTOCOL.md section 16).
func abortStream(s network.Stream, err error) {
	if b, mErr := protocol.AbortNotice(err); mErr == nil {
		_ = s.SetWriteDeadline(time.Now().Add(time.Second))
		_ = protocol.WriteFrames(s, [][]byte{b})
	}
	_ = s.ResetWithError(protocol.ResetCode(err))
}

// resumedStream is a kept inbound stream whose first frame awaitNext has
// read; Read gives it back first. (The FrameReader reads nothing beyond the
// frame, so nothing else is ever buffered.)
type resumedStream struct {
	network.Stream
	first []byte
}

func (r *resumedStream) Read(b []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(b, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return r.Stream.Read(b)
}
