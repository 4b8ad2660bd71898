package conformance

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// The cases of protocol version 1.1's record bounds and order (section 8
// steps 6 and 10, section 8.1; V50, V51, V40) and of the initiator's
// downgrade check (section 6, V52).

type recordCaseFunc func(name, section, summary string, envelope func(x *exchange) ([]byte, error), opts ...func(*testCase))

// shortLifetime is the lifetime of the record that must expire while the
// IUT holds it (key/rollback-against-expired-held-record): long enough for
// one exchange on loopback, short enough to wait for.
const shortLifetime = 2 * time.Second

func recordOrderCases(add func(*testCase), recordCase recordCaseFunc) {
	day := int64(24 * 60 * 60)

	// -----------------------------------------------------------------
	// Lifetime (section 8 step 6; V50, V51): each record is otherwise
	// valid now (created within the skew, not expired), so that only the
	// bound is broken.
	recordCase("record-expires-at-creation", "§8 V50", "expires equal to created (five minutes from now, within the clock skew)", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.Created = time.Now().Add(5 * time.Minute).Unix()
			r.Expires = r.Created
		}))
	})
	recordCase("record-expires-before-created", "§8 V50", "expires one minute before created (both in the future, within the clock skew)", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.Created = time.Now().Add(5 * time.Minute).Unix()
			r.Expires = r.Created - 60
		}))
	})
	recordCase("record-lifetime-too-long", "§8 V51", "a lifetime of 60 days and one second, created an hour ago", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.Created = time.Now().Add(-time.Hour).Unix()
			r.Expires = r.Created + int64(protocol.MaxRecordLifetime/time.Second) + 1
		}))
	})
	recordCase("record-valid-for-years", "§8 V51", "a lifetime of ten years, created an hour ago", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.Created = time.Now().Add(-time.Hour).Unix()
			r.Expires = r.Created + 10*365*day
		}))
	})
	// The edge of V51 is allowed.
	add(&testCase{name: "happy/record-lifetime-at-the-bound", section: "§8 V51", roles: iutBoth, prior: 1,
		summary: "the suite rotates to a record with a lifetime of exactly 60 days: accepted",
		setup: func(_ runner, id *identity) error {
			k, err := protocol.NewExchangeKey(id.sk, id.key.Suites(), id.key.Seq+1, time.Now(), protocol.MaxRecordLifetime)
			if err != nil {
				return err
			}
			id.replaceKey(k)
			return nil
		},
		tc: is(tactic{}), want: succeeds(), check: suiteRecordSent})

	// -----------------------------------------------------------------
	// Order (section 8 step 10, section 8.1; V40). Each case starts with
	// the IUT holding the suite's current record H and presents a record
	// R of the same identity; every R is a real record the suite could
	// complete the exchange with.
	orderCase := func(name, summary string, w want, record func(id *identity) (*protocol.ExchangeKey, error)) {
		add(&testCase{name: "key/" + name, section: "§8.1 V40", roles: iutBoth, prior: 1, summary: summary,
			tc: is(tactic{config: func(x *exchange, c *protocol.Config) {
				k, err := record(x.id)
				if err != nil {
					x.machineErr = fmt.Errorf("suite: %w", err)
					return
				}
				c.Own = k
			}}), want: w})
	}
	// Ordered by created first: a higher seq does not make an older
	// record newer.
	orderCase("rollback-created-earlier", "sequence one above the held record's, created an hour before it: a rollback whatever the trust policy",
		keyRejected(), func(id *identity) (*protocol.ExchangeKey, error) {
			h := id.key
			return protocol.NewExchangeKey(id.sk, h.Suites(), h.Seq+1, h.Created.Add(-time.Hour), protocol.DefaultRecordLifetime)
		})
	orderCase("seq-jump-beyond-bound", "sequence 2^20 + 1 above the held record's, created now: a rollback whatever the trust policy",
		keyRejected(), func(id *identity) (*protocol.ExchangeKey, error) {
			h := id.key
			return protocol.NewExchangeKey(id.sk, h.Suites(), h.Seq+protocol.MaxSeqJump+1, time.Now(), protocol.DefaultRecordLifetime)
		})
	// The edge of MaxSeqJump is a rotation.
	add(&testCase{name: "happy/seq-jump-at-the-bound", section: "§8.1 V40", roles: iutBoth, prior: 1,
		summary: "the suite rotates to sequence 2^20 above the held record's: a rotation, accepted",
		setup: func(_ runner, id *identity) error {
			k, err := protocol.NewExchangeKey(id.sk, id.key.Suites(), id.key.Seq+protocol.MaxSeqJump, time.Now(), protocol.DefaultRecordLifetime)
			if err != nil {
				return err
			}
			id.replaceKey(k)
			return nil
		},
		tc: is(tactic{}), want: succeeds(), check: suiteRecordSent})
	add(&testCase{name: "key/store-reset", section: "§8.1 V40, V41", roles: iutBoth, prior: 1,
		summary: "informative: a record with a lower sequence created after the held one (the suite lost its store) " +
			"goes to the IUT's trust policy; either outcome passes and is reported (tofu accepts it for an unverified peer, " +
			"strict refuses it); fails only if the IUT refuses it with another status, or its next exchange contradicts the outcome",
		expect: "success or ABORT KEY_REJECTED (trust policy)", script: storeReset})
	add(&testCase{name: "key/rollback-against-expired-held-record", section: "§8.1 V40", roles: iutBoth, prior: 1,
		summary: "the IUT holds a record of the suite's that has expired (a 2 s lifetime); a record created before it is still a rollback",
		expect:  want{status: pb.Status_KEY_REJECTED}.String(), script: rollbackAgainstExpired})
}

// suiteRecordSent checks that the suite's record travelled and the IUT's
// did not (the IUT held the suite's previous record).
func suiteRecordSent(x *exchange, res *protocol.Result) error {
	own, peerSent := res.InitiatorKeySent, res.ResponderKeySent
	if x.role == protocol.Responder {
		own, peerSent = peerSent, own
	}
	if !own || peerSent {
		return fmt.Errorf("records sent: the suite's %v, the IUT's %v; want only the suite's", own, peerSent)
	}
	return nil
}

// waitPastSecond sleeps until the clock is in a later whole second than t:
// a record created then is created after a record created at t.
func waitPastSecond(t time.Time) {
	for time.Now().Unix() <= t.Unix() {
		time.Sleep(time.Until(time.Unix(t.Unix()+1, 0)) + 10*time.Millisecond)
	}
}

// storeReset is key/store-reset: the suite presents a record created after
// the one the IUT holds with a lower sequence number (section 8.1, reset).
// The trust policy of the IUT decides: accepted, its next exchange must
// name the new record; refused, it must abort with KEY_REJECTED and its
// next exchange name the held one.
func storeReset(rn runner, id *identity) error {
	b := rn.core()
	res := b.cur
	if id.key.Seq < 2 {
		// A lower sequence number needs a held one above 1.
		if err := id.rotate(nil); err != nil {
			return err
		}
		if err := rn.honest(id); err != nil {
			return fmt.Errorf("rotation before the reset: %w", err)
		}
	}
	held := id.key
	waitPastSecond(held.Created)
	reset, err := protocol.NewExchangeKey(id.sk, held.Suites(), 1, time.Now(), protocol.DefaultRecordLifetime)
	if err != nil {
		return err
	}
	x, err := b.run(id, tactic{config: func(_ *exchange, c *protocol.Config) { c.Own = reset }})
	if err != nil {
		return err
	}
	if x.m.Done() && x.machineErr == nil && x.endErr == nil {
		// The suite's side finished: the IUT accepted the record (had it
		// refused it, phase 3 would not have run). The next exchange must
		// show the reset record held and the new epoch.
		id.replaceKey(reset)
		if _, err := b.succeeded(x, res); err != nil {
			return err
		}
		b.self.end(x, true)
		res.note("accepted: the IUT's trust policy accepts a store reset of this (unverified) peer, as tofu does")
		return rn.honest(id)
	}
	if st, ok := x.status(); ok && st == pb.Status_KEY_REJECTED {
		res.note("refused with KEY_REJECTED: the IUT's trust policy refuses a store reset (as strict does, or tofu for a verified peer)")
	}
	b.refused(x, keyRejected(), res)
	// The next exchange, with the held record, must show nothing installed.
	return rn.honest(id)
}

// rollbackAgainstExpired is key/rollback-against-expired-held-record.
func rollbackAgainstExpired(rn runner, id *identity) error {
	b := rn.core()
	res := b.cur
	// The IUT takes a record of the suite's that expires in about 2 s.
	short, err := protocol.NewExchangeKey(id.sk, id.key.Suites(), id.key.Seq+1, time.Now(), shortLifetime)
	if err != nil {
		return err
	}
	id.replaceKey(short)
	if err := rn.honest(id); err != nil {
		return fmt.Errorf("exchange with the short-lived record: %w", err)
	}
	// Wait until it has expired, by a margin for the IUT's clock, and
	// let an initiator's exchanges begun before then go unanswered: it
	// must start this case's exchange with the record expired.
	until := short.Expires.Add(250 * time.Millisecond)
	time.Sleep(time.Until(until))
	if ir, ok := rn.(*initiatorRun); ok {
		ir.notBefore = until
		defer func() { ir.notBefore = time.Time{} }()
	}
	// The suite's own record must not be expired either: a new one, which
	// the IUT never sees in this case.
	current, err := protocol.NewExchangeKey(id.sk, short.Suites(), short.Seq+1, time.Now(), protocol.DefaultRecordLifetime)
	if err != nil {
		return err
	}
	id.replaceKey(current)
	old, err := protocol.NewExchangeKey(id.sk, short.Suites(), current.Seq+1, short.Created.Add(-time.Hour), protocol.DefaultRecordLifetime)
	if err != nil {
		return err
	}
	x, err := expiredHeldExchange(b, id, res, short, tactic{config: func(_ *exchange, c *protocol.Config) { c.Own = old }})
	if err != nil {
		return err
	}
	b.refused(x, keyRejected(), res)
	// Then the current record, a rotation from the expired one, is
	// accepted; the proposal shows the failed exchange installed nothing.
	x, err = expiredHeldExchange(b, id, res, short, tactic{})
	if err != nil {
		return err
	}
	if _, err := b.succeeded(x, res); err != nil {
		return fmt.Errorf("the next exchange, with a rotation from the expired record: %w", err)
	}
	b.self.end(x, true)
	return nil
}

// expiredHeldExchange runs an exchange while the IUT holds an expired record
// of the suite's: it checks the epoch the IUT proposes, and notes (section
// 8: an expired record is not offered) if it names the expired record.
func expiredHeldExchange(b *base, id *identity, res *Result, expired *protocol.ExchangeKey, tc tactic) (*exchange, error) {
	want := id.iut
	id.iut.known = false // checked here
	x, err := b.run(id, tc)
	if err != nil {
		return nil, err
	}
	if e, fp, ok := x.peerProposal(); ok {
		if want.known && e != want.epoch {
			res.fail("the exchange proposed epoch %d; want %d (an exchange installed a key)", e, want.epoch)
		}
		if bytes.Equal(fp, expired.Fingerprint[:]) {
			res.note("named the expired record in phase 1 (§8: an expired held record is not offered)")
		}
	}
	return x, nil
}

// -----------------------------------------------------------------
// Suite choice (section 6; V52): the IUT initiates, the suite responds.

// commonSuites is offered, in the IUT's order, restricted to the suites k
// has a key for.
func commonSuites(offered []uint32, k *protocol.ExchangeKey) []protocol.Suite {
	var out []protocol.Suite
	for _, o := range offered {
		if o <= 0xffff && k.Keys[protocol.Suite(o)] != nil && !slices.Contains(out, protocol.Suite(o)) {
			out = append(out, protocol.Suite(o))
		}
	}
	return out
}

// downgrade is the tactic of the V52 cases: CONTINUE names the second
// suite the IUT offered that the suite's record has, not the first. The
// suite's machine goes on with the first (the transcript then differs):
// the IUT must refuse before phase 3, at CONTINUE when key_matched says it
// holds the record, else at the record. went is the notice that shows the
// IUT went on where it had to refuse.
func downgrade(went pb.Notice_Type) func(protocol.Role) tactic {
	return is(tactic{
		out: editType(pb.Notice_CONTINUE, func(x *exchange, n *pb.Notice) {
			common := commonSuites(iutStart(x).GetSuites(), x.own)
			if len(common) < 2 {
				x.skip = fmt.Sprintf("the IUT offered %v; the suite's record has fewer than two of them: nothing to downgrade to", iutStart(x).GetSuites())
				return
			}
			n.Continue.Suite = uint32(common[1])
		}),
		in: func(x *exchange, frame []byte) {
			if decode(frame).Type != went {
				return
			}
			if went == pb.Notice_NEXT && !decode(x.produced[0].Bytes).GetContinue().GetKeyMatched() {
				return // it could not check at CONTINUE
			}
			x.violations = append(x.violations, fmt.Sprintf("sent %v after the downgraded choice: it accepted it (§6 V52)", went))
		},
	})
}

// bothSuites makes the identity's record have every default suite (the
// cases before may have left it with one); rotated, the IUT receives it
// in the case's exchange, or in an honest one first when hold is set.
func bothSuites(hold bool) func(r runner, id *identity) error {
	return func(r runner, id *identity) error {
		if len(id.key.Suites()) >= 2 {
			return nil
		}
		if err := id.rotate(protocol.DefaultSuites()); err != nil {
			return err
		}
		if hold {
			return r.honest(id)
		}
		return nil
	}
}

func suiteChoiceCases(add func(*testCase)) {
	add(&testCase{name: "suite/downgrade-at-CONTINUE", section: "§6 V52", roles: iutInitiator, prior: 1,
		summary: "the IUT holds the suite's current record (key_matched): CONTINUE names the second suite the IUT offered that the record has",
		setup:   bothSuites(true),
		tc:      downgrade(pb.Notice_NEXT), want: aborts(pb.Status_SUITE_DOWNGRADE)})
	add(&testCase{name: "key/record-of-a-downgrading-responder", section: "§8 V52", roles: iutInitiator, ownKey: true,
		summary: "the suite's record travels (with both suites); CONTINUE named the second suite the IUT offered that it has",
		setup: func(r runner, id *identity) error {
			if len(id.key.Suites()) >= 2 {
				return nil
			}
			return id.rotate(protocol.DefaultSuites())
		},
		tc: downgrade(pb.Notice_KEY_RECEIVED), want: aborts(pb.Status_SUITE_DOWNGRADE)})
	// The control: after a rotation to a record without the IUT's first
	// suite, the honest choice is a later suite, and the stale held record
	// (key_matched false) must not make the IUT call it a downgrade.
	add(&testCase{name: "suite/honest-later-choice-after-rotation", section: "§6 V52", roles: iutInitiator, prior: 1,
		summary: "the IUT holds a record of the suite's with both suites; the suite rotated to one with only the IUT's second: it chooses that, and the exchange succeeds",
		setup: func(r runner, id *identity) error {
			if err := bothSuites(true)(r, id); err != nil {
				return err
			}
			offered := protocol.DefaultSuites()
			return id.rotate(offered[len(offered)-1:])
		},
		tc: is(tactic{}), want: succeeds(),
		check: func(x *exchange, res *protocol.Result) error {
			common := commonSuites(iutStart(x).GetSuites(), x.own)
			if len(common) == 0 || res.Suite != common[0] {
				return fmt.Errorf("suite %v; want %v", res.Suite, common)
			}
			return nil
		}})
	// The responder's side of the same rule: it takes the first offered
	// suite its record has, whatever the order (the suite's machine also
	// refuses any other choice, V52).
	rev := slices.Clone(protocol.DefaultSuites())
	slices.Reverse(rev)
	add(&testCase{name: "suite/responder-takes-the-first-offered", section: "§6 V17", roles: iutResponder, prior: 1,
		summary: fmt.Sprintf("the suite offers %v, in that order: the IUT chooses the first its record has", rev),
		tc:      is(tactic{config: withSuites(rev...)}), want: succeeds(),
		check: func(x *exchange, res *protocol.Result) error {
			rec, err := x.peerRecord()
			if err != nil {
				return err
			}
			for _, s := range rev {
				if rec.Keys[s] != nil {
					if res.Suite != s {
						return fmt.Errorf("suite %v; want %v, the first offered its record has", res.Suite, s)
					}
					return nil
				}
			}
			return fmt.Errorf("its record has none of %v", rev)
		}})
}
