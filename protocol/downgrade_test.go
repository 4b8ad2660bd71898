package protocol

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// lastSuite is the choice of a downgrading responder: the last common suite.
func lastSuite(common []uint16) uint16 { return common[len(common)-1] }

// TestHonestResponderChoosesWhatTheInitiatorExpects backs section 6: for
// every offer and every set of responder suites, our responder chooses the
// first offered suite its record has, so that an honest exchange never
// trips the initiator's downgrade check, with or without a held record.
func TestHonestResponderChoosesWhatTheInitiatorExpects(t *testing.T) {
	offers := [][]Suite{{SuiteMLKEM768X25519, SuiteX25519}, {SuiteX25519, SuiteMLKEM768X25519}, {SuiteMLKEM768X25519}, {SuiteX25519}}
	for _, offer := range offers {
		for _, has := range offers[:3] { // the responder's record: both (either order), or one
			for _, held := range []bool{false, true} {
				t.Run(fmt.Sprintf("offer%v/record%v/held=%v", offer, has, held), func(t *testing.T) {
					a, b := newParty(t), newParty(t, has...)
					var knownB *PeerRecord
					if held {
						knownB = b.record()
					}
					ma, mb := pair(t, a, b, knownB, nil, func(c *Config) {
						if c.Role == Initiator {
							c.Suites = offer
						}
					})
					// The responder supports exactly its record's suites.
					require.ElementsMatch(t, b.key.Suites(), mb.cfg.Suites)
					var want Suite
					for _, s := range offer {
						if slices.Contains(has, s) {
							want = s
							break
						}
					}
					_, errA, errB := pump(t, ma, mb, nil)
					if want == 0 {
						require.ErrorIs(t, errB, ErrNoCommonSuite)
						return
					}
					require.NoError(t, errA)
					require.NoError(t, errB)
					require.Equal(t, want, ma.Result().Suite)
					require.Equal(t, want, mb.Result().Suite)
				})
			}
		}
	}
}

// TestResponderDoesNotChooseALaterSuite: a responder whose record has a
// suite it no longer accepts (Config.Suites narrower than the record)
// refuses when the initiator prefers that suite, instead of choosing a
// later one the initiator would take for a downgrade.
func TestResponderDoesNotChooseALaterSuite(t *testing.T) {
	a, b := newParty(t), newParty(t) // b's record has both suites
	ma, mb := pair(t, a, b, nil, nil, func(c *Config) {
		if c.Role == Initiator {
			c.Suites = []Suite{SuiteX25519, SuiteMLKEM768X25519}
		} else {
			c.Suites = []Suite{SuiteMLKEM768X25519}
		}
	})
	_, _, errB := pump(t, ma, mb, nil)
	require.ErrorIs(t, errB, ErrNoCommonSuite)
	require.ErrorContains(t, errB, "rotate")
	require.NotErrorIs(t, errB, ErrDowngrade)

	// Offered first what it accepts, it goes on.
	ma, mb = pair(t, a, b, nil, nil, func(c *Config) {
		if c.Role == Responder {
			c.Suites = []Suite{SuiteMLKEM768X25519}
		}
	})
	_, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
}

// TestInitiatorRefusesDowngrade backs rule V52: a responder that chooses a
// later common suite is refused with ErrDowngrade (status SUITE_DOWNGRADE)
// at CONTINUE when the initiator holds its current record, or as soon as its
// record arrives in phase 2 otherwise — in either case before the initiator
// seals its part to it.
func TestInitiatorRefusesDowngrade(t *testing.T) {
	for _, c := range []struct {
		name     string
		held     func(b *party) *PeerRecord
		rotate   bool
		refuseAt pb.Notice_Type // the responder notice the initiator refuses
	}{
		{name: "held-current-record", held: (*party).record, refuseAt: pb.Notice_CONTINUE},
		{name: "first-contact", refuseAt: pb.Notice_KEY},
		{name: "held-stale-record", held: (*party).record, rotate: true, refuseAt: pb.Notice_KEY},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := newParty(t), newParty(t)
			var knownB *PeerRecord
			if c.held != nil {
				knownB = c.held(b)
			}
			if c.rotate {
				b.rotate(t)
			}
			ma, mb := pair(t, a, b, knownB, nil, nil)
			mb.choose = lastSuite
			var refused []byte
			log, errA, _ := pump(t, ma, mb, func(i int, w wire) []byte {
				if w.from == Responder && w.frame.Type == c.refuseAt {
					refused = w.frame.Bytes
				}
				return w.frame.Bytes
			})
			require.ErrorIs(t, errA, ErrDowngrade)
			require.ErrorContains(t, errA, "DHKEM(X25519)")
			require.Equal(t, pb.Status_SUITE_DOWNGRADE, StatusOf(errA))
			require.NotNil(t, refused, "the responder never sent %v", c.refuseAt)
			require.Nil(t, ma.Result())
			for _, w := range log {
				require.False(t, w.from == Initiator && w.frame.Type == pb.Notice_PART, "the initiator sealed its part in a downgraded exchange")
			}
			if c.refuseAt == pb.Notice_CONTINUE {
				for _, w := range log {
					require.False(t, w.from == Initiator && w.frame.Type == pb.Notice_NEXT, "the initiator answered a downgraded CONTINUE")
				}
			}

			// The same refusal with the machine state checked: replay the
			// exchange up to the refused notice on fresh machines.
			ma, mb = pair(t, a, b, knownB, nil, nil)
			mb.choose = lastSuite
			_, _, _ = pump(t, ma, mb, func(i int, w wire) []byte {
				if w.from == Responder && w.frame.Type == c.refuseAt && ma.err == nil {
					before := snapshotMachine(ma)
					out, err := ma.Consume(w.frame.Bytes)
					if err == nil { // a KEY chunk before the last
						require.Empty(t, out)
						return nil
					}
					require.ErrorIs(t, err, ErrDowngrade)
					requireUnchanged(t, before, ma, "refused downgrade")
					ab := ma.Fail(err)
					require.NotNil(t, ab)
					n := misUnmarshal(t, ab.Bytes)
					require.Equal(t, pb.Status_SUITE_DOWNGRADE, n.Abort.Status)
					return nil
				}
				return w.frame.Bytes
			})
		})
	}
}

// TestNoFalseDowngradeAfterRotation: the initiator judges the responder's
// choice by the record the responder actually has, not by a held record it
// has rotated away from, whatever suites the rotation added or dropped.
func TestNoFalseDowngradeAfterRotation(t *testing.T) {
	for _, c := range []struct{ before, after []Suite }{
		{[]Suite{SuiteX25519}, []Suite{SuiteMLKEM768X25519, SuiteX25519}},
		{[]Suite{SuiteMLKEM768X25519, SuiteX25519}, []Suite{SuiteX25519}},
	} {
		a, b := newParty(t), newParty(t, c.before...)
		old := b.record()
		b.rotate(t)
		k, err := NewExchangeKey(b.sk, c.after, b.key.Seq, b.key.Created, DefaultRecordLifetime)
		require.NoError(t, err)
		b.key = k
		ma, mb := pair(t, a, b, old, nil, nil)
		_, errA, errB := pump(t, ma, mb, nil)
		require.NoError(t, errA, "%v -> %v", c.before, c.after)
		require.NoError(t, errB)
		require.Equal(t, c.after[0], ma.Result().Suite)
	}
}

// TestNewMachineRefusesForeignRemoteKey: the remote identity key must be
// the named peer's.
func TestNewMachineRefusesForeignRemoteKey(t *testing.T) {
	a, b, c := newParty(t), newParty(t), newParty(t)
	cfg := Config{Role: Initiator, Identity: a.sk, Remote: b.id, RemoteKey: c.sk.GetPublic(), Own: a.key, Epoch: 1}
	_, err := NewMachine(cfg)
	require.ErrorContains(t, err, "remote identity key is not that of")
	cfg.RemoteKey = b.sk.GetPublic()
	_, err = NewMachine(cfg)
	require.NoError(t, err)
}
