/*
 * pipeline.pml: a Promela model of pipelined commits on a kept stream
 * (node/pipeline.go; docs/PROTOCOL.md section 2, "Keeping a stream").
 *
 * One initiator runs N exchanges, one after another, on a stream it keeps;
 * the responder's handler (node.handleStream, node.serve) serves them. When
 * an exchange brought no record of the peer, the responder commits it in
 * the background (proctype Committer: the goroutine of serve) and reads the
 * peer's next START at once; that next exchange runs up to the responder's
 * PART_RECEIVED, which is held until the commit before returned
 * (heldStream.Write, prevInstalled), and fails if that commit failed. An
 * exchange whose START the kept stream never answered runs again on a new
 * stream, where claimInbound makes it wait for the peer's slot. Faults: a
 * commit that fails (a store error), a stream reset, and a SIGKILL of the
 * responder's process at any moment, its store keeping what its commits
 * made durable. README.md ("The pipeline model") says what is modelled,
 * what is not, and the properties; protocol/model_test.go runs the
 * searches and the mutants.
 *
 * The exchange itself is p2pkex.pml's business: here it is phase 1 and
 * phase 3 of two honest machines with both records known (the pipelined
 * case; an exchange that brings a record is committed before the next is
 * read, CHOICES=1), and a key is the responder's number of the exchange.
 *
 * Each assertion of a property ends with its name, P1 to P8 (README.md);
 * the mutants of model_test.go turn off all but one to show that it alone
 * catches them. The untagged ones say that an honest stream delivers the
 * notices in order.
 */

mtype:notice = { START, CONTINUE, NEXT, PART, PART_RECEIVED };

#ifndef N
#define N 3          /* exchanges the initiator runs */
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
#ifndef RETRY
#define RETRY 1      /* 1: the initiator runs an unanswered START again on a new stream, once */
#endif

#define C (N+2)      /* the responder's exchanges (claims) 1..N+1, and 0 for none */

/* Two streams: 0, the first, which the initiator keeps; 1, the new stream
 * of a retry. toR[s] from the initiator, toI[s] back. (type, claim, epoch):
 * the responder numbers its exchanges (claims) 1, 2, ... in the order it
 * takes them, and its notices carry the number; the initiator's carry the
 * number it read in CONTINUE (0 in START). */
chan toR[2] = [4] of { mtype:notice, byte, byte };
chan toI[2] = [4] of { mtype:notice, byte, byte };

bool reset[2];   /* stream s was reset (or the connection died with the responder) */
bool resetR[2];  /* ... by the responder: its own reads and writes on it fail at once */
bool closedI[2]; /* the initiator ended idle stream s (closed its side) */
bool crashed;    /* the responder's process was killed (SIGKILL) */
byte faults;

/* The responder: its store, the peer's slot, its exchanges by claim. */
byte durEp;          /* the active epoch its store holds durably (0: none) */
byte durC;           /* the exchange whose key that is (0: none) */
bool durable[C];     /* exchange c's commit reached the disk */
byte slot;           /* the exchange that holds the peer's slot (n.slots[p]; 0: none) */
byte nextOf[C];      /* slot.next: the exchange that follows c on its kept stream */
byte predOf[C];      /* pred: the exchange c followed on its kept stream (0: none) */
byte claims;         /* the last exchange taken */
byte commitEp[C];    /* the epoch exchange c installs (slot.committing) */
bool returned[C];    /* c's result was reported (finish: slot.done closed) */
bool ok[C];          /* ... without an error (slot.err == nil) */
byte reported;       /* the last exchange reported */

/* The initiator. */
byte actEpI;         /* its active epoch */
byte instC;          /* the responder's number of the last exchange it installed */
bool instI[C];       /* it installed exchange c */
byte nInst;          /* exchanges it installed */

/* Sending on a reset stream goes nowhere. Always inside an atomic step. */
inline send(ch, t, x, y) {
	if
	:: !reset[s] -> ch!t,x,y
	:: else -> skip
	fi
}

/*
 * The responder reports exchange c (node.finish: its result and events,
 * its slot's done channel; the slot passes to the exchange that follows c
 * on its stream, if any): in order, and a success only after the success
 * of the exchange c followed.
 */
inline report(c, res) {
	assert(c == reported + 1); /* P6 */
	assert(!res || predOf[c] == 0 || ok[predOf[c]]); /* P6 */
	reported = c;
	ok[c] = res;
	returned[c] = true;
	if
	:: slot == c -> slot = nextOf[c]
	:: else -> skip
	fi
}

/*
 * The commit of exchange c by the responder's store (node.complete: install,
 * CommitExchange), then finish. Its own goroutine for a pipelined exchange;
 * the handler waits for it otherwise. s is c's stream.
 */
proctype Committer(byte c; byte s) {
	bool res;
	if
	:: atomic { !crashed ->
		/* commits follow the exchanges' order, each after the exchanges
		 * before it were reported, after the success of the one it
		 * followed, with epochs strictly increasing (the store would
		 * refuse a stale one, ErrStaleEpoch) */
		assert(c == 1 || returned[c-1]); /* P2 */
		assert(predOf[c] == 0 || ok[predOf[c]]); /* P2 */
		assert(commitEp[c] > durEp); /* P2 */
		if
		:: durEp = commitEp[c]; durC = c; durable[c] = true; res = true /* synced: durable */
		:: faults < MAXFAULTS -> faults++; res = false /* the store fails: nothing written */
		fi }
	:: crashed -> goto gone /* killed before the commit reached the disk */
	fi;
	/* a SIGKILL may fall here: on disk, not yet returned */
	if
	:: atomic { !crashed ->
		/* complete resets the stream of a failed commit, then finish */
		if
		:: !res -> reset[s] = true; resetR[s] = true
		:: else -> skip
		fi;
		report(c, res) }
	:: crashed -> skip
	fi;
gone:
	skip
}

/* A read of the responder: the next notice, or the end of the stream. */
#define R_READ(t) \
	do \
	:: atomic { !crashed && !resetR[s] && nempty(toR[s]) -> toR[s]?n,a,b; assert(n == t && a == c); break } \
	:: reset[s] || crashed -> goto failed \
	od

/* The responder's handler of stream s: node.handleStream, serve,
 * runProtocol. */
proctype Handler(byte s) {
	mtype:notice n;
	byte a, b, c, prev, pred, prop, ep;
	bool recv;

await:
	/* awaitNext (or the first read of a new stream): the peer's next
	 * START, or the end of the stream */
	do
	:: atomic { !crashed && !resetR[s] && nempty(toR[s]) -> toR[s]?n,a,b; assert(n == START); break }
	:: closedI[s] && empty(toR[s]) -> goto gone /* the peer ended the idle stream */
	:: reset[s] || crashed -> goto gone
	od;
claim:
	/* claimInbound: if prev, the exchange served before on this stream,
	 * still holds the peer's slot (its commit in flight), the new exchange
	 * follows it without waiting (pred); if the slot is free, it takes it;
	 * otherwise it waits for the slot's exchange to finish, and looks
	 * again */
	if
	:: atomic { !crashed && (slot == 0 || (prev != 0 && slot == prev)) ->
		claims++; c = claims;
		if
		:: slot == 0 -> slot = c
		:: else -> pred = prev; predOf[c] = pred; nextOf[pred] = c
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
		send(toI[s], CONTINUE, c, prop);
		prop = 0 }
	:: crashed -> goto gone
	:: reset[s] -> goto gone /* the wait ends with the stream (phase 1's deadline) */
	fi;
	R_READ(NEXT);
	/* both records known: phase 3 at once, our part */
	if
	:: atomic { !crashed -> send(toI[s], PART, c, 0) }
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
		/* no PART_RECEIVED of an exchange that followed pred on the kept
		 * stream goes out before pred's commit returned, with success
		 * (after a failure the stream is reset: nothing goes out) */
		assert(pred == 0 || (returned[pred] && (ok[pred] || reset[s]))); /* P1 */
		send(toI[s], PART_RECEIVED, c, 0) }
	:: crashed -> goto gone
	fi;
	R_READ(PART_RECEIVED);
	/* done: the peer's confirmation verified. serve checks pred once more
	 * (prevInstalled): already returned, with success */
	assert(pred == 0 || (returned[pred] && ok[pred])); /* P1 */
#if CHOICES
	if :: recv = true :: recv = false fi;
#endif
	commitEp[c] = ep;
	ep = 0;
	if
	:: recv ->
		/* the exchange brought the peer's record, which the next one
		 * reads from the store: commit before going back to the stream */
		run Committer(c, s);
		do
		:: returned[c] -> break
		:: crashed -> goto gone
		od;
		if
		:: ok[c] -> prev = c; pred = 0; recv = false; goto await
		:: else -> goto gone
		fi
	:: else ->
		/* commit in the background and go back to the stream */
		run Committer(c, s);
		prev = c; pred = 0;
		goto await
	fi;
failed:
	/* node.run resets the stream of a failed exchange; its result follows
	 * pred's (finish hands the slot on) */
	reset[s] = true; resetR[s] = true;
	if
	:: pred != 0 ->
		do
		:: returned[pred] -> break
		:: crashed -> goto gone
		od
	:: else -> skip
	fi;
	if
	:: atomic { !crashed -> report(c, false) }
	:: crashed -> skip
	fi;
gone:
	skip
}

/* A read of the initiator. It may still read what was buffered after a
 * reset, or notice the reset first. */
#define I_READ(t) \
	do \
	:: atomic { nempty(toI[s]) -> toI[s]?n,a,b; assert(n == t && a == c); break } \
	:: reset[s] -> goto failed \
	od

/* The initiator: node.initiate, one exchange after another on the stream
 * it keeps; each installs (synchronously) before the next starts. An
 * exchange on the kept stream that ends, by a reset or the end of the
 * stream, before the responder answered its START runs again on a new
 * stream (initiateOnKept), once here. */
proctype Initiator() {
	mtype:notice n;
	byte a, b, c, i, ep, s;
	bool retried, kept;

	do
	:: i == N -> break
	:: else ->
		i++;
again:
		atomic {
			c = 0;
			ep = actEpI + 1;
			send(toR[s], START, 0, ep)
		};
		/* CONTINUE: the responder's number of the exchange, its proposal */
		do
		:: atomic { nempty(toI[s]) -> toI[s]?n,c,b; assert(n == CONTINUE); break }
		:: reset[s] -> goto failed
		od;
		atomic {
			if :: b > ep -> ep = b :: else -> skip fi;
			/* both records known: NEXT, then our part */
			send(toR[s], NEXT, c, 0);
			send(toR[s], PART, c, 0)
		};
		I_READ(PART);
		atomic { send(toR[s], PART_RECEIVED, c, 0) };
		I_READ(PART_RECEIVED);
		/* install: the key of exchange c at epoch ep */
		atomic {
			/* an exchange that followed pred on the kept stream installs
			 * only after the responder's commit of pred returned with
			 * success, so pred is durable there */
			assert(predOf[c] == 0 || (returned[predOf[c]] && ok[predOf[c]])); /* P3 */
			assert(predOf[c] == 0 || durable[predOf[c]]); /* P4 */
			assert(ep > actEpI); /* P7 */
			actEpI = ep;
			instC = c;
			instI[c] = true;
			nInst++;
			kept = true
		}
	od;
	/* the idle stream ends (closed, not reset) */
	closedI[s] = true;
	goto end;
failed:
	reset[s] = true;
	if
	:: RETRY && c == 0 && kept && !retried ->
		/* no answer on the kept stream: run it again on a new stream; the
		 * responder's handler starts, unless it is dead */
		atomic {
			retried = true; kept = false; s = 1;
			if
			:: !crashed -> run Handler(1)
			:: else -> reset[1] = true
			fi
		};
		goto again
	:: else -> skip
	fi;
end:
	skip
}

/* Faults besides a failing commit: a stream resets, or the responder's
 * process is killed (its store keeps what was durable). At any moment, or
 * never. */
proctype Fault() {
	if
	:: atomic { faults < MAXFAULTS -> faults++; reset[0] = true }
	:: atomic { faults < MAXFAULTS -> faults++; reset[1] = true }
	:: atomic { KILL && faults < MAXFAULTS -> faults++; crashed = true;
		reset[0] = true; resetR[0] = true; reset[1] = true; resetR[1] = true }
	:: skip
	fi
}

/* The exchanges the initiator installed that the responder does not hold
 * durably. */
byte lost;

init {
	byte c;
	atomic { run Handler(0); run Initiator(); run Fault() };
	/* the end: every other process has ended (no deadlock, nobody left
	 * waiting) */
	_nr_pr == 1;
	/* each fault leaves the initiator at most one exchange ahead of what
	 * the responder holds durably */
	c = 1;
	do
	:: c < C -> lost = lost + (instI[c] && !durable[c]); c++
	:: else -> break
	od;
	assert(lost <= faults); /* P5 */
	/* one epoch, one key */
	assert(actEpI != durEp || instC == durC); /* P7 */
	if
	:: faults == 0 ->
		/* a fair run: every exchange installed on both sides, and
		 * reported by the responder as a success */
		assert(nInst == N && durC == N && reported == N && ok[N] && actEpI == durEp) /* P8 */
	:: else -> skip
	fi
}
