package node

import (
	"fmt"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Pipelined commits on a kept stream (issue 15, docs/performance/store.md).
//
// A responder commits an exchange after its protocol run (install). If its
// handler read the peer's next START only after that commit, every
// commit's latency (a group commit's fdatasyncs on bbolt, and the wait for
// a CPU after them) would be added to the cycle of every peer that runs
// one exchange after another on a kept stream. So when the run of an
// inbound exchange k has succeeded and it brought no record of the peer
// (the common case: both records known), the handler commits k in a
// goroutine of its own and goes back to the stream at once: it reads the
// peer's next START, and runs exchange k+1 up to the point where k+1 would
// first let anything of itself take effect. What is ordered after k's
// commit has returned (its slot's done channel closed by finish, with no
// error):
//
//   - this side's PART_RECEIVED of k+1 (heldStream): the notice that lets
//     the initiator install k+1. Until it is written the initiator cannot
//     complete k+1, so it holds at most k, as today;
//   - k+1's install, its answer to callers, its events, and message
//     acceptance under epoch k+1 (all after PART_RECEIVED, and finish(k)
//     hands the peer's slot to k+1 only after it published k's result:
//     k's events reach subscribers before any of k+1's, queued until then).
//
// What k+1 does before that needs nothing of k on disk: phase 1 (CONTINUE
// proposes epoch k+1, carried in memory from k's result instead of read
// from the store, so that the proposal is the one the store will hold);
// phases 2 and 3 up to the derivation of k+1's key, in memory. Only an
// exchange without a received record is pipelined, so the peer's record
// and trust state k+1 reads from the store are those k leaves there.
//
// The guarantees this keeps, and why:
//
//  1. No key is used or reported before it is committed: k's result,
//     events and message acceptance (messaging's installed) come after its
//     commit, in the commit's goroutine; k+1's come after k's commit and its
//     own.
//  2. Crash safety. A SIGKILL while k's commit is in flight leaves this
//     side with epoch k-1 (or k, if bbolt's commit reached the disk) and the
//     initiator with k, which it installed when it read k's PART_RECEIVED
//     (sent before the commit, as always): one epoch ahead, the state of a
//     lost last PART_RECEIVED or of a kill before the commit today
//     (docs/SECURITY.md, "Crash safety", findings). k+1 cannot have
//     completed on the initiator (this side held its PART_RECEIVED), so it
//     is not two ahead. A kill between k's commit and k+1's leaves k here
//     and k, perhaps k+1, there: again at most one ahead. Either converges
//     at the next exchange, whose epoch is the larger proposal. Nothing of
//     k+1 reached the store before k's commit returned.
//  3. Epochs strictly increasing per peer: k+1 proposes at least k's epoch
//     + 1, and its commit starts after k's returned.
//  4. Replay rules: messages are accepted under epochs installed since
//     start, and messaging learns of an epoch (installed) only after its
//     commit, in order.
//  5. Simultaneous start and the kept stream: k's slot stays the peer's
//     slot until its commit returned (a caller of Exchange meanwhile joins
//     k, as it joins any exchange that is installing); k+1 follows k on the
//     same stream without waiting in claimInbound, which would otherwise
//     wait for k (the START on a kept stream is the peer's next exchange,
//     never a simultaneous one: the peer answered nothing of ours). A START
//     on another stream still waits for k as before.
//
// If k's commit fails, k's goroutine resets the stream (as install did) and
// k+1 fails without installing: a START not yet answered is run again by
// the initiator on a new stream (docs/PROTOCOL.md section 2), one already
// answered fails its caller, which a store that cannot commit would do in
// any case.

// heldStream is the stream of an inbound exchange that follows prev on a
// kept stream while prev's commit may be in flight: the write that carries
// this side's PART_RECEIVED (armed by the machine's trace, which reports
// the notice as sent when the machine builds it, before Run writes it)
// waits for prev's commit, and fails if prev was not installed.
type heldStream struct {
	protocol.Stream
	prev  *slot
	armed bool // set and read on Run's goroutine (trace, then Write)
}

// sent is the machine's trace of the notices it builds.
func (h *heldStream) sent(t pb.Notice_Type) {
	if t == pb.Notice_PART_RECEIVED {
		h.armed = true
	}
}

func (h *heldStream) Write(b []byte) (int, error) {
	if h.armed && h.prev != nil {
		if err := prevInstalled(h.prev); err != nil {
			return 0, err
		}
		h.prev = nil
	}
	return h.Stream.Write(b)
}

// prevInstalled waits for the inbound exchange prev to finish and returns
// an error if it did not install its key.
func prevInstalled(prev *slot) error {
	<-prev.done
	// finish set err before it closed done.
	if prev.err != nil {
		return fmt.Errorf("the previous exchange on the stream was not installed: %w", prev.err)
	}
	return nil
}

// publishStep publishes an event of sl's exchange, or queues it while sl
// follows an exchange whose result is not published yet (finish flushes
// the queue after that result).
func (n *Node) publishStep(sl *slot, ev Event) {
	if n.events.count.Load() == 0 {
		return // as publish: no subscriber could have seen it yet
	}
	if sl.held.Load() {
		n.mu.Lock()
		if sl.held.Load() {
			sl.queued = append(sl.queued, ev)
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
	}
	n.events.publish(ev)
}
