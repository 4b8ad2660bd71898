package protocol

import (
	"bytes"
	"errors"
	"hash"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// A rejected frame must leave a Machine exactly as it was (flynn/noise
// TestHandshakeRollback): this file has the snapshot that the misbehaving-peer
// table and the property test below compare, and the property test itself.

// asmSnapshot is the progress of one reassembly.
type asmSnapshot struct {
	max         int
	count, next uint32
	data        []byte
}

func snapAsm(r *reassembly) asmSnapshot {
	return asmSnapshot{max: r.max, count: r.count, next: r.next, data: bytes.Clone(r.data)}
}

// machineSnapshot is the state of a Machine, by value.
type machineSnapshot struct {
	state    state
	phase    Phase
	done     bool
	err      error
	maxFrame int

	trValue [32]byte
	trDir   [2][]byte // Sum of each direction's running hash

	suite  Suite
	notice int
	epoch  uint64

	nonce      [NonceSize]byte
	part       [PartSize]byte
	commit     [CommitmentSize]byte
	peerCommit [CommitmentSize]byte

	sentFP, sendKey, recvKey, keyAcked, keyGot, received, initSent, respSent bool

	peerRecord       *PeerRecord
	keyAsm, partAsm  asmSnapshot
	t2, t3           [32]byte
	secrets          *sessionSecrets
	secretsValue     sessionSecrets
	hasResult        bool
	resultKey, resID []byte
}

// snapshotMachine copies everything Consume may change.
func snapshotMachine(m *Machine) machineSnapshot {
	c := m.tr.clone()
	s := machineSnapshot{
		state:      m.state,
		phase:      m.Phase(),
		done:       m.Done(),
		err:        m.err,
		maxFrame:   m.MaxFrame(),
		trValue:    m.tr.value,
		trDir:      [2][]byte{c.dir[0].Sum(nil), c.dir[1].Sum(nil)},
		suite:      m.suite,
		notice:     m.notice,
		epoch:      m.epoch,
		nonce:      m.nonce,
		part:       m.part,
		commit:     m.commit,
		peerCommit: m.peerCommit,
		sentFP:     m.sentFP,
		sendKey:    m.sendKey,
		recvKey:    m.recvKey,
		keyAcked:   m.keyAcked,
		keyGot:     m.keyGot,
		received:   m.received,
		initSent:   m.initSent,
		respSent:   m.respSent,
		peerRecord: m.peerRecord,
		keyAsm:     snapAsm(&m.keyAsm),
		partAsm:    snapAsm(&m.partAsm),
		t2:         m.t2,
		t3:         m.t3,
		secrets:    m.secrets,
	}
	if m.secrets != nil {
		s.secretsValue = *m.secrets
	}
	if r := m.Result(); r != nil {
		s.hasResult = true
		s.resultKey, s.resID = r.Key[:], r.KeyID[:]
	}
	return s
}

// requireUnchanged checks that m is exactly as snapshotted.
func requireUnchanged(t require.TestingT, before machineSnapshot, m *Machine, msgAndArgs ...any) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	after := snapshotMachine(m)
	// Compare the pointers themselves, not what they point to.
	require.True(t, before.peerRecord == after.peerRecord, "peer record replaced")
	require.True(t, before.secrets == after.secrets, "session secrets replaced")
	before.peerRecord, after.peerRecord = nil, nil
	require.Equal(t, before, after, msgAndArgs...)
}

// lockstep runs an honest exchange between fresh machines for a and b (a is
// the initiator) and stops after k frames were delivered, in the order pump
// delivers them. It returns both machines, every frame produced so far by
// each side (delivered or not) and the frames still queued for delivery.
func lockstep(t require.TestingT, a, b *party, knownB, knownA *PeerRecord, k int) (ma, mb *Machine, produced, queued map[Role][]Frame, delivered int) {
	mk := func(c Config) *Machine {
		m, err := NewMachine(c)
		require.NoError(t, err)
		return m
	}
	ma = mk(Config{Role: Initiator, Identity: a.sk, Remote: b.id, Own: a.key, Known: knownB, Epoch: 1})
	mb = mk(Config{Role: Responder, Identity: b.sk, Remote: a.id, Own: b.key, Known: knownA, Epoch: 1})
	machines := map[Role]*Machine{Initiator: ma, Responder: mb}
	produced, queued = map[Role][]Frame{}, map[Role][]Frame{}
	out, err := ma.Start()
	require.NoError(t, err)
	produced[Initiator] = append(produced[Initiator], out...)
	queued[Initiator] = out
	for {
		progressed := false
		for _, from := range []Role{Initiator, Responder} {
			to := from.other()
			for len(queued[from]) > 0 {
				if delivered == k {
					return
				}
				f := queued[from][0]
				queued[from] = queued[from][1:]
				more, err := machines[to].Consume(f.Bytes)
				require.NoError(t, err, "honest %v from %v", f.Type, from)
				produced[to] = append(produced[to], more...)
				queued[to] = append(queued[to], more...)
				delivered++
				progressed = true
			}
		}
		if !progressed {
			return
		}
	}
}

// genBytes draws a byte string whose length is often one that the protocol
// checks for.
func genBytes(t *rapid.T, label string) []byte {
	n := rapid.OneOf(
		rapid.SampledFrom([]int{0, 1, 8, 31, 32, 33, 34, 35, 64}),
		rapid.IntRange(0, 300),
	).Draw(t, label+"-len")
	b := rapid.SliceOfN(rapid.Byte(), n, n).Draw(t, label)
	if n == FingerprintSize && rapid.Bool().Draw(t, label+"-multihash") {
		b[0], b[1] = 0x12, 0x20
	}
	return b
}

func genUint32(t *rapid.T, label string, interesting ...uint32) uint32 {
	return rapid.OneOf(
		rapid.SampledFrom(append(interesting, 0, 1, 2, 3, 0xffff, 0x10000, 1<<32-1)),
		rapid.Uint32(),
	).Draw(t, label)
}

// genNotice draws a structurally plausible notice: any type, and usually the
// body of that type with fields of interesting sizes.
func genNotice(t *rapid.T) []byte {
	n := &pb.Notice{Type: pb.Notice_Type(rapid.Int32Range(0, 9).Draw(t, "type"))}
	body := rapid.IntRange(0, 8).Draw(t, "body") // 0: the body of the type
	if body == 0 {
		body = int(n.Type)
	}
	switch body {
	case 1:
		n.Start = &pb.Start{
			Version:        genUint32(t, "version", Version),
			Nonce:          genBytes(t, "nonce"),
			KeyFingerprint: genBytes(t, "fp"),
			Commitment:     genBytes(t, "commitment"),
			NoticeSize:     genUint32(t, "notice-size", MinNoticeSize-1, MinNoticeSize, DefaultNoticeSize, MaxNoticeSize, MaxNoticeSize+1),
			Epoch:          rapid.SampledFrom([]uint64{0, 1, 2, MaxEpoch, MaxEpoch + 1, 1<<64 - 1}).Draw(t, "epoch"),
			Suites:         rapid.SliceOfN(rapid.Map(rapid.IntRange(0, 3), func(i int) uint32 { return uint32(i) }), 0, 20).Draw(t, "suites"),
		}
	case 2:
		n.Continue = &pb.Continue{
			Nonce:          genBytes(t, "nonce"),
			Suite:          genUint32(t, "suite", uint32(SuiteMLKEM768X25519), uint32(SuiteX25519)),
			KeyMatched:     rapid.Bool().Draw(t, "matched"),
			KeyFingerprint: genBytes(t, "fp"),
			Commitment:     genBytes(t, "commitment"),
			NoticeSize:     genUint32(t, "notice-size", MinNoticeSize-1, MinNoticeSize, DefaultNoticeSize, DefaultNoticeSize+1),
			Epoch:          rapid.SampledFrom([]uint64{0, 1, 2, MaxEpoch, MaxEpoch + 1}).Draw(t, "epoch"),
		}
	case 3:
		n.Next = &pb.Next{KeyMatched: rapid.Bool().Draw(t, "matched")}
	case 4, 6:
		n.Chunk = &pb.Chunk{
			Index: genUint32(t, "index", MaxChunks-1, MaxChunks),
			Count: genUint32(t, "count", MaxChunks, MaxChunks+1),
			Data:  genBytes(t, "data"),
		}
	case 5:
		n.KeyReceived = &pb.KeyReceived{Fingerprint: genBytes(t, "fp")}
	case 7:
		n.PartReceived = &pb.PartReceived{Mac: genBytes(t, "mac")}
	case 8:
		n.Abort = &pb.Abort{Status: pb.Status(rapid.Int32Range(0, 20).Draw(t, "status"))}
	}
	b, err := proto.Marshal(n)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// genMutation draws one of the frames of the exchange (the honest next frame,
// a frame sent earlier by either side, including the machine's own) and
// perhaps damages it.
func genMutation(t *rapid.T, frames [][]byte) []byte {
	f := bytes.Clone(rapid.SampledFrom(frames).Draw(t, "base"))
	switch rapid.IntRange(0, 4).Draw(t, "mutation") {
	case 1: // flip one bit
		i := rapid.IntRange(0, len(f)-1).Draw(t, "at")
		f[i] ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
	case 2: // truncate
		f = f[:rapid.IntRange(0, len(f)-1).Draw(t, "len")]
	case 3: // append
		f = append(f, genBytes(t, "tail")...)
	case 4: // overwrite one byte
		f[rapid.IntRange(0, len(f)-1).Draw(t, "at")] = rapid.Byte().Draw(t, "byte")
	}
	return f
}

// TestRandomFrameNeverAdvancesOnReject puts a machine of either role into
// every state an honest exchange reaches (for each phase-2 combination) and
// feeds it one random frame: random bytes, a random notice, or a frame of the
// exchange, possibly damaged. Consume must not panic, and it either accepts
// the frame, or rejects it leaving the machine exactly as it was; a remote
// ABORT ends the machine without touching the transcript.
func TestRandomFrameNeverAdvancesOnReject(t *testing.T) {
	a, b := newParty(t), newParty(t)
	// How many frames each combination delivers in an honest run.
	total := make([]int, len(combos))
	records := func(c int) (kb, ka *PeerRecord) {
		if combos[c].aKnowsB {
			kb = b.record()
		}
		if combos[c].bKnowsA {
			ka = a.record()
		}
		return kb, ka
	}
	for c := range combos {
		kb, ka := records(c)
		ma, mb, _, _, n := lockstep(t, a, b, kb, ka, -1)
		require.True(t, ma.Done() && mb.Done(), combos[c].name)
		total[c] = n
	}
	accepted, rejected := 0, 0
	rapid.Check(t, func(rt *rapid.T) {
		c := rapid.IntRange(0, len(combos)-1).Draw(rt, "combo")
		role := rapid.SampledFrom([]Role{Initiator, Responder}).Draw(rt, "role")
		kb, ka := records(c)
		// Every state of the exchange, each with its own random frame.
		for k := 0; k <= total[c]; k++ {
			ma, mb, produced, queued, _ := lockstep(rt, a, b, kb, ka, k)
			m := ma
			if role == Responder {
				m = mb
			} else if k == 0 && rapid.Bool().Draw(rt, "before-start") {
				// The initiator before Start: every frame is refused.
				var err error
				m, err = NewMachine(Config{Role: Initiator, Identity: a.sk, Remote: b.id, Own: a.key, Known: kb, Epoch: 1})
				require.NoError(rt, err)
			}
			var frames [][]byte
			for _, r := range []Role{Initiator, Responder} {
				for _, f := range produced[r] {
					frames = append(frames, f.Bytes)
				}
			}
			if next := queued[role.other()]; len(next) > 0 {
				// The honest next frame, three times as likely.
				frames = append(frames, next[0].Bytes, next[0].Bytes, next[0].Bytes)
			}
			var frame []byte
			switch rapid.IntRange(0, 2).Draw(rt, "kind") {
			case 0:
				frame = rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(rt, "bytes")
			case 1:
				frame = genNotice(rt)
			default:
				frame = genMutation(rt, frames)
			}

			before := snapshotMachine(m)
			_, err := m.Consume(frame)
			if err == nil {
				accepted++
				continue
			}
			rejected++
			var ae *AbortError
			if errors.As(err, &ae) {
				require.Equal(rt, stFailed, m.state)
				require.False(rt, m.Done())
				require.Nil(rt, m.Result())
				require.Equal(rt, before.trValue, m.tr.value, "ABORT entered the transcript")
				continue
			}
			requireUnchanged(rt, before, m, "state %d: rejected with %v", k, err)
			if !errors.Is(err, ErrDone) {
				// A frame from the peer is refused for a reason the protocol names.
				require.NotEqual(rt, pb.Status_INTERNAL_ERROR, StatusOf(err), "%v", err)
			}
		}
	})
	t.Logf("accepted %d, rejected %d", accepted, rejected)
}

// TestRejectedFrameLeavesMachineUsable checks the rollback promise end to end:
// before every frame of an honest exchange, the receiver first gets two
// frames it must reject (the honest frame cut short by one byte, and the
// honest frame relabelled with another notice type) and then the honest
// frame, and the exchange still completes with equal keys.
func TestRejectedFrameLeavesMachineUsable(t *testing.T) {
	a, b := newParty(t), newParty(t)
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			var kb, ka *PeerRecord
			if c.aKnowsB {
				kb = b.record()
			}
			if c.bKnowsA {
				ka = a.record()
			}
			ma, mb := pair(t, a, b, kb, ka, nil)
			machines := map[Role]*Machine{Initiator: ma, Responder: mb}
			_, errA, errB := pump(t, ma, mb, func(i int, w wire) []byte {
				m := machines[w.from.other()]
				good := w.frame.Bytes
				for _, bad := range [][]byte{good[:len(good)-1], retype(t, good)} {
					before := snapshotMachine(m)
					_, err := m.Consume(bad)
					require.Error(t, err, "%v", w.frame.Type)
					requireUnchanged(t, before, m, "%v: %v", w.frame.Type, err)
				}
				return good
			})
			require.NoError(t, errA)
			require.NoError(t, errB)
			require.Equal(t, ma.Result().Key, mb.Result().Key)
		})
	}
}

// retype returns frame with another notice type and the same body: KEY and
// PART swap (both carry a chunk, but never in the same phase), every other
// type gets a type whose body it does not carry.
func retype(t require.TestingT, frame []byte) []byte {
	var n pb.Notice
	require.NoError(t, proto.Unmarshal(frame, &n))
	switch n.Type {
	case pb.Notice_KEY:
		n.Type = pb.Notice_PART
	case pb.Notice_PART:
		n.Type = pb.Notice_KEY
	default:
		n.Type = n.Type%pb.Notice_ABORT + 1
	}
	b, err := proto.Marshal(&n)
	require.NoError(t, err)
	return b
}

// clone copies t, so that a snapshot can compare the transcript before and
// after a rejected frame.
func (t *transcript) clone() transcript {
	c := transcript{value: t.value}
	for i, h := range t.dir {
		// crypto/sha256's digest implements hash.Cloner and never fails.
		d, err := h.(hash.Cloner).Clone()
		if err != nil {
			panic("p2pkex: sha256 clone: " + err.Error())
		}
		c.dir[i] = d
	}
	return c
}
