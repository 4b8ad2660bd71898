/*
 * pipeline.pml: a Promela model of pipelined commits on a kept stream
 * (node/pipeline.go; docs/PROTOCOL.md section 2, "Keeping a stream").
 *
 * One initiator runs N exchanges, one after another, on one stream it
 * keeps; the responder's handler (node.handleStream, node.serve) serves
 * them. When an exchange k brought no record of the peer, the responder
 * commits it in the background (proctype Committer: the goroutine of
 * serve) and reads the peer's next START at once; exchange k+1 runs up to
 * the responder's PART_RECEIVED, which is held until k's commit returned
 * (heldStream.Write, prevInstalled), and fails if that commit failed.
 * Faults: a commit that fails (a store error), a stream reset, and a
 * SIGKILL of the responder's process at any moment, its store keeping what
 * its commits made durable. README.md ("The pipeline model") says what is
 * modelled, what is not, and the properties; protocol/model_test.go runs
 * the searches and the mutants.
 *
 * The exchange itself is p2pkex.pml's business: here it is phase 1 and
 * phase 3 of two honest machines with both records known (the pipelined
 * case; an exchange that brings a record is committed before the next is
 * read, CHOICES=1), and a key is the exchange's number.
 *
 * Each assertion of a property ends with its name, P1 to P8 (README.md);
 * the mutants of model_test.go turn off all but one to show that it alone
 * catches them. The untagged ones say that an honest stream delivers the
 * notices in order.
 */

mtype:notice = { START, CONTINUE, NEXT, PART, PART_RECEIVED };

#ifndef N
#define N 3          /* exchanges the initiator runs on the stream */
#endif
#ifndef MAXFAULTS
#define MAXFAULTS 1  /* commit failures, stream resets and SIGKILLs in one run */
#endif
#ifndef CHOICES
#define CHOICES 0    /* 1: each exchange may bring a record (committed before the next) */
#endif
#ifndef KILL
#define KILL 1       /* 1: the responder's process may be killed */
#endif

/* The stream: toR from the initiator, toI back. (type, exchange, epoch) */
chan toR = [4] of { mtype:notice, byte, byte };
chan toI = [4] of { mtype:notice, byte, byte };

bool reset;    /* the stream was reset (or the connection died with the responder) */
bool resetR;   /* ... by the responder: its own reads and writes fail at once */
bool closedI;  /* the initiator ended the idle stream (closed its side) */
bool crashed;  /* the responder's process was killed (SIGKILL) */
byte faults;

/* The responder's store and slots, by exchange number 1..N. */
byte durEp;           /* the active epoch its store holds durably (0: none) */
byte durX;            /* the exchange whose key that is (0: none) */
byte commitEp[N+1];   /* the epoch exchange k installs (slot.committing) */
bool returned[N+1];   /* k's commit returned and finish ran (slot.done closed) */
bool ok[N+1];         /* ... without an error (slot.err == nil) */
byte reported;        /* the last exchange whose result the responder reported */

/* The initiator. */
byte actEpI;          /* its active epoch */
byte instI;           /* the last exchange it installed (0: none) */

/* Sending on a reset stream goes nowhere. Always inside an atomic step. */
inline send(c, t, x, y) {
	if
	:: !reset -> c!t,x,y
	:: else -> skip
	fi
}

/*
 * The responder reports exchange k (node.finish: its result and events, its
 * slot's done channel): in order, and a success only after the success of
 * the exchange before it on the stream.
 */
inline report(k, res) {
	assert(k == reported + 1); /* P6 */
	assert(!res || k == 1 || ok[k-1]); /* P6 */
	reported = k;
	ok[k] = res;
	returned[k] = true
}

/*
 * The commit of exchange k by the responder's store (node.complete: install,
 * CommitExchange), then finish. Its own goroutine for a pipelined exchange;
 * the handler waits for it otherwise.
 */
proctype Committer(byte k) {
	bool res;
	if
	:: atomic { !crashed ->
		/* commits follow each other in the stream's order, each after the
		 * one before it succeeded, with epochs strictly increasing (the
		 * store would refuse a stale one, ErrStaleEpoch) */
		assert(k == 1 || (returned[k-1] && ok[k-1])); /* P2 */
		assert(commitEp[k] > durEp); /* P2 */
		if
		:: durEp = commitEp[k]; durX = k; res = true /* synced: durable */
		:: faults < MAXFAULTS -> faults++; res = false /* the store fails: nothing written */
		fi }
	:: crashed -> goto gone /* killed before the commit reached the disk */
	fi;
	/* a SIGKILL may fall here: on disk, not yet returned */
	if
	:: atomic { !crashed ->
		/* complete resets the stream of a failed commit, then finish */
		if
		:: !res -> reset = true; resetR = true
		:: else -> skip
		fi;
		report(k, res) }
	:: crashed -> skip
	fi;
gone:
	skip
}

/* A read of the responder: the next notice, or the end of the stream. */
#define R_READ(t) \
	do \
	:: atomic { !crashed && !resetR && nempty(toR) -> toR?n,a,b; assert(n == t && a == k); break } \
	:: reset || crashed -> goto failed \
	od

/* The responder's stream handler: node.handleStream, serve, runProtocol. */
proctype Handler() {
	mtype:notice n;
	byte a, b, k, prev, pred, prop, ep;
	bool recv;

await:
	/* awaitNext (or the first read of a new stream): the peer's next
	 * START, or the end of the stream */
	do
	:: atomic { !crashed && !resetR && nempty(toR) -> toR?n,a,b; assert(n == START); k++; assert(a == k);
		/* claimInbound: prev, the exchange served before on this stream,
		 * is still the peer's slot while its commit is in flight; the new
		 * exchange follows it without waiting (pred). Otherwise prev's
		 * slot is gone and this exchange takes a fresh one. */
		if
		:: prev != 0 && !returned[prev] -> pred = prev
		:: else -> pred = 0
		fi;
		/* machine: the proposal is above the store's active epoch and
		 * above pred's, whatever the store holds yet (after) */
		prop = durEp + 1;
		if
		:: pred != 0 && commitEp[pred] + 1 > prop -> prop = commitEp[pred] + 1
		:: else -> skip
		fi;
		/* CONTINUE; the exchange's epoch is the larger proposal */
		ep = (b > prop -> b : prop);
		send(toI, CONTINUE, k, prop);
		prop = 0;
		break }
	:: closedI && empty(toR) -> goto gone /* the peer ended the idle stream */
	:: reset || crashed -> goto gone
	od;
	R_READ(NEXT);
	/* both records known: phase 3 at once, our part */
	if
	:: atomic { !crashed -> send(toI, PART, k, 0) }
	:: crashed -> goto gone
	fi;
	R_READ(PART);
	/* our PART_RECEIVED: heldStream.Write waits for pred's commit and fails
	 * if it did not install (prevInstalled); Run then fails and resets */
	if
	:: pred != 0 ->
		do
		:: returned[pred] -> break
		:: crashed -> goto gone
		od;
		if
		:: !ok[pred] -> goto failed
		:: else -> skip
		fi
	:: else -> skip
	fi;
	if
	:: atomic { !crashed ->
		/* no PART_RECEIVED of exchange k goes out before the commit of
		 * k-1 returned, with success (after a failure the stream is
		 * reset: nothing goes out) */
		assert(k == 1 || (returned[k-1] && (ok[k-1] || reset))); /* P1 */
		send(toI, PART_RECEIVED, k, 0) }
	:: crashed -> goto gone
	fi;
	R_READ(PART_RECEIVED);
	/* done: the peer's confirmation verified. serve checks pred once more
	 * (prevInstalled): already returned, with success */
	assert(pred == 0 || (returned[pred] && ok[pred])); /* P1 */
#if CHOICES
	if :: recv = true :: recv = false fi;
#endif
	commitEp[k] = ep;
	ep = 0;
	if
	:: recv ->
		/* the exchange brought the peer's record, which the next one
		 * reads from the store: commit before going back to the stream */
		run Committer(k);
		do
		:: returned[k] -> break
		:: crashed -> goto gone
		od;
		if
		:: ok[k] -> prev = k; pred = 0; recv = false; goto await
		:: else -> goto gone
		fi
	:: else ->
		/* commit in the background and go back to the stream */
		run Committer(k);
		prev = k; pred = 0;
		goto await
	fi;
failed:
	/* node.run resets the stream of a failed exchange; its result follows
	 * pred's (finish hands the slot on) */
	reset = true; resetR = true;
	if
	:: pred != 0 ->
		do
		:: returned[pred] -> break
		:: crashed -> goto gone
		od
	:: else -> skip
	fi;
	if
	:: atomic { !crashed -> report(k, false) }
	:: crashed -> skip
	fi;
gone:
	skip
}

/* A read of the initiator. It may still read what was buffered after a
 * reset, or notice the reset first. */
#define I_READ(t) \
	do \
	:: atomic { nempty(toI) -> toI?n,a,b; assert(n == t && a == k); break } \
	:: reset -> goto failed \
	od

/* The initiator: node.initiate on its kept stream, one exchange after
 * another; each installs (synchronously) before the next starts. */
proctype Initiator() {
	mtype:notice n;
	byte a, b, k, ep;

	do
	:: k == N -> break
	:: else ->
		atomic {
			k++;
			ep = actEpI + 1;
			send(toR, START, k, ep)
		};
		I_READ(CONTINUE);
		atomic {
			if :: b > ep -> ep = b :: else -> skip fi;
			/* both records known: NEXT, then our part */
			send(toR, NEXT, k, 0);
			send(toR, PART, k, 0)
		};
		I_READ(PART);
		atomic { send(toR, PART_RECEIVED, k, 0) };
		I_READ(PART_RECEIVED);
		/* install: the key of exchange k at epoch ep */
		atomic {
			/* exchange k follows k-1 on the stream only after the
			 * responder's commit of k-1 returned with success: the
			 * initiator is at most one exchange ahead of what the
			 * responder holds durably (the state of a lost last
			 * PART_RECEIVED), whatever fails or crashes */
			assert(k == 1 || (returned[k-1] && ok[k-1])); /* P3 */
			assert(k <= durX + 1); /* P4 */
			assert(ep > actEpI); /* P7 */
			actEpI = ep;
			instI = k
		}
	od;
	/* the idle stream ends (closed, not reset) */
	closedI = true;
	goto end;
failed:
	reset = true;
end:
	skip
}

/* Faults besides a failing commit: the stream resets, or the responder's
 * process is killed (its store keeps what was durable). At any moment, or
 * never. */
proctype Fault() {
	if
	:: atomic { faults < MAXFAULTS -> faults++; reset = true }
	:: atomic { KILL && faults < MAXFAULTS -> faults++; crashed = true; reset = true; resetR = true }
	:: skip
	fi
}

init {
	atomic { run Handler(); run Initiator(); run Fault() };
	/* the end: every other process has ended (no deadlock, nobody left
	 * waiting) */
	_nr_pr == 1;
	/* at most one exchange ahead of the responder's durable state */
	assert(instI <= durX + 1); /* P5 */
	/* one epoch, one key */
	assert(actEpI != durEp || instI == durX); /* P7 */
	if
	:: faults == 0 ->
		/* a fair run: every exchange installed on both sides, and
		 * reported by the responder as a success */
		assert(instI == N && durX == N && reported == N && ok[N] && actEpI == durEp) /* P8 */
	:: else -> skip
	fi
}
