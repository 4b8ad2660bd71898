package protocol

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// recordSession runs one honest exchange and returns its frames.
func recordSession(t *testing.T, a, b *party, kb, ka *PeerRecord, size int) []wire {
	t.Helper()
	ma, mb := pair(t, a, b, kb, ka, func(c *Config) { c.NoticeSize = size })
	log, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.True(t, ma.Done() && mb.Done())
	return log
}

// TestReplayIntoNewSession replays every notice of a finished session, one
// at a time, into a new session between the same two parties, in place of
// the fresh notice of the same type and position. Unless the two are
// byte-identical (a record re-sent unchanged), the receiving side rejects
// the session and installs nothing.
func TestReplayIntoNewSession(t *testing.T) {
	a, b := newParty(t), newParty(t)
	for _, c := range combos {
		for _, size := range []int{MinNoticeSize, DefaultNoticeSize} {
			var kb, ka *PeerRecord
			if c.aKnowsB {
				kb = b.record()
			}
			if c.bKnowsA {
				ka = a.record()
			}
			old := recordSession(t, a, b, kb, ka, size)
			for i, rec := range old {
				name := fmt.Sprintf("%s/%d/%d-%v-from-%v", c.name, size, i, rec.frame.Type, rec.from)
				t.Run(name, func(t *testing.T) {
					ma, mb := pair(t, a, b, kb, ka, func(c *Config) { c.NoticeSize = size })
					seen := map[Role]int{}
					identical := false
					_, errA, errB := pump(t, ma, mb, func(j int, w wire) []byte {
						n := seen[w.from]
						seen[w.from]++
						if w.from == rec.from && n == countFrom(old[:i], rec.from) && w.frame.Type == rec.frame.Type {
							identical = bytes.Equal(w.frame.Bytes, rec.frame.Bytes)
							return rec.frame.Bytes
						}
						return w.frame.Bytes
					})
					receiver := mb
					if rec.from == Responder {
						receiver = ma
					}
					if identical {
						return
					}
					// The session fails (the side that notices first
					// aborts) and the side that got the replay installs
					// nothing.
					require.True(t, errA != nil || errB != nil, "replayed %v went unnoticed", rec.frame.Type)
					require.False(t, receiver.Done())
					require.Nil(t, receiver.Result())
				})
			}
		}
	}
}

func countFrom(log []wire, r Role) int {
	n := 0
	for _, w := range log {
		if w.from == r {
			n++
		}
	}
	return n
}

// TestReplayWholeStream feeds one side's complete recorded stream — in
// order and shuffled — to a fresh machine of the other role. It never
// finishes.
func TestReplayWholeStream(t *testing.T) {
	a, b := newParty(t), newParty(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range combos {
		var kb, ka *PeerRecord
		if c.aKnowsB {
			kb = b.record()
		}
		if c.bKnowsA {
			ka = a.record()
		}
		old := recordSession(t, a, b, kb, ka, DefaultNoticeSize)
		for _, from := range []Role{Initiator, Responder} {
			var stream [][]byte
			for _, w := range old {
				if w.from == from {
					stream = append(stream, w.frame.Bytes)
				}
			}
			for _, order := range []string{"in-order", "shuffled-1", "shuffled-2", "shuffled-3"} {
				t.Run(fmt.Sprintf("%s/from-%v/%s", c.name, from, order), func(t *testing.T) {
					frames := append([][]byte(nil), stream...)
					if order != "in-order" {
						rng.Shuffle(len(frames), func(i, j int) { frames[i], frames[j] = frames[j], frames[i] })
					}
					ma, mb := pair(t, a, b, kb, ka, nil)
					victim := mb
					if from == Responder {
						victim = ma
						_, err := ma.Start()
						require.NoError(t, err)
					}
					var failed error
					for _, f := range frames {
						if _, err := victim.Consume(f); err != nil {
							failed = err
							break
						}
					}
					require.Error(t, failed, "a replayed stream was accepted to the end")
					require.False(t, victim.Done())
				})
			}
		}
	}
}

// TestReflection sends a side's own recorded notices back at it, as if
// they came from the peer, both from a finished session and from the
// running one. Role labels in signatures and MACs make every one fail.
func TestReflection(t *testing.T) {
	a, b := newParty(t), newParty(t)
	old := recordSession(t, a, b, b.record(), a.record(), DefaultNoticeSize)
	for _, from := range []Role{Initiator, Responder} {
		t.Run("finished-session/"+from.String(), func(t *testing.T) {
			ma, mb := pair(t, a, b, b.record(), a.record(), nil)
			victim := ma
			if from == Responder {
				victim = mb
			}
			if from == Initiator {
				_, err := ma.Start()
				require.NoError(t, err)
			}
			var failed error
			for _, w := range old {
				if w.from != from {
					continue
				}
				if _, err := victim.Consume(w.frame.Bytes); err != nil {
					failed = err
					break
				}
			}
			require.Error(t, failed)
			require.False(t, victim.Done())
		})
	}
	// Within the running session: the peer's PART (or PART_RECEIVED) is
	// held back from the victim, and the victim's own is sent back to it.
	for _, typ := range []pb.Notice_Type{pb.Notice_PART, pb.Notice_PART_RECEIVED} {
		for _, victim := range []Role{Initiator, Responder} {
			t.Run(fmt.Sprintf("running-session/%v-to-%v", typ, victim), func(t *testing.T) {
				ma, mb := pair(t, a, b, b.record(), a.record(), nil)
				m := ma
				if victim == Responder {
					m = mb
				}
				var own [][]byte
				_, _, _ = pump(t, ma, mb, func(_ int, w wire) []byte {
					if w.from != victim && w.frame.Type == pb.Notice_PART_RECEIVED {
						return nil // after the held-back PART it would be out of order
					}
					if w.frame.Type != typ {
						return w.frame.Bytes
					}
					if w.from == victim {
						own = append(own, w.frame.Bytes)
						return w.frame.Bytes
					}
					return nil // held back
				})
				require.NotEmpty(t, own)
				require.False(t, m.Done())
				var err error
				for _, f := range own {
					if _, err = m.Consume(f); err != nil {
						break
					}
				}
				if typ == pb.Notice_PART {
					require.ErrorIs(t, err, ErrBadSignature)
				} else {
					require.ErrorIs(t, err, ErrConfirmation)
				}
				require.False(t, m.Done())
			})
		}
	}
}
