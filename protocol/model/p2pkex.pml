/*
 * p2pkex.pml: a Promela model of the /p2pkex/1.0.0 key exchange, both
 * roles, with a stream that may reset and a simultaneous start.
 *
 * Two nodes, A (node 0, the smaller peer ID) and B (node 1), each with one
 * caller of node.Exchange. A caller that finds no exchange with the peer
 * starts an outbound one; exchange e is the one node e initiates, so a
 * simultaneous start runs exchanges 0 and 1 at once and the tie-break of
 * node.claimInbound picks one. Each exchange is an Initiator and a
 * Responder process (protocol.Machine driven by protocol.Run and node.run)
 * joined by one stream: two FIFO channels that may be reset.
 *
 * The states and notice types are those of the Go code, and every
 * transition a machine takes on a received notice is one line
 *
 *     :: ACCEPT(From, NOTICE, guard) -> COVER; /* to: To... * /
 *
 * in proctype Initiator (initiator rows), proctype Responder (responder
 * rows) or inline consume23 (rows of both roles). protocol/model_test.go
 * checks them against protocol.States() and protocol.Transitions(), runs
 * the full searches and checks that every row is taken. See README.md.
 */

/* The Machine's states: protocol.States(). */
mtype:state = { stNew, stAwaitContinue, stAwaitNext, stPhase2, stPhase3, stDone, stFailed };

/* The notice types: pb.Notice_Type without UNSPECIFIED. */
mtype:notice = { START, CONTINUE, NEXT, KEY, KEY_RECEIVED, PART, PART_RECEIVED, ABORT };

/* A row of the transition table: in state s, notice t is accepted if g. */
#define ACCEPT(s, t, g) (st == s && n == t && (g))

/* Coverage: with pan -DPRINTF (model_test.go), every step marked COVER
 * prints its line, to show that the search takes it. A no-op otherwise. */
#define COVER printf("cover %d\n", __LINE__)

#define OTHER     0 /* ABORT status: anything but CONFLICT */
#define CONFLICT  1 /* ABORT status: refused by the tie-break */

/*
 * Configurations (spin -DNAME=value). The defaults: a simultaneous start,
 * one fault (a channel reset or a local failure), both records travel,
 * fixed key parts. README.md lists the ones model_test.go searches. More
 * exist for the findings in README.md: LATE (a caller may call after an
 * exchange ended; LATE=2 also asks that it gets a key), and the node's slot
 * logic before its fixes, to show that the searches catch it: OLD_TIEBREAK
 * (the tie-break applies to any outbound exchange, even one whose run
 * already succeeded; before the fix of finding 1), OLD_TIEBREAK_RAN (the
 * tie-break applies to an outbound exchange until its run succeeded,
 * slot.ran; before the fix of finding 3) and OLD_INSTALL (an outbound
 * exchange that gave way still installs its key; before the fix of
 * finding 2).
 */
#ifndef MAXFAULTS
#define MAXFAULTS 1 /* channel resets and local failures in one run */
#endif
#ifndef LOCALFAIL
#define LOCALFAIL 1 /* 0: the faults are channel resets only; 1: also local failures (ABORT) */
#endif
#ifndef CALLERS
#define CALLERS 2   /* 1: only node A calls Exchange; 2: both, a simultaneous start */
#endif
#ifndef CHOICES
#define CHOICES 0   /* 1: all four phase-2 combinations; 0: both records travel */
#endif
#ifndef PARTS
#define PARTS 0     /* 1: key parts chosen from {1, 2}; 0: fixed */
#endif
#ifndef OLD_TIEBREAK
#define OLD_TIEBREAK 0     /* 1: the tie-break applies to any outbound slot (before the fix of finding 1) */
#endif
#ifndef OLD_TIEBREAK_RAN
#define OLD_TIEBREAK_RAN 0 /* 1: ... to one whose run has not succeeded, !slot.ran (before the fix of finding 3) */
#endif
#ifndef OLD_INSTALL
#define OLD_INSTALL 0      /* 1: run installs even if its slot gave way (before the fix of finding 2) */
#endif

/*
 * Notices of exchange e: toResp[e] from its initiator (node e) to its
 * responder (node 1-e), toInit[e] back. A message is (type, a, b); what a
 * and b carry depends on the type (see the senders).
 */
chan toResp[2] = [8] of { mtype:notice, byte, byte };
chan toInit[2] = [8] of { mtype:notice, byte, byte };

bool reset[2];     /* the stream of exchange e was reset */
bool cancelled[2]; /* exchange e's outbound slot gave way: its context is cancelled */
byte faults;       /* channel resets and local failures so far */
byte ended[2];     /* sides of exchange e that ended */

/* Node state. slot[x]: 0 none, 1 outbound (exchange x), 2 inbound (exchange 1-x). */
byte slot[2];
bool follow[2];   /* node x's outbound slot gave way to its inbound one */
bool answered[2]; /* node x's outbound exchange read the peer's CONTINUE (slot.answered) */
#if OLD_TIEBREAK_RAN
bool ran[2];      /* node x's outbound slot: its run succeeded (slot.ran) */
#endif
bool slotDone[4]; /* [x*2+e]: node x's part in exchange e finished (node.finish) */
byte inst[4];     /* [x*2+e]: the key node x installed from exchange e; 0: none */
byte actEp[2];    /* node x's active epoch (0: no session yet) */
byte actKey[2];   /* node x's active key */

byte callerKey[2];  /* the key node x's caller of Exchange got; 0: an error */
bool callerDone[2];
bool called[2];     /* node x's caller called Exchange */
bool late;          /* a caller called after an exchange had ended somewhere */
byte finished;      /* machines that ended */

/* Sending on a reset stream goes nowhere. Always inside an atomic step. */
inline send(c, t, x, y) {
	if
	:: !reset[e] -> c!t,x,y
	:: else -> skip
	fi
}

/*
 * maybePhase3 (phase 2, step 4): once both records are where they must be,
 * enter phase 3 and send our part, sealed to the peer (phase 3, step 1).
 */
inline maybePhase3(out) {
	if
	:: (sendKey && !keyAcked) || (recvKey && !keyGot) -> skip
	:: else ->
		st = stPhase3;
		/* phase 2 is over: forget its progress (smaller state space) */
		sendKey = false; recvKey = false; keyGot = false; keyAcked = false;
		/* the part (committed to in phase 1: choosing it here is the
		 * same, as the model has no commitments) */
#if PARTS
		if :: part = 1 :: part = 2 fi;
#else
		part = 1;
#endif
		send(out, PART, part, 0)
	fi
}

/* enterPhase2 (phase 2, step 1): send our record if the peer lacks it. */
inline enterPhase2(out) {
	st = stPhase2;
	if
	:: sendKey -> send(out, KEY, 0, 0)
	:: else -> skip
	fi;
	maybePhase3(out)
}

/* The rows of both roles, phases 2 and 3. */
inline consume23(out) {
	if
	:: ACCEPT(stPhase2, KEY, recvKey && !keyGot) -> COVER; /* to: stPhase2 stPhase3 */
		/* phase 2, step 2: the record is complete, validated, imported */
		keyGot = true;
		send(out, KEY_RECEIVED, 0, 0);
		maybePhase3(out);
		assert(st == stPhase2 || st == stPhase3)
	:: ACCEPT(stPhase2, KEY_RECEIVED, sendKey && !keyAcked) -> COVER; /* to: stPhase2 stPhase3 */
		/* phase 2, step 3 */
		keyAcked = true;
		maybePhase3(out);
		assert(st == stPhase2 || st == stPhase3)
	:: ACCEPT(stPhase2, ABORT, true) -> COVER; /* to: stFailed */
		st = stFailed
	:: ACCEPT(stPhase3, PART, !partGot) -> COVER; /* to: stPhase3 */
		/* phase 3, steps 2 and 3: the key is the XOR of both parts, bound
		 * to this exchange by the transcript (4*e); confirm it */
		partGot = true;
		key = 1 + 4*e + (part ^ a);
		part = 0;
		send(out, PART_RECEIVED, key, 0);
		sentPR = true;
		assert(st == stPhase3)
	:: ACCEPT(stPhase3, PART_RECEIVED, partGot) -> COVER; /* to: stDone */
		/* phase 3, step 4: the peer's confirmation verifies (between
		 * honest peers it always does) */
		assert(a == key);
		verifiedPR = true;
		st = stDone
	:: ACCEPT(stPhase3, ABORT, true) -> COVER; /* to: stFailed */
		st = stFailed
	:: else ->
		/* the machine would reject the notice: an honest peer never sends one */
		assert(false)
	fi
}

/*
 * install (phase 3, step 5, and node.install): only after sending our
 * PART_RECEIVED and verifying the peer's, commit the key as a new epoch.
 * The store refuses an epoch not above the active one (ErrStaleEpoch), and
 * node.run then resets the stream. (An outbound exchange first decides
 * whether it may install at all: see the end of proctype Initiator.)
 */
inline install(x) {
	atomic {
		assert(st == stDone && sentPR && verifiedPR);
		/* the two sides of an exchange never install different keys */
		assert(inst[(1-(x))*2+e] == 0 || inst[(1-(x))*2+e] == key);
		if
		:: exEp > actEp[x] -> actEp[x] = exEp; actKey[x] = key; inst[(x)*2+e] = key
		:: else -> reset[e] = true
		fi
	}
}

/* claimInbound applies the tie-break to node x's outbound slot only while
 * the peer has not answered its exchange (!slot.answered: a simultaneous
 * start); otherwise it waits for it. */
#if OLD_TIEBREAK
#define RUNNING(x) true
#elif OLD_TIEBREAK_RAN
#define RUNNING(x) (!ran[x])
#else
#define RUNNING(x) (!answered[x])
#endif

/* node.finish: free the slot if it is still ours and wake the waiters. */
inline nodeFinish(x, mine) {
#ifndef LATE
	/* a simultaneous start: both callers call before any exchange ends */
	called[0] && called[1];
#endif
	atomic {
		if
		:: slot[x] == mine -> slot[x] = 0
		:: else -> skip
		fi;
		slotDone[(x)*2+e] = true;
#ifdef LATE
		finished++;
#endif
		/* the stream is gone when both sides are: drop what is left in
		 * it (smaller state space) */
		ended[e]++;
		if
		:: ended[e] == 2 ->
			do
			:: toResp[e]?_,_,_
			:: toInit[e]?_,_,_
			:: empty(toResp[e]) && empty(toInit[e]) -> break
			od
		:: else -> skip
		fi
	}
}

/* Building the machine: its epoch is the node's active one plus one. */
inline setup(x) {
	ownEp = actEp[x] + 1;
	exEp = ownEp
}

/* Whether this side holds the peer's current record: with both sides'
 * choices, the four phase-2 combinations. */
inline chooseKnows() {
#if CHOICES
	if :: knows = true :: knows = false fi
#else
	knows = false /* both records travel */
#endif
}

/* After reading a notice: forget it, and leave the loop at the end. */
#define NEXT_OR_BREAK \
	n = 0; a = 0; b = 0; \
	if \
	:: st == stDone || st == stFailed -> break \
	:: else -> skip \
	fi

#define MACHINE_VARS \
	mtype:state st = stNew; \
	mtype:notice n; \
	byte a, b; \
	bool knows, sendKey, recvKey, keyGot, keyAcked, partGot, sentPR, verifiedPR; \
	byte part, key, ownEp, exEp

/* Exchange e's responder, on node 1-e: node.handleStream and protocol.Run. */
proctype Responder(byte e) {
	MACHINE_VARS;

claim:
	atomic {
		/* claimInbound, under the node lock */
		if
		:: slot[1-e] == 0 -> COVER; slot[1-e] = 2
		:: slot[1-e] == 1 && RUNNING(1-e) && 1-e < e -> COVER;
			/* the smaller peer ID keeps its running outbound exchange:
			 * refuse with ABORT CONFLICT, closing the stream gracefully */
			toResp[e]?_,_,_; /* START, unread */
			send(toInit[e], ABORT, CONFLICT, 0);
			ended[e]++;
			goto refused
		:: slot[1-e] == 1 && RUNNING(1-e) && 1-e > e -> COVER;
			/* the larger gives way: its callers follow this exchange
			 * and its own is cancelled */
			follow[1-e] = true;
			cancelled[1-e] = true;
			slot[1-e] = 2
		:: slot[1-e] == 1 && !RUNNING(1-e) -> COVER;
			/* the peer answered the outbound exchange, so this START
			 * is the peer's next exchange (or comes from its outbound
			 * slot that already gave way to ours): wait for ours to
			 * finish (below), then look again */
			goto waiting
		:: slot[1-e] == 2 -> assert(false) /* one exchange per direction here */
		fi;
		setup(1-e)
	};
	goto claimed;
waiting:
	/* <-cur.done (the phase timer of claimInbound, ErrBusy, is left out:
	 * the exchange waited for needs nothing more from this stream, so
	 * the wait ends; were it stuck, spin would report an invalid end
	 * state) */
	slotDone[(1-e)*2 + (1-e)];
	goto claim;
claimed:
	do
	:: atomic { toResp[e]?n,a,b ->
		if
		:: st == stPhase2 || st == stPhase3 -> consume23(toInit[e])
		:: ACCEPT(stNew, START, true) -> COVER; /* to: stAwaitNext */
			/* phase 1, step 2. a: the initiator's fingerprint of our
			 * record is current; b: its epoch */
			if :: b > exEp -> exEp = b :: else -> skip fi;
			sendKey = !a;
			st = stAwaitNext;
			chooseKnows();
			send(toInit[e], CONTINUE, a + 2*knows, ownEp);
			knows = false; ownEp = 0;
			assert(st == stAwaitNext)
		:: ACCEPT(stNew, ABORT, true) -> COVER; /* to: stFailed */
			st = stFailed
		:: ACCEPT(stAwaitNext, NEXT, true) -> COVER; /* to: stPhase2 stPhase3 */
			/* phase 1, step 4. a: our fingerprint of the initiator's
			 * record matched */
			recvKey = !a;
			enterPhase2(toInit[e]);
			assert(st == stPhase2 || st == stPhase3)
		:: ACCEPT(stAwaitNext, ABORT, true) -> COVER; /* to: stFailed */
			st = stFailed
		:: else -> assert(false)
		fi;
		NEXT_OR_BREAK }
	:: reset[e] -> goto failed
	:: atomic { faults < MAXFAULTS -> faults++; reset[e] = true }; goto failed /* the channel resets */
	:: atomic { LOCALFAIL && faults < MAXFAULTS -> faults++; send(toInit[e], ABORT, OTHER, 0); reset[e] = true }; goto done /* a timeout or local error: ABORT */
	od;
	if
	:: st == stDone -> install(1-e); goto done
	:: else -> skip
	fi;
failed:
	/* node.run resets the stream of a failed exchange */
	reset[e] = true;
done:
	nodeFinish(1-e, 2);
refused:
	skip
}

/* Exchange e's initiator, on node e: node.initiate and protocol.Run. */
proctype Initiator(byte e) {
	MACHINE_VARS;
	bool conflict;        /* refused by the peer's tie-break */
	bool readAfterCancel; /* a notice was read after the cancellation */

	atomic {
		/* NewStream: the peer's stream handler starts. Start (not a
		 * Consume transition): stNew -> stAwaitContinue, sending START
		 * with whether our fingerprint of the responder's record is
		 * current, and our epoch */
		run Responder(e);
		setup(e);
		st = stAwaitContinue;
		chooseKnows();
		send(toResp[e], START, knows, ownEp);
		knows = false; ownEp = 0
	};
	do
	:: atomic { (!cancelled[e] || !readAfterCancel) && nempty(toInit[e]) ->
		/* Run checks the context before each read, so at most one
		 * notice is read after a cancellation */
		toInit[e]?n,a,b;
		readAfterCancel = cancelled[e];
		if
		:: st == stPhase2 || st == stPhase3 -> consume23(toResp[e])
		:: ACCEPT(stAwaitContinue, CONTINUE, true) -> COVER; /* to: stPhase2 stPhase3 */
			/* phase 1, step 3. a: bit 0 our fingerprint matched, bit 1
			 * the responder holds our current record; b: its epoch */
			if :: b > exEp -> exEp = b :: else -> skip fi;
			recvKey = !(a & 1);
			sendKey = !(a >> 1);
			/* the machine's Trace, on EventNoticeReceived of CONTINUE,
			 * inside Consume once the notice is accepted and before
			 * NEXT is written: slot.answered, under the node lock */
			answered[e] = true;
			send(toResp[e], NEXT, !sendKey, 0);
			enterPhase2(toResp[e]);
			assert(st == stPhase2 || st == stPhase3)
		:: ACCEPT(stAwaitContinue, ABORT, true) -> COVER; /* to: stFailed */
			conflict = (a == CONFLICT);
			st = stFailed
		:: else -> assert(false)
		fi;
		NEXT_OR_BREAK }
	:: reset[e] -> goto failed
	:: cancelled[e] -> goto failed /* Run fails on the cancelled context, without ABORT */
	:: atomic { faults < MAXFAULTS -> faults++; reset[e] = true }; goto failed /* the channel resets */
	:: atomic { LOCALFAIL && faults < MAXFAULTS -> faults++; send(toResp[e], ABORT, OTHER, 0); reset[e] = true }; goto done /* a timeout or local error: ABORT */
	od;
	if
	:: st == stDone ->
		/* node.run, under the node lock: if the slot gave way (claimInbound
		 * set follow and cancelled it), install nothing (errGaveWay, the
		 * stream is reset); either way it sets slot.ran (which claimInbound
		 * no longer reads: OLD_TIEBREAK_RAN). A slot gives way only before
		 * its exchange read CONTINUE, and a cancelled run reads at most one
		 * more notice, so no run that gave way gets here: errGaveWay is
		 * defensive, and the assertion says so (with the old tie-breaks a
		 * slot could still give way after CONTINUE, and this branch is
		 * taken: finding 2) */
		atomic {
#if OLD_TIEBREAK_RAN
			ran[e] = true;
#endif
			assert(!cancelled[e] || OLD_TIEBREAK || OLD_TIEBREAK_RAN);
			if
			:: cancelled[e] && !OLD_INSTALL -> goto failed
			:: else -> skip
			fi
		};
		install(e); goto done
	:: else -> skip
	fi;
failed:
	reset[e] = true;
	if
	:: conflict ->
		/* startOutbound: the peer won the tie-break; wait for our inbound
		 * exchange to take the callers over, or for a phase timeout */
		if
		:: cancelled[e] -> COVER
		:: timeout
		fi
	:: else -> skip
	fi;
done:
	nodeFinish(e, 1)
}

/* A caller of node.Exchange on node x: join the exchange with the peer
 * that runs, or start one; follow a slot that gave way; take its result. */
proctype Caller(byte x) {
	byte w; /* the exchange whose slot the caller waits for */

	atomic {
		called[x] = true;
		late = late || finished > 0;
		if
		:: slot[x] == 0 -> COVER; slot[x] = 1; w = x; run Initiator(x)
		:: slot[x] == 2 -> COVER; w = 1 - x
		fi
	};
	do
	:: atomic { slotDone[x*2+w] ->
		if
		:: w == x && follow[x] -> COVER; w = 1 - x
		:: else -> break
		fi }
	od;
	atomic { callerKey[x] = inst[x*2+w]; callerDone[x] = true }
}

/* Both callers got the one resulting key (with one caller: it got a key). */
#if CALLERS == 2
#define KEYED (callerDone[0] && callerDone[1] && callerKey[0] != 0 && callerKey[0] == callerKey[1])
#else
#define KEYED (callerDone[0] && callerKey[0] != 0)
#endif

init {
#if CALLERS == 2
	atomic { run Caller(0); run Caller(1) };
#else
	atomic { run Caller(0); called[1] = true };
#endif
	/* the end: every other process has ended */
	_nr_pr == 1;
	/* the nodes never hold different keys in one epoch */
	assert(actEp[0] != actEp[1] || actKey[0] == actKey[1]);
#if LATE > 1
	/* with a fair channel, a caller that calls late gets a key too */
	assert(faults > 0 || (callerKey[0] != 0 && callerKey[1] != 0));
#endif
	if
	:: !late ->
		/* a simultaneous start: the callers never get different keys */
		assert(callerKey[0] == 0 || callerKey[1] == 0 || callerKey[0] == callerKey[1]);
		if
		:: faults == 0 ->
			/* a fair channel: both callers get the one resulting key,
			 * and it is both nodes' active key */
			assert(KEYED);
			assert(actKey[0] == callerKey[0] && actKey[1] == callerKey[0])
		:: else -> skip
		fi
	:: else -> skip
	fi
}

/* With a fair channel (no reset, no local failure) both callers finish,
 * with the one resulting key. */
ltl finish { <> (faults > 0 || late || KEYED) }
