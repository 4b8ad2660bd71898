package peerstore

// Group commit: the bbolt store's CommitExchange calls that arrive while
// another commit is being written share one transaction and its two syncs
// of store.db.
//
// Without it every exchange pays bbolt's two fdatasyncs of its own (the
// data pages, then the meta page), one writer at a time: about 0.5–0.7 ms
// per commit on the machine of docs/PERFORMANCE.md, which capped a loaded
// daemon at about a third of the rate of the same node on the in-memory
// store (issue 15). The key file costs the batch no sync before its commit
// (its slots come from the pool of synced keys, shred.go) and one after it
// (destroy the pruned keys, refill the pool), which overlaps with the next
// batch.
//
// The scheme is the classic one: a caller that finds no commit under way
// leads at once (an idle store adds no latency); callers that arrive while
// one is being written queue; when the leader's transaction has committed,
// the leader answers the callers of its batch and hands the lead to the
// first of the queue, which takes the whole queue as the next batch.
//
// A leader that was handed the lead waits a little before it takes the
// queue (waitBefore). Without the wait a batch is what arrived during one
// commit: at 64 exchanges in flight about 3 callers, so that every
// exchange paid about one fdatasync (three per batch), and a sync costs
// about 0.1 ms of kernel CPU here (docs/performance/store.md). The wait is
// on no one's critical path as long as it stays within the callers'
// slack: the responder commits in the background while the peer's next
// exchange runs (node/pipeline.go), and that exchange needs the commit
// only at its end, about a cycle later. So the leader waits half the
// slack, at most maxBatchWait: the time between two commits of one caller
// (its cycle, a moving average) less the time a caller waits for its
// answer (a moving average). A wait adds to the latter, so the waits
// settle at about a third of the slack there was without them. At 64 in
// flight (a cycle of about 40 ms, commits answered in a few) that is the
// 10 ms cap, and a batch about three times larger; with few exchanges in
// flight the cycle is short and so is the wait; with no cycle known
// (first contacts: each peer commits once) there is none. The wait ends
// at once when every caller that could still come is queued: callers
// name who commits (the peer), and a node commits one exchange of a peer
// at a time, so no more are to be expected than the peers that committed
// in the last activeWindow (and batchFull queued are enough in any case).
// A leader waits so when commits are known to overlap: it was handed the
// lead (callers queued during the last commit), or the last batch held
// more than one caller. Without the latter, at 64 in flight the batch
// after a large one was mostly a single commit (nobody had queued during
// the large one's commit), paying the three syncs alone, and often so
// was the one after it: in a run of the bench 273 of 357 transactions
// held one commit, about 100 of them its one-at-a-time step's
// (docs/performance/store.md). A store used
// one commit at a time never waits: its batches hold one caller each and
// nobody queues during them. So does one whose commits follow one
// another (exchanges run one at a time, each waiting for the last
// commit), where a wait would only add to every exchange.
//
// The lead passes on as soon as the transaction committed, before the
// slots of what it pruned are overwritten: that sync of the key file
// overlaps with the next batch, and the callers are answered once it is
// done. A batch that pruned nothing is answered at once, and its leader
// refills the pool afterwards if it is half empty.
//
// The guarantees are those of write (bolt.go), for every caller:
//   - no caller is answered before the transaction that holds its commit
//     is committed and synced, and the slots of what it pruned are
//     overwritten and the overwrite synced;
//   - the shredding keys of every secret sealed in the batch are synced
//     before the transaction commits (in an earlier sync, for the pool's
//     slots, or in one sync for the batch);
//   - a failed caller leaves nothing: if one caller's function fails, the
//     whole transaction is rolled back, its fresh slots wiped, and every
//     caller of the batch runs again alone, in arrival order (as bbolt's
//     own DB.Batch does), so that each gets the answer it would have got
//     alone and no caller's partial writes reach another's commit.
// A crash inside a batch leaves each caller's commit wholly there or
// wholly absent, as for a single commit; the failpoints BatchAfterWrite,
// BatchAfterCommit and BatchAfterOverwrite (batch_test.go,
// TestShredCrashBatch) kill a process inside a batch of several callers:
// before its commit, after it, and in the overwrite of the pruned slots
// after it; BatchWait kills it while a leader waits for more callers
// (nothing of its batch written, the batch before it committed). The wait
// writes nothing and answers no one, so it changes none of the above.

import (
	"errors"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2pkex/p2pkex/internal/failpoint"
)

// maxBatch bounds a batch, so that a failing caller's rerun of the others
// stays short.
const maxBatch = 256

const (
	// maxBatchWait bounds the wait of a leader that was handed the lead
	// (see the top of this file); batchFull callers queued, or all that
	// queued in the last activeWindow, end it. Measured in
	// docs/performance/store.md.
	maxBatchWait = 10 * time.Millisecond
	batchFull    = 64
	activeWindow = 500 * time.Millisecond
)

// waitBefore is how long a leader waits for more callers before it takes
// the queue: handed says it was handed the lead, last is how many callers
// the last batch held, queued callers are there, active is how many
// distinct callers committed in the last activeWindow, a caller's commits
// come cycle apart (0: unknown) and a caller waits lat for its answer.
func waitBefore(handed bool, last, queued, active int, cycle, lat time.Duration) time.Duration {
	if !handed && last <= 1 || queued >= min(active, batchFull) || cycle <= lat {
		return 0
	}
	return min((cycle-lat)/2, maxBatchWait)
}

// enough is how many queued callers end a leader's wait.
func enough(active int) int { return min(active, batchFull) }

// batchReq is one caller of the group commit.
type batchReq struct {
	who         string    // who commits (the peer): see waitBefore
	queued      time.Time // when it queued
	fn          func(w *writeTx) error
	afterCommit string     // the caller's failpoint after the commit
	done        chan error // its answer, or errLead; buffered (1)
}

// errLead, sent on a waiting caller's done, hands it the lead.
var errLead = errors.New("peerstore: lead the next batch")

// groupCommit queues the callers of writeBatched.
type groupCommit struct {
	mu    sync.Mutex
	queue []*batchReq
	busy  bool          // a leader is writing a batch, or has been handed the lead
	full  chan struct{} // while a leader waits for callers: closed once enough queued
	want  int           // while a leader waits: how many queued callers are enough

	// seen is when each caller (who) last queued, for the callers that
	// queued in the last activeWindow (older ones are dropped by a leader
	// now and then): how many callers may still come. cycle is the mean
	// time between two commits of one caller (a moving average over the
	// gaps within activeWindow), lat the mean time from a caller's queueing
	// to its answer (a moving average over the batches).
	seen   map[string]time.Time
	pruned time.Time
	cycle  time.Duration
	lat    time.Duration
	last   int // callers in the last batch taken (waitBefore)

	batches, commits, waits uint64 // transactions, callers committed, leaders that waited (tests)
}

// writeBatched is write for functions that may share a transaction with
// others: fn may be called more than once (once in a batch that is rolled
// back, then alone), and must have no effect outside w's transaction.
func (s *boltStore) writeBatched(who, afterCommit string, fn func(w *writeTx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.keys.markOpen(); err != nil {
		return err
	}
	now := time.Now()
	r := &batchReq{who: who, queued: now, fn: fn, afterCommit: afterCommit, done: make(chan error, 1)}
	g := &s.batch
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.seen == nil {
		g.seen = map[string]time.Time{}
	}
	if prev, ok := g.seen[who]; ok && now.Sub(prev) <= activeWindow {
		g.cycle += (now.Sub(prev) - g.cycle) / 8
	}
	g.seen[who] = now
	if !g.busy {
		g.busy = true
		s.lead(false) // unlocks g.mu
	} else {
		if g.full != nil && len(g.queue) >= g.want {
			close(g.full)
			g.full = nil
		}
		g.mu.Unlock()
	}
	for {
		err := <-r.done
		if err != errLead {
			return err
		}
		g.mu.Lock()
		s.lead(true)
	}
}

// lead writes the queued callers as one batch, answers them, and hands the
// lead to the first caller that queued meanwhile. It is called with g.mu
// held and g.busy set, and unlocks g.mu. Every caller of the batch holds
// s.mu shared while it waits, so Close waits for the batch.
func (s *boltStore) lead(handed bool) {
	g := &s.batch
	active := g.active(time.Now())
	if wait := waitBefore(handed, g.last, len(g.queue), active, g.cycle, g.lat); wait > 0 {
		g.waits++
		full := make(chan struct{})
		g.full, g.want = full, enough(active)
		g.mu.Unlock()
		failpoint.Inject(failpoint.BatchWait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-full:
		}
		t.Stop()
		g.mu.Lock()
		if g.full == full {
			g.full = nil
		}
	}
	n := min(len(g.queue), maxBatch)
	g.last = n
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	if len(g.queue) == 0 {
		g.queue = nil
	}
	g.mu.Unlock()

	finish := s.commitBatch(batch)

	// The next batch may start once this one committed: the wipe of what
	// this one pruned (a sync of the key file) overlaps with it.
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- errLead // it has no answer yet: the buffer is free
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	finish()
}

// answer answers the callers of a committed batch and notes how long they
// waited (lat).
func (s *boltStore) answer(batch []*batchReq, err error) {
	now := time.Now()
	var sum time.Duration
	for _, r := range batch {
		sum += now.Sub(r.queued)
		r.done <- err
	}
	g := &s.batch
	g.mu.Lock()
	g.lat += (sum/time.Duration(len(batch)) - g.lat) / 8
	g.mu.Unlock()
}

// active returns how many callers queued in the last activeWindow (and a
// little more: it drops the older ones every activeWindow/8, so that the
// map holds about one activeWindow's callers); the caller holds g.mu.
func (g *groupCommit) active(now time.Time) int {
	if now.Sub(g.pruned) >= activeWindow/8 {
		g.pruned = now
		for who, t := range g.seen {
			if now.Sub(t) > activeWindow {
				delete(g.seen, who)
			}
		}
	}
	return len(g.seen)
}

// errCallerFailed marks a batch rolled back because a caller's function
// failed (not the commit).
type errCallerFailed struct{ err error }

func (e errCallerFailed) Error() string { return e.err.Error() }

// commitBatch writes the callers' functions in one transaction. It returns
// what remains once the transaction committed: wipe the slots of what the
// batch deleted and answer each caller. See the top of this file for what
// it guarantees.
func (s *boltStore) commitBatch(batch []*batchReq) (finish func()) {
	w := &writeTx{keys: s.keys, cache: s.peers}
	err := s.db.Update(func(tx *bolt.Tx) error {
		w.tx, w.txid = tx, uint64(tx.ID())
		for _, r := range batch {
			if err := r.fn(w); err != nil {
				return errCallerFailed{err}
			}
		}
		if len(batch) > 1 {
			failpoint.Inject(failpoint.BatchAfterWrite)
		}
		// What the transaction refers to must be on disk before it: the
		// slots come from the pool of synced keys, or else one sync for
		// every secret sealed in the batch.
		return w.beforeCommit()
	})
	w.settle(err == nil)
	if err != nil {
		// Nothing refers to the new slots.
		wipeErr := s.keys.wipe(w.fresh)
		var cf errCallerFailed
		if errors.As(err, &cf) && len(batch) > 1 {
			// Each caller again, alone, in order: the failing one gets its
			// own error, the others commit as they would have alone.
			for _, r := range batch {
				s.commitBatch([]*batchReq{r})()
			}
			return func() {}
		}
		if errors.As(err, &cf) {
			err = cf.err
		}
		for _, r := range batch {
			r.done <- errors.Join(err, wipeErr)
		}
		return func() {}
	}
	s.batch.mu.Lock()
	s.batch.batches++
	s.batch.commits += uint64(len(batch))
	s.batch.mu.Unlock()
	if len(batch) > 1 {
		failpoint.Inject(failpoint.BatchAfterCommit)
	}
	for _, r := range batch {
		if r.afterCommit != "" {
			failpoint.Inject(r.afterCommit)
		}
	}
	fp := ""
	if len(batch) > 1 {
		fp = failpoint.BatchAfterOverwrite
	}
	return func() {
		if len(w.dead) == 0 {
			// Nothing to destroy: the callers are answered at once, and
			// the leader refills the pool on its way out (a failure there
			// loses nothing: the slots' keys seal nothing, and the next
			// open wipes them).
			s.answer(batch, nil)
			_ = w.afterCommit(fp)
			return
		}
		s.answer(batch, w.afterCommit(fp))
	}
}
