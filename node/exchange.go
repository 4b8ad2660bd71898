package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// KeyInfo describes a key an exchange installed. It never holds the key.
type KeyInfo struct {
	Peer  peer.ID
	Role  protocol.Role // this node's role in the exchange
	Epoch uint64
	KeyID peerstore.KeyID
	Suite protocol.Suite
	// SentOwnKey and ReceivedPeerKey say which exchange-key records phase 2
	// carried, from this node's point of view; InitiatorKeySent and
	// ResponderKeySent say the same by role.
	SentOwnKey, ReceivedPeerKey        bool
	InitiatorKeySent, ResponderKeySent bool
	// PeerFingerprint names the peer's exchange-key record the part was
	// sealed to.
	PeerFingerprint protocol.Fingerprint
	NoticeSize      int
	// Trust holds the trust events of the exchange, each also published as
	// EventTrustChanged: the peer's first record pinned (KeyFirstContact),
	// a store reset or unaccounted change accepted (the peer is now
	// changed). Nil when there were none (a rotation is none).
	Trust []TrustChange
}

// slot is the one exchange with a peer that may run at a time.
type slot struct {
	outbound bool
	done     chan struct{}
	cancel   context.CancelFunc
	waiters  int
	// follow is set when this outbound exchange gave way to the peer's
	// simultaneous one: its waiters take that one's result.
	follow *slot
	// answered is set, under the node lock, when an outbound exchange
	// reads the peer's CONTINUE: the peer's responder took it, so a START
	// from the peer is no simultaneous start but the peer's next exchange
	// (its responder may have finished and freed its slot while this side
	// still reads the last notice): it waits for this one to finish.
	answered bool
	info     *KeyInfo
	err      error
	// phase is the phase the slot's exchange has reached, under the node
	// lock: a message from a peer without a session waits only for an
	// exchange in phase 3 or later (msgadmit.go).
	phase protocol.Phase
	// Pipelined commits (pipeline.go). committing is the epoch an inbound
	// exchange installs once its run succeeded (set and read by its
	// stream's handler). next, under the node lock, is the exchange the
	// peer started on the same kept stream while this one's commit was in
	// flight: not in n.slots until finish hands this slot's place to it.
	// held is set while this exchange follows one whose result finish has
	// not published; its events wait in queued (under the node lock).
	committing uint64
	next       *slot
	held       atomic.Bool
	queued     []Event
	// admitted, set by serve before the run, is what admission read of the
	// peer (Lookup), for the machine to use instead of reading the store
	// again: only for an exchange that follows one on its kept stream
	// without waiting (serve says why that is safe). Nil: the machine reads.
	admitted *peerstore.PeerState
}

// Exchange runs the key exchange with p (connecting through the host's
// peerstore addresses if needed) and returns the installed key's metadata.
// If an exchange with p is already running, in either direction, Exchange
// waits for it and returns its result (one the peer withdraws after a
// simultaneous start is followed by an exchange of its own,
// handOnWithdrawn). Cancelling ctx stops waiting; the
// exchange itself is cancelled when no caller waits for it any more.
//
// The exchange is with p or fails: another identity answering at p's
// address is an *IdentityChangeError under every trust policy
// (identity.go). The trust events of the exchange are in KeyInfo.Trust,
// or, when it failed, in TrustEvents(err) (trust.go).
func (n *Node) Exchange(ctx context.Context, p peer.ID) (*KeyInfo, error) {
	if p == n.host.ID() {
		return nil, errors.New("cannot exchange keys with self")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("invalid peer ID: %w", err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	s := n.slots[p]
	if s == nil {
		s = n.startOutbound(p)
	}
	s.waiters++
	n.mu.Unlock()
	return n.wait(ctx, s)
}

func (n *Node) wait(ctx context.Context, s *slot) (*KeyInfo, error) {
	for {
		select {
		case <-s.done:
			n.mu.Lock()
			if s.follow != nil {
				s = s.follow // our count moved there with the yield
				n.mu.Unlock()
				continue
			}
			s.waiters--
			n.mu.Unlock()
			return s.info, s.err
		case <-ctx.Done():
			n.mu.Lock()
			for s.follow != nil {
				s = s.follow
			}
			s.waiters--
			if s.waiters == 0 && s.outbound {
				s.cancel()
			}
			n.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// startOutbound registers and starts an outbound exchange. n.mu is held.
func (n *Node) startOutbound(p peer.ID) *slot {
	ctx, cancel := context.WithCancel(n.ctx)
	s := &slot{outbound: true, done: make(chan struct{}), cancel: cancel}
	n.slots[p] = s
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		protocol.GrowStack() // before the stream's opening and the store read
		info, err := n.initiate(ctx, p, s)
		for again := true; errors.Is(err, protocol.ErrConflict); again = false {
			// The peer started an exchange with us at the same moment and
			// won the tie-break; its START is on the way. Wait for the
			// handler to hand our waiters over to it.
			select {
			case <-ctx.Done():
			case <-time.After(n.cfg.phaseTimeout):
			}
			if !again || ctx.Err() != nil {
				break
			}
			// The peer's START never came: its exchange failed before it
			// reached us (tools/swarm saw it under load), and CONFLICT
			// has no exchange to join. Run ours once more
			// (docs/PROTOCOL.md section 17).
			log.Debugw("the peer's simultaneous exchange never came; running ours again", "peer", p)
			info, err = n.initiate(ctx, p, s)
		}
		n.finish(p, s, info, err)
	}()
	return s
}

// finish records a slot's result and frees the peer for the next exchange.
// The result is published under the node lock, so that it reaches
// subscribers before any event of the peer's next exchange, which needs the
// lock to take the slot (metrics.go pairs an exchange's events by peer).
//
// An exchange that followed s on its kept stream (pipeline.go) takes s's
// place, and its queued events follow s's result.
func (n *Node) finish(p peer.ID, s *slot, info *KeyInfo, err error) {
	n.mu.Lock()
	if n.slots[p] == s {
		if s.next != nil {
			n.slots[p] = s.next
		} else {
			delete(n.slots, p)
		}
	}
	if s.follow == nil {
		s.info, s.err = info, err
	}
	switch {
	case s.follow != nil:
	case err != nil:
		n.events.publish(Event{Time: time.Now(), Peer: p, Kind: EventFailed, Err: err})
	default:
		n.events.publish(Event{Time: time.Now(), Peer: p, Kind: EventDone, Info: info})
	}
	if nx := s.next; nx != nil {
		for _, ev := range nx.queued {
			n.events.publish(ev)
		}
		nx.queued = nil
		nx.held.Store(false)
	}
	n.mu.Unlock()
	close(s.done)
}

// initiate runs one exchange as initiator, on the stream kept from the last
// exchange with p if there is one (streams.go), else on a new stream.
func (n *Node) initiate(ctx context.Context, p peer.ID, sl *slot) (*KeyInfo, error) {
	if s := n.keptOutbound(p); s != nil {
		info, again, err := n.initiateOnKept(ctx, s, sl)
		if !again {
			return info, err
		}
		log.Debugw("kept stream ended; opening a new one", "peer", p, "err", err)
	}
	if err := n.awaitClosing(ctx, p); err != nil {
		return nil, err
	}
	// A relayed (limited) connection will do (nat.go); a dial backoff does
	// not stand (dial.go).
	s, err := n.newStream(ctx, p, protocol.ID)
	if err != nil {
		if err = n.identityChanged(p, err); errors.Is(err, ErrIdentityChanged) {
			return nil, err // one line of its own (identity.go)
		}
		if ae := protocol.AbortFromReset(err); ae != nil {
			// The responder gave up (its phase-1 deadline, say) and reset
			// the stream with the status before this side had read the
			// end of protocol negotiation, which NewStream does at first
			// contact: libp2p's error names only the reset and its code.
			return nil, fmt.Errorf("open %s stream to %s: %w (it reset the stream during protocol negotiation)", protocol.ID, p, ae)
		}
		return nil, fmt.Errorf("open %s stream to %s: %w", protocol.ID, p, err)
	}
	release, err := protocol.PrepareStream(s, n.cfg.noticeSize)
	if err != nil {
		s.Reset()
		return nil, err
	}
	defer release()
	return n.run(ctx, s, protocol.Initiator, sl, true)
}

// handleStream serves the exchanges of an inbound stream: the first, and
// after each that succeeds, the peer's next one on the same stream
// (streams.go).
func (n *Node) handleStream(s network.Stream) {
	protocol.GrowStack() // before admission's store read (classify)
	if err := protocol.AttachStream(s); err != nil {
		log.Debugw("refusing exchange", "peer", s.Conn().RemotePeer(), "err", err)
		if errors.Is(err, network.ErrResourceLimitExceeded) {
			// The service scope is full: over a limit, like the counts in serve.
			refuse(s, protocol.ErrBusy)
			return
		}
		s.Reset()
		return
	}
	// Each exchange's phase-1 deadline runs from the arrival of its stream
	// or, on a kept stream, of its START (admission.go). prev is the last
	// exchange served on s, whose commit may still be in flight
	// (pipeline.go).
	var prev *slot
	for cur, arrived := network.Stream(s), time.Now(); cur != nil; cur, arrived = n.awaitNext(s), time.Now() {
		var ok bool
		if prev, ok = n.serve(cur, arrived, prev); !ok {
			return
		}
	}
}

// serve runs one inbound exchange on s, which arrived at arrived; prev is
// the exchange served before it on the same kept stream, or nil. It
// returns the exchange's slot and reports whether its run succeeded and
// its commit succeeded or is in flight (pipeline.go); otherwise s has been
// reset or, on a refusal, closed. Admission (admission.go) decides first,
// from counts alone: nothing is reserved for an exchange it refuses.
func (n *Node) serve(s network.Stream, arrived time.Time, prev *slot) (*slot, bool) {
	p := s.Conn().RemotePeer()
	t := n.classify(s)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		refuse(s, ErrClosed)
		return nil, false
	}
	if over := n.admitLocked(p, t); over != nil {
		n.mu.Unlock()
		over.Add(1)
		log.Debugw("refusing exchange: over an inbound limit", "peer", p, "known", t.known, "origin", t.origin)
		refuse(s, protocol.ErrBusy)
		return nil, false
	}
	n.wg.Add(1)
	n.mu.Unlock()
	defer n.wg.Done()
	// The counts are given back before finish hands the peer's slot on:
	// otherwise the exchange waiting for the slot can run to its end, and
	// the peer's next START arrive, while this goroutine has yet to leave.
	// Called at most once (it runs on this goroutine only): no sync.Once,
	// which costs allocations per exchange.
	left := false
	leave := func() {
		if left {
			return
		}
		left = true
		n.mu.Lock()
		n.leaveLocked(p, t)
		n.mu.Unlock()
	}
	defer leave()
	// Memory only for an exchange the counts admit.
	release, err := protocol.ReserveExchange(s, n.cfg.noticeSize)
	if err != nil {
		log.Debugw("refusing exchange", "peer", p, "err", err)
		refuse(s, protocol.ErrBusy)
		return nil, false
	}
	defer release()
	// Waiting for the slot counts against phase 1.
	until := arrived.Add(n.phase1Timeout(t.known))
	si, pred, refusal := n.claimInbound(p, until, prev)
	if refusal != nil {
		if errors.Is(refusal, protocol.ErrBusy) {
			n.admit.slotWait.Add(1)
		}
		log.Debugw("refusing exchange", "peer", p, "reason", refusal)
		refuse(s, refusal)
		return nil, false
	}
	if pred != nil {
		// The machine may take admission's Lookup instead of a second
		// read of the store (a bbolt read transaction). With a pred,
		// claimInbound took the slot without waiting, and the only
		// exchange with p since admission's read is pred, whose commit
		// may have landed in between: it brought no record (else it would
		// have committed before this exchange was read), so the record
		// and its trust state are as admission read them, and its epoch
		// is covered, as in any case, by proposing above pred's. Writes
		// of the node's user (SetTrust, Forget) may land here as they may
		// between the machine's own read and the end of the exchange.
		si.admitted = t.state
	}
	// n.ctx itself: nothing cancels one inbound exchange but the node's
	// Close (its deadlines end it otherwise), and a context of its own
	// would cost allocations and a registration with n.ctx per exchange.
	res, tr, err := n.runProtocol(n.ctx, s, protocol.Responder, si, until, pred)
	leave()
	if err == nil && pred != nil {
		// The hold on PART_RECEIVED has waited for pred; this only makes
		// the order plain: nothing of this exchange is installed before
		// pred's commit returned.
		if err = prevInstalled(pred); err != nil {
			res.Wipe()
			s.Reset()
		}
	}
	if err != nil {
		if errors.Is(err, protocol.ErrTimeout) {
			n.admit.timedOut.Add(1)
			if !t.known {
				n.admit.timedOutUnknown.Add(1)
			}
		}
		if errors.Is(err, protocol.ErrConflict) {
			n.handOnWithdrawn(p, si)
		}
		if pred != nil {
			<-pred.done // its result first (finish hands the slot on)
		}
		n.finish(p, si, nil, err)
		return nil, false
	}
	if res.Received {
		// The peer's record and trust state change with this commit, and
		// the next exchange reads them from the store: commit first.
		info, err := n.complete(s, res, tr, prev == nil)
		res.Wipe()
		n.finish(p, si, info, err)
		return si, err == nil
	}
	// Commit in the background and go back to the stream for the peer's
	// next exchange (pipeline.go). serve's own count in n.wg covers this
	// Add.
	si.committing = res.Epoch
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer res.Wipe()
		info, err := n.complete(s, res, tr, prev == nil)
		n.finish(p, si, info, err)
	}()
	return si, true
}

// handOnWithdrawn gives the callers that joined si, an inbound exchange the
// peer withdrew with CONFLICT, an exchange of their own. The peer withdraws
// a START when its outbound exchange gave way to ours (claimInbound, on the
// peer): if ours had already been answered, this side's handler waited for
// it to finish and then took the peer's START as its next exchange
// (TestStartWhileOwnRunEnds), and a caller of Exchange that came in the
// meantime joined it. That caller asked for an exchange after ours ended;
// the peer's caller has ours, and nobody waits for the withdrawn one, so its
// CONFLICT is not the joined caller's answer (docs/PROTOCOL.md section 17).
func (n *Node) handOnWithdrawn(p peer.ID, si *slot) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if si.waiters == 0 || n.closed || n.slots[p] != si {
		return
	}
	o := n.startOutbound(p)
	si.follow = o
	o.waiters += si.waiters
	si.waiters = 0
	log.Debugw("peer withdrew its exchange; starting one for the callers that joined it", "peer", p, "callers", o.waiters)
}

// claimInbound takes the peer's slot for an inbound exchange. An exchange
// with the peer still finishing (its last notice may trail the peer's next
// START) is waited for, up to until, the exchange's phase-1 deadline. On a simultaneous start —
// an outbound exchange the peer has not answered yet — the tie-break
// decides: the smaller peer ID keeps its outbound exchange and refuses the
// inbound one with CONFLICT; the other side's outbound gives way, and its
// callers take the inbound exchange's result. An outbound exchange the peer
// answered is waited for like an inbound one: the peer's START is its next
// exchange, started after its responder finished ours (protocol/model,
// finding 3).
//
// prev is the exchange served before on the same kept stream, or nil. If
// it is still the peer's slot (its commit is in flight), the new exchange
// follows it without waiting (pipeline.go): the slot returned becomes the
// peer's when prev finishes, and pred, returned, is prev.
func (n *Node) claimInbound(p peer.ID, until time.Time, prev *slot) (si, pred *slot, err error) {
	// The timer only for a wait: most exchanges find the slot free.
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		cur := n.slots[p]
		switch {
		case n.closed:
			return nil, nil, ErrClosed
		case cur == nil:
			si := &slot{done: make(chan struct{})}
			n.slots[p] = si
			return si, nil, nil
		case cur == prev:
			si := &slot{done: make(chan struct{})}
			si.held.Store(true)
			prev.next = si
			return si, prev, nil
		case cur.outbound && !cur.answered && n.host.ID() < p:
			return nil, nil, protocol.ErrConflict
		case cur.outbound && !cur.answered:
			si := &slot{done: make(chan struct{})}
			n.slots[p] = si
			cur.follow = si
			si.waiters += cur.waiters
			cur.waiters = 0
			cur.cancel()
			return si, nil, nil
		}
		n.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(until))
		}
		select {
		case <-cur.done:
		case <-timer.C:
			n.mu.Lock()
			return nil, nil, protocol.ErrBusy
		case <-n.ctx.Done():
			n.mu.Lock()
			return nil, nil, ErrClosed
		}
		n.mu.Lock()
	}
}

// testHookRunEnded, if set, is called by run between a successful protocol
// run and the decision to install (tests hold an exchange in that window).
var testHookRunEnded atomic.Pointer[func(*Node, protocol.Role)]

// testHookCommitted, if set, is called by install between the store's
// commit of the new epoch and the node's record of it as fresh.
var testHookCommitted atomic.Pointer[func(peer.ID, protocol.Role)]

// errGaveWay ends an outbound exchange that gave way to the peer's
// simultaneous one; its callers never see it (they follow the other).
var errGaveWay = errors.New("exchange gave way to the peer's simultaneous one")

// refuse answers an exchange the node will not run with ABORT and closes
// the stream gracefully, so that the peer reads the status.
func refuse(s network.Stream, reason error) {
	b, err := protocol.AbortNotice(reason)
	if err == nil {
		_ = s.SetWriteDeadline(time.Now().Add(time.Second))
		_ = protocol.WriteFrames(s, [][]byte{b})
	}
	_ = s.Close()
}

// run drives one exchange over a prepared stream and installs its key. On
// failure it resets s. first says whether s is new: no exchange ran on it
// before (complete).
func (n *Node) run(ctx context.Context, s network.Stream, role protocol.Role, sl *slot, first bool) (*KeyInfo, error) {
	res, tr, err := n.runProtocol(ctx, s, role, sl, time.Time{}, nil)
	if err != nil {
		return nil, err
	}
	defer res.Wipe()
	return n.complete(s, res, tr, first)
}

// runProtocol drives one exchange over a prepared stream up to its result,
// which the caller installs (complete) and wipes. On failure it resets s. A
// non-zero phase1 is the deadline of phase 1 (an inbound exchange's,
// admission.go), which Run's phase deadlines then do not extend. pred, if
// not nil, is the exchange before this one on the same kept stream, whose
// commit may be in flight (pipeline.go): this one proposes an epoch above
// pred's and holds its PART_RECEIVED until pred is installed.
func (n *Node) runProtocol(ctx context.Context, s network.Stream, role protocol.Role, sl *slot, phase1 time.Time, pred *slot) (*protocol.Result, *trustRun, error) {
	p := s.Conn().RemotePeer()
	tr := &trustRun{} // trust.go
	var hold *heldStream
	var after uint64
	var sent func(pb.Notice_Type)
	if pred != nil {
		hold = &heldStream{prev: pred}
		after, sent = pred.committing, hold.sent
	}
	m, err := n.machine(role, p, s.Conn().RemotePublicKey(), sl, tr, after, sent)
	if err != nil {
		s.Reset()
		return nil, nil, err
	}
	defer m.Wipe()
	var rs protocol.Stream = s
	if !phase1.IsZero() {
		rs = &deadlineStream{Stream: s, until: phase1, m: m}
	}
	if hold != nil {
		hold.Stream = rs
		rs = hold
	}
	res, err := protocol.Run(ctx, rs, m, n.cfg.phaseTimeout)
	if err != nil {
		log.Debugw("exchange failed", "peer", p, "role", role, "err", err)
		n.reportFailure(p, tr, err) // trust.go
		if len(tr.events) > 0 {
			err = &trustEventsError{err: err, events: tr.events}
		}
		n.mu.Lock()
		gaveWay := sl.follow != nil
		n.mu.Unlock()
		var ae *protocol.AbortError
		switch {
		case gaveWay:
			// Cancelled because it gave way to the peer's simultaneous
			// exchange (claimInbound): the reset says so with CONFLICT.
			// The peer may answer this START after its own exchange
			// finished, and must not take the withdrawal for a failure of
			// its side (handOnWithdrawn; docs/PROTOCOL.md section 17).
			s.ResetWithError(protocol.ResetCode(protocol.ErrConflict))
		case errors.As(err, &ae):
			s.Reset()
		default:
			// The status travels in the reset too: it may overtake ABORT.
			s.ResetWithError(protocol.ResetCode(err))
		}
		return nil, nil, err
	}
	if h := testHookRunEnded.Load(); h != nil {
		(*h)(n, role)
	}
	// Whether this exchange may install is decided under the node lock: an
	// outbound exchange that gave way to the peer's simultaneous one must
	// not (its callers take the other one's key, and the other one's epoch
	// may be this one's). A slot gives way only before the peer answers
	// (claimInbound), and a run that gave way is cancelled, so this is a
	// safety check: the model shows no such run ever succeeds
	// (protocol/model, property 8).
	n.mu.Lock()
	gaveWay := sl.follow != nil
	n.mu.Unlock()
	if gaveWay {
		res.Wipe()
		s.Reset()
		return nil, nil, errGaveWay
	}
	return res, tr, nil
}

// complete installs the result of a successful run on s. On failure it
// resets s. first says whether this was the first exchange on s: only
// then is the connection marked as a known peer's (knownconns.go), since
// an earlier exchange on the same stream marked the same connection
// already (a connection-manager tag and an address lookup per exchange
// otherwise).
func (n *Node) complete(s network.Stream, res *protocol.Result, tr *trustRun, first bool) (*KeyInfo, error) {
	info, err := n.install(res, tr)
	if err != nil {
		s.Reset()
		return nil, err
	}
	if first {
		n.markKnown(res.Remote, s.Conn()) // knownconns.go
	}
	// The stream carries the next exchange with p (streams.go): the
	// initiator keeps it, the responder's handler waits on it.
	if res.Role == protocol.Initiator {
		n.keepOutbound(res.Remote, s)
	}
	return info, nil
}

// machine builds the state machine for an exchange with p from the store.
// A non-zero after is the epoch of an exchange with p whose commit may be
// in flight (pipeline.go): the proposal is above it, whatever the store
// holds yet. sent, if not nil, learns of every notice the machine builds.
func (n *Node) machine(role protocol.Role, p peer.ID, remoteKey crypto.PubKey, sl *slot, tr *trustRun, after uint64, sent func(pb.Notice_Type)) (*protocol.Machine, error) {
	n.mu.Lock()
	xk := n.xkey
	n.mu.Unlock()
	// One Lookup for what the exchange needs of the store: the record's
	// fingerprint and trust, the active epoch. It copies no record and
	// opens no session key (on bbolt an AES-GCM open per exchange, only
	// for the epoch).
	var st peerstore.PeerState
	var err error
	if sl.admitted != nil {
		st = *sl.admitted // serve: admission's read, still true
	} else if st, err = n.store.Lookup(p); err != nil && !errors.Is(err, peerstore.ErrNotFound) {
		return nil, fmt.Errorf("look up %s in the store: %w", p, err)
	}
	known, trust, err := n.knownRecord(p, &st)
	if err != nil {
		return nil, err
	}
	epoch := st.Epoch + 1
	epoch = max(epoch, after+1)
	return protocol.NewMachine(protocol.Config{
		Role:       role,
		Identity:   n.identity,
		Remote:     p,
		RemoteKey:  remoteKey,
		Own:        xk,
		Known:      known,
		Suites:     n.cfg.suites,
		NoticeSize: n.cfg.noticeSize,
		Epoch:      epoch,
		Accept:     n.accept(p, trust, st.Record, tr), // trust.go
		Trace: func(e protocol.Event) {
			if role == protocol.Initiator && e.Kind == protocol.EventNoticeReceived && e.Notice == pb.Notice_CONTINUE {
				n.mu.Lock()
				sl.answered = true // claimInbound
				n.mu.Unlock()
			}
			if e.Kind == protocol.EventPhaseEntered && e.Phase >= protocol.Phase3 {
				n.mu.Lock()
				sl.phase = e.Phase // mayMessage
				n.mu.Unlock()
			}
			if sent != nil && e.Kind == protocol.EventNoticeSent {
				sent(e.Notice)
			}
			if n.events.count.Load() != 0 { // else not even the clock is read
				n.publishStep(sl, Event{Time: time.Now(), Peer: p, Kind: EventStep, Step: e})
			}
		},
		Now: n.cfg.now,
	})
}

// knownRecord returns p's stored record, which st (p's Lookup) names, if
// it is still valid, and its trust state. A record that no longer
// validates (expired, say) counts as missing: phase 2 fetches a fresh one.
// The record is read from the store and parsed only when the cache does
// not hold the one st names.
func (n *Node) knownRecord(p peer.ID, st *peerstore.PeerState) (*protocol.PeerRecord, peerstore.TrustState, error) {
	if !st.Record {
		return nil, st.Trust, nil
	}
	now := n.cfg.now()
	if rec := n.records.get(p, st.Fingerprint, now); rec != nil {
		return rec, st.Trust, nil
	}
	pk, err := n.store.Peer(p)
	if errors.Is(err, peerstore.ErrNotFound) {
		return nil, peerstore.TrustUnknown, nil // forgotten since the Lookup
	}
	if err != nil {
		return nil, peerstore.TrustUnknown, fmt.Errorf("read record of %s: %w", p, err)
	}
	rec, err := protocol.ParsePeerRecord(pk.Record, p, now)
	if err != nil {
		log.Debugw("stored record unusable; will fetch a new one", "peer", p, "err", err)
		return nil, pk.Trust, nil
	}
	n.records.put(rec)
	return rec, pk.Trust, nil
}

// install commits a finished exchange: the new epoch and, if phase 2
// brought one, the peer's record, in one transaction.
func (n *Node) install(res *protocol.Result, tr *trustRun) (*KeyInfo, error) {
	now := n.cfg.now()
	c := peerstore.Commit{
		Session: peerstore.SessionKey{
			Peer:    res.Remote,
			Epoch:   res.Epoch,
			Key:     peerstore.Key(res.Key),
			ID:      peerstore.KeyID(res.KeyID),
			Suite:   uint16(res.Suite),
			Created: now,
		},
		Seen: now,
	}
	defer clear(c.Session.Key[:])
	var event *TrustChange
	if res.Received {
		var trust peerstore.TrustState
		trust, event = n.trustAfter(res.Remote, tr) // trust.go
		rec := res.PeerRecord
		c.PeerKey = &peerstore.PeerKey{
			Peer:        res.Remote,
			Seq:         rec.Seq,
			Record:      rec.Envelope,
			Fingerprint: rec.Fingerprint[:],
			Trust:       trust,
			FirstSeen:   now,
			LastSeen:    now,
		}
	}
	if err := n.store.CommitExchange(c); err != nil {
		return nil, fmt.Errorf("install key: %w", err)
	}
	if res.Received {
		// The machine validated it for this peer (ParsePeerRecord): the
		// next exchange finds it parsed (knownRecord) instead of reading
		// it back from the store and checking its signature again.
		n.records.put(res.PeerRecord)
	}
	if hook := testHookCommitted.Load(); hook != nil {
		(*hook)(res.Remote, res.Role)
	}
	// After the commit, so that an epoch the store refused (one installed
	// before the node started) is never called fresh. A message under the
	// epoch that reads the new session before this line waits for the
	// exchange to end (awaitFresh, messaging.go).
	n.msg.installed(res.Remote, res.Epoch) // messaging.go: a fresh epoch
	info := &KeyInfo{
		Peer:             res.Remote,
		Role:             res.Role,
		Epoch:            res.Epoch,
		KeyID:            peerstore.KeyID(res.KeyID),
		Suite:            res.Suite,
		InitiatorKeySent: res.InitiatorKeySent,
		ResponderKeySent: res.ResponderKeySent,
		PeerFingerprint:  res.PeerRecord.Fingerprint,
		NoticeSize:       res.NoticeSize,
	}
	if event != nil {
		// Reported once the key and the record are in, never for an
		// exchange that stored nothing.
		event.Suite = res.Suite
		n.reportTrust(tr, event)
		info.Trust = tr.events
	}
	if res.Role == protocol.Initiator {
		info.SentOwnKey, info.ReceivedPeerKey = res.InitiatorKeySent, res.ResponderKeySent
	} else {
		info.SentOwnKey, info.ReceivedPeerKey = res.ResponderKeySent, res.InitiatorKeySent
	}
	if debugEnabled() { // the arguments cost allocations even when not logged
		log.Debugw("key installed", "peer", res.Remote, "epoch", res.Epoch, "key_id", info.KeyID) // a Stringer: formatted only if logged
	}
	return info, nil
}
