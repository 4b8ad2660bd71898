package protocol

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// misScene is one misbehaving-peer case: an honest machine h against a peer
// machine p that runs the protocol honestly until it sends the notice the
// case replaces.
type misScene struct {
	honRole             Role
	hon, peer           *party
	honKnows, peerKnows *PeerRecord // what each side holds of the other
	honMod, peerMod     func(*Config)
	// peerChoose, when set, replaces the peer responder's choice of suite
	// (a downgrading responder; internal/hooks).
	peerChoose func(common []uint16) uint16
	// tamper, when set, runs once on the peer machine right after it drew
	// its part: after Start (peer initiator) or after START (peer responder).
	tamper func(s *misScene)

	h, p     *Machine
	peerPart [PartSize]byte   // the part the peer committed to (or, tampered, sends)
	produced map[Role][]Frame // every frame each side produced so far
	old      []wire           // an earlier session between the same parties
}

func (s *misScene) peerRole() Role { return s.honRole.other() }

func (s *misScene) configs() (hc, pc Config) {
	hc = Config{Role: s.honRole, Identity: s.hon.sk, Remote: s.peer.id, Own: s.hon.key, Known: s.honKnows, Epoch: 1}
	pc = Config{Role: s.peerRole(), Identity: s.peer.sk, Remote: s.hon.id, Own: s.peer.key, Known: s.peerKnows, Epoch: 1}
	if s.honMod != nil {
		s.honMod(&hc)
	}
	if s.peerMod != nil {
		s.peerMod(&pc)
	}
	return hc, pc
}

func (s *misScene) build(t *testing.T) {
	t.Helper()
	hc, pc := s.configs()
	var err error
	s.h, err = NewMachine(hc)
	require.NoError(t, err)
	s.p, err = NewMachine(pc)
	require.NoError(t, err)
	s.p.choose = s.peerChoose
	s.produced = map[Role][]Frame{}
}

func (s *misScene) machine(r Role) *Machine {
	if r == s.honRole {
		return s.h
	}
	return s.p
}

// recordSession runs one complete honest session between the scene's
// parties, with the scene's configuration, and keeps its frames in s.old.
func (s *misScene) recordSession(t *testing.T) {
	t.Helper()
	hc, pc := s.configs()
	mh, err := NewMachine(hc)
	require.NoError(t, err)
	mp, err := NewMachine(pc)
	require.NoError(t, err)
	ma, mb := mh, mp
	if s.honRole == Responder {
		ma, mb = mp, mh
	}
	log, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	s.old = log
}

// oldFrames returns the frames of type typ that role from sent in s.old.
func (s *misScene) oldFrames(t *testing.T, from Role, typ pb.Notice_Type) [][]byte {
	t.Helper()
	var out [][]byte
	for _, w := range s.old {
		if w.from == from && w.frame.Type == typ {
			out = append(out, w.frame.Bytes)
		}
	}
	require.NotEmpty(t, out, "no %v from %v in the earlier session", typ, from)
	return out
}

// ownFrames returns the frames of type typ that role from produced so far.
func (s *misScene) ownFrames(t *testing.T, from Role, typ pb.Notice_Type) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range s.produced[from] {
		if f.Type == typ {
			out = append(out, f.Bytes)
		}
	}
	require.NotEmpty(t, out, "%v produced no %v", from, typ)
	return out
}

func (s *misScene) peerDrewPart() {
	if s.tamper != nil {
		s.tamper(s)
	}
	s.peerPart = s.p.part
}

// runUntil runs both machines, delivering frames in order and alternately
// as pump does, until the peer is about to deliver its nth (from 0) notice
// of type target; it returns that frame, undelivered.
func (s *misScene) runUntil(t *testing.T, target pb.Notice_Type, nth int) []byte {
	t.Helper()
	initiator := s.machine(Initiator)
	out, err := initiator.Start()
	require.NoError(t, err)
	if initiator == s.p {
		s.peerDrewPart()
	}
	s.produced[Initiator] = append(s.produced[Initiator], out...)
	queues := map[Role][]Frame{Initiator: out}
	seen := 0
	for step := 0; step < 1000; step++ {
		progressed := false
		for _, from := range []Role{Initiator, Responder} {
			to := from.other()
			for len(queues[from]) > 0 {
				f := queues[from][0]
				queues[from] = queues[from][1:]
				progressed = true
				if from == s.peerRole() && f.Type == target {
					if seen == nth {
						return f.Bytes
					}
					seen++
				}
				m := s.machine(to)
				more, err := m.Consume(f.Bytes)
				require.NoError(t, err, "honest run before the misbehaviour: %v from the %v", f.Type, from)
				if m == s.p && f.Type == pb.Notice_START {
					s.peerDrewPart()
				}
				s.produced[to] = append(s.produced[to], more...)
				queues[to] = append(queues[to], more...)
			}
		}
		if !progressed {
			break
		}
	}
	t.Fatalf("the peer never sent %v #%d", target, nth)
	return nil
}

// Crafting hostile frames.

func misMarshal(t *testing.T, n *pb.Notice) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(n)
	require.NoError(t, err)
	return b
}

func misUnmarshal(t *testing.T, frame []byte) *pb.Notice {
	t.Helper()
	var n pb.Notice
	require.NoError(t, proto.Unmarshal(frame, &n))
	return &n
}

// misEdit decodes frame, lets f change it and encodes it again.
func misEdit(t *testing.T, frame []byte, f func(n *pb.Notice)) []byte {
	t.Helper()
	n := misUnmarshal(t, frame)
	f(n)
	return misMarshal(t, n)
}

// misPadTo appends an unknown field (number 15) to frame so that it is exactly
// size bytes long. Unknown fields are legal protobuf: only the size differs.
func misPadTo(t *testing.T, frame []byte, size int) []byte {
	t.Helper()
	for n := size - len(frame) - 2; n >= 0; n-- {
		f := append(bytes.Clone(frame), 15<<3|2)
		f = protowire.AppendVarint(f, uint64(n))
		f = append(f, make([]byte, n)...)
		if len(f) == size {
			return f
		}
	}
	t.Fatalf("cannot pad %d bytes to %d", len(frame), size)
	return nil
}

// misOne wraps a single frame as the replacement list.
func misOne(f []byte) [][]byte { return [][]byte{f} }

func misRandom(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// misChunkFrames wraps each chunk in a notice of type typ.
func misChunkFrames(t *testing.T, typ pb.Notice_Type, chunks []*pb.Chunk) [][]byte {
	t.Helper()
	out := make([][]byte, 0, len(chunks))
	for _, c := range chunks {
		out = append(out, misMarshal(t, &pb.Notice{Type: typ, Chunk: c}))
	}
	return out
}

// itemFrames splits item at the negotiated notice size.
func (s *misScene) itemFrames(t *testing.T, typ pb.Notice_Type, item []byte) [][]byte {
	t.Helper()
	require.NotZero(t, s.h.notice)
	return misChunkFrames(t, typ, split(item, s.h.notice))
}

// misSealRecord signs rec with signer, as a record envelope.
func misSealRecord(t *testing.T, signer crypto.PrivKey, rec record.Record) []byte {
	t.Helper()
	env, err := record.Seal(rec, signer)
	require.NoError(t, err)
	b, err := env.Marshal()
	require.NoError(t, err)
	return b
}

// misRecord is a record that signs like an exchange-key record but may
// claim another domain or payload type, or carry a raw payload.
type misRecord struct {
	KeyRecord
	domain  string
	codec   []byte
	payload []byte
}

func (r *misRecord) Domain() string {
	if r.domain != "" {
		return r.domain
	}
	return RecordDomain
}

func (r *misRecord) Codec() []byte {
	if r.codec != nil {
		return r.codec
	}
	return RecordCodec
}

func (r *misRecord) MarshalRecord() ([]byte, error) {
	if r.payload != nil {
		return r.payload, nil
	}
	return r.KeyRecord.MarshalRecord()
}

// peerPayload is a record whose payload is the peer's current one, changed
// at the protobuf level (where KeyRecord cannot go).
func (s *misScene) peerPayload(t *testing.T, change func(r *pb.ExchangeKeyRecord)) *misRecord {
	t.Helper()
	b, err := s.peer.key.KeyRecord.MarshalRecord()
	require.NoError(t, err)
	var r pb.ExchangeKeyRecord
	require.NoError(t, proto.Unmarshal(b, &r))
	change(&r)
	b, err = proto.MarshalOptions{Deterministic: true}.Marshal(&r)
	require.NoError(t, err)
	return &misRecord{payload: b}
}

// peerRecordLike is the peer's current record with changes, unsigned.
func (s *misScene) peerRecordLike(change func(r *KeyRecord)) *KeyRecord {
	r := s.peer.key.KeyRecord
	if change != nil {
		change(&r)
	}
	return &r
}

// sealedPart builds the item a peer sends in PART, sealing part to the
// honest side's exchange key under the negotiated suite and signing it with
// signer in the name of role. ct and sig, when set, damage the ciphertext
// before signing and the signature after.
func (s *misScene) sealedPart(t *testing.T, part []byte, role Role, signer crypto.PrivKey, ct, sig func([]byte)) []byte {
	t.Helper()
	p := s.p
	require.Equal(t, stPhase3, p.state, "the peer must be in phase 3")
	pk := s.hon.key.Keys[p.suite]
	c, err := p.suite.seal(pk, partInfo(role, &p.t2), part)
	require.NoError(t, err)
	if ct != nil {
		ct(c)
	}
	sg, err := signer.Sign(partSigInput(role, &p.t2, c))
	require.NoError(t, err)
	if sig != nil {
		sig(sg)
	}
	b, err := proto.Marshal(&pb.SealedPart{Ciphertext: c, Signature: sg})
	require.NoError(t, err)
	return b
}

func misFlipFirst(b []byte) { b[0] ^= 0x80 }
func misFlipLast(b []byte)  { b[len(b)-1] ^= 0x01 }

// misRow is one way a peer misbehaves.
type misRow struct {
	name   string
	honest Role
	// setup adjusts the scene before the machines are built.
	setup func(t *testing.T, s *misScene)
	// at and nth name the peer's notice to replace.
	at  pb.Notice_Type
	nth int
	// bad returns what the peer sends instead: every frame but the last
	// must be accepted; the last is the misbehaviour.
	bad func(t *testing.T, s *misScene, orig []byte) [][]byte
	// want is the error the honest side must report; for a remote ABORT
	// without a sentinel, abort is the status it carries.
	want  error
	abort pb.Status
}

func misKnowEachOther(t *testing.T, s *misScene) {
	s.honKnows, s.peerKnows = s.peer.record(), s.hon.record()
}

func misNoticeSizes(hon, peer int) func(t *testing.T, s *misScene) {
	return func(t *testing.T, s *misScene) {
		s.honMod = func(c *Config) { c.NoticeSize = hon }
		s.peerMod = func(c *Config) { c.NoticeSize = peer }
	}
}

func misStartEdit(f func(*pb.Start)) func(t *testing.T, s *misScene, orig []byte) [][]byte {
	return func(t *testing.T, s *misScene, orig []byte) [][]byte {
		return misOne(misEdit(t, orig, func(n *pb.Notice) { f(n.Start) }))
	}
}

func misContinueEdit(f func(*pb.Continue)) func(t *testing.T, s *misScene, orig []byte) [][]byte {
	return func(t *testing.T, s *misScene, orig []byte) [][]byte {
		return misOne(misEdit(t, orig, func(n *pb.Notice) { f(n.Continue) }))
	}
}

func misNotice(n *pb.Notice) func(t *testing.T, s *misScene, orig []byte) [][]byte {
	return func(t *testing.T, s *misScene, orig []byte) [][]byte { return misOne(misMarshal(t, n)) }
}

// misKeyItem replaces the peer's KEY notices with the chunks of envelope.
func misKeyItem(envelope func(t *testing.T, s *misScene) []byte) func(t *testing.T, s *misScene, orig []byte) [][]byte {
	return func(t *testing.T, s *misScene, orig []byte) [][]byte {
		return s.itemFrames(t, pb.Notice_KEY, envelope(t, s))
	}
}

// peerKeyChunks are the chunks of the peer's real record at the negotiated
// notice size; the record must take at least two.
func (s *misScene) peerKeyChunks(t *testing.T) []*pb.Chunk {
	t.Helper()
	c := split(s.peer.key.Envelope, s.h.notice)
	require.GreaterOrEqual(t, len(c), 2)
	return c
}

func misbehaviours() []misRow {
	anyFP := func() []byte { return append([]byte{0x12, 0x20}, misRandom(32)...) }
	return []misRow{
		// START, to the responder.
		{name: "start/unsupported-version", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Version = Version + 1 }), want: ErrVersion},
		{name: "start/no-common-suite", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Suites = []uint32{99, 0x10001} }), want: ErrNoCommonSuite},
		{name: "start/no-suites", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Suites = nil }), want: ErrMalformed},
		{name: "start/too-many-suites", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Suites = make([]uint32, 17) }), want: ErrMalformed},
		{name: "start/notice-size-below-min", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.NoticeSize = MinNoticeSize - 1 }), want: ErrNoticeSize},
		{name: "start/notice-size-above-max", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.NoticeSize = MaxNoticeSize + 1 }), want: ErrNoticeSize},
		{name: "start/epoch-zero", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Epoch = 0 }), want: ErrMalformed},
		{name: "start/epoch-above-max", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Epoch = MaxEpoch + 1 }), want: ErrMalformed},
		{name: "start/short-nonce", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Nonce = s.Nonce[:NonceSize-1] }), want: ErrMalformed},
		{name: "start/long-commitment", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.Commitment = append(s.Commitment, 0) }), want: ErrMalformed},
		{name: "start/malformed-fingerprint", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.KeyFingerprint = misRandom(20) }), want: ErrFingerprint},
		{name: "start/fingerprint-not-a-sha256-multihash", honest: Responder, at: pb.Notice_START,
			bad: misStartEdit(func(s *pb.Start) { s.KeyFingerprint = append([]byte{0x13, 0x20}, misRandom(32)...) }), want: ErrFingerprint},
		{name: "start/body-does-not-match-type", honest: Responder, at: pb.Notice_START,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.Continue, n.Start = &pb.Continue{Nonce: n.Start.Nonce}, nil }))
			}, want: ErrUnexpected},
		{name: "start/two-bodies", honest: Responder, at: pb.Notice_START,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.Next = &pb.Next{} }))
			}, want: ErrUnexpected},
		{name: "start/no-body", honest: Responder, at: pb.Notice_START,
			bad: misNotice(&pb.Notice{Type: pb.Notice_START}), want: ErrUnexpected},
		{name: "start/unspecified-type", honest: Responder, at: pb.Notice_START,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.Type = pb.Notice_UNSPECIFIED }))
			}, want: ErrMalformed},
		{name: "start/unknown-type", honest: Responder, at: pb.Notice_START,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.Type = 42 }))
			}, want: ErrMalformed},
		{name: "start/oversize-frame", honest: Responder, at: pb.Notice_START,
			setup: misNoticeSizes(MinNoticeSize, DefaultNoticeSize),
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misPadTo(t, orig, MinNoticeSize+1))
			}, want: ErrFrameTooLarge},
		{name: "start/truncated-frame", honest: Responder, at: pb.Notice_START,
			bad:  func(t *testing.T, s *misScene, orig []byte) [][]byte { return misOne(orig[:len(orig)-1]) },
			want: ErrMalformed},
		{name: "start/garbage-frame", honest: Responder, at: pb.Notice_START,
			bad: misBytes(0xff, 0xff, 0xff, 0xff), want: ErrMalformed},
		{name: "start/second-start", honest: Responder, at: pb.Notice_NEXT,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(s.ownFrames(t, Initiator, pb.Notice_START)[0])
			}, want: ErrUnexpected},
		{name: "start/to-the-initiator", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(s.ownFrames(t, Initiator, pb.Notice_START)[0])
			}, want: ErrUnexpected},

		// CONTINUE, to the initiator.
		{name: "continue/notice-size-above-offered", honest: Initiator, at: pb.Notice_CONTINUE,
			setup: misNoticeSizes(512, MaxNoticeSize),
			bad:   misContinueEdit(func(c *pb.Continue) { c.NoticeSize = 513 }), want: ErrNoticeSize},
		{name: "continue/notice-size-below-min", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.NoticeSize = MinNoticeSize - 1 }), want: ErrNoticeSize},
		{name: "continue/suite-not-offered", honest: Initiator, at: pb.Notice_CONTINUE,
			setup: func(t *testing.T, s *misScene) { s.honMod = func(c *Config) { c.Suites = []Suite{SuiteX25519} } },
			bad:   misContinueEdit(func(c *pb.Continue) { c.Suite = uint32(SuiteMLKEM768X25519) }), want: ErrNoCommonSuite},
		{name: "continue/unknown-suite", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.Suite = 0x10001 }), want: ErrNoCommonSuite},
		{name: "continue/echoes-initiator-commitment", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.Continue.Commitment = s.h.commit[:] }))
			}, want: ErrCommitment},
		{name: "continue/epoch-zero", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.Epoch = 0 }), want: ErrMalformed},
		{name: "continue/epoch-above-max", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.Epoch = MaxEpoch + 1 }), want: ErrMalformed},
		{name: "continue/short-nonce", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.Nonce = nil }), want: ErrMalformed},
		{name: "continue/short-commitment", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.Commitment = c.Commitment[:16] }), want: ErrMalformed},
		{name: "continue/malformed-fingerprint", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.KeyFingerprint = misRandom(FingerprintSize + 1) }), want: ErrFingerprint},
		{name: "continue/claims-match-without-fingerprint", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misContinueEdit(func(c *pb.Continue) { c.KeyMatched = true }), want: ErrFingerprint},
		{name: "continue/claims-match-for-record-without-suite", honest: Initiator, at: pb.Notice_CONTINUE,
			setup: func(t *testing.T, s *misScene) {
				// The initiator holds an X25519-only record of the peer and
				// the peer answers for the ML-KEM suite.
				k, err := NewExchangeKey(s.peer.sk, []Suite{SuiteX25519}, 1, time.Now(), time.Hour)
				require.NoError(t, err)
				r := k.PeerRecord
				s.honKnows = &r
			},
			bad: misContinueEdit(func(c *pb.Continue) { c.KeyMatched = true; c.Suite = uint32(SuiteMLKEM768X25519) }), want: ErrFingerprint},
		{name: "continue/suite-downgrade", honest: Initiator, at: pb.Notice_CONTINUE,
			// The initiator holds the peer's current record (both suites)
			// and offered the hybrid suite first; the peer answers with
			// X25519 (rule V52).
			setup: misKnowEachOther,
			bad:   misContinueEdit(func(c *pb.Continue) { c.Suite = uint32(SuiteX25519) }), want: ErrDowngrade},
		{name: "continue/to-the-responder", honest: Responder, at: pb.Notice_NEXT,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(s.ownFrames(t, Responder, pb.Notice_CONTINUE)[0])
			}, want: ErrUnexpected},
		{name: "continue/second-continue", honest: Initiator, at: pb.Notice_KEY,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(s.ownFrames(t, Responder, pb.Notice_CONTINUE)[0])
			}, want: ErrUnexpected},
		{name: "continue/oversize-frame", honest: Initiator, at: pb.Notice_CONTINUE,
			setup: misNoticeSizes(300, 300),
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misPadTo(t, orig, 301))
			}, want: ErrFrameTooLarge},

		// NEXT, to the responder.
		{name: "next/claims-match-without-fingerprint", honest: Responder, at: pb.Notice_NEXT,
			bad: misNotice(&pb.Notice{Type: pb.Notice_NEXT, Next: &pb.Next{KeyMatched: true}}), want: ErrFingerprint},
		{name: "next/body-does-not-match-type", honest: Responder, at: pb.Notice_NEXT,
			bad: misNotice(&pb.Notice{Type: pb.Notice_NEXT, KeyReceived: &pb.KeyReceived{}}), want: ErrUnexpected},
		{name: "next/to-the-initiator", honest: Initiator, at: pb.Notice_CONTINUE,
			bad: misNotice(&pb.Notice{Type: pb.Notice_NEXT, Next: &pb.Next{}}), want: ErrUnexpected},
		{name: "next/in-phase-2", honest: Responder, at: pb.Notice_KEY,
			bad: misNotice(&pb.Notice{Type: pb.Notice_NEXT, Next: &pb.Next{}}), want: ErrUnexpected},
		{name: "next/truncated-frame", honest: Responder, at: pb.Notice_NEXT,
			bad:  func(t *testing.T, s *misScene, orig []byte) [][]byte { return misOne(orig[:len(orig)-1]) },
			want: ErrMalformed},

		// KEY: chunking.
		{name: "key/too-many-chunks", honest: Initiator, at: pb.Notice_KEY,
			bad: misNotice(&pb.Notice{Type: pb.Notice_KEY, Chunk: &pb.Chunk{Index: 0, Count: MaxChunks + 1, Data: []byte{1}}}), want: ErrChunk},
		{name: "key/zero-chunks", honest: Initiator, at: pb.Notice_KEY,
			bad: misNotice(&pb.Notice{Type: pb.Notice_KEY, Chunk: &pb.Chunk{Index: 0, Count: 0, Data: []byte{1}}}), want: ErrChunk},
		{name: "key/inconsistent-chunk-count", honest: Responder, at: pb.Notice_KEY,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				c := s.peerKeyChunks(t)
				c[1].Count++
				return misChunkFrames(t, pb.Notice_KEY, c[:2])
			}, want: ErrChunk},
		{name: "key/out-of-order-chunk", honest: Initiator, at: pb.Notice_KEY,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misChunkFrames(t, pb.Notice_KEY, s.peerKeyChunks(t)[1:2])
			}, want: ErrChunk},
		{name: "key/repeated-chunk", honest: Responder, at: pb.Notice_KEY,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				c := s.peerKeyChunks(t)
				return misChunkFrames(t, pb.Notice_KEY, []*pb.Chunk{c[0], c[0]})
			}, want: ErrChunk},
		{name: "key/empty-chunk", honest: Initiator, at: pb.Notice_KEY,
			bad: misNotice(&pb.Notice{Type: pb.Notice_KEY, Chunk: &pb.Chunk{Index: 0, Count: 2}}), want: ErrChunk},
		{name: "key/item-over-bound", honest: Responder, at: pb.Notice_KEY,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				per := chunkData(s.h.notice)
				count := MaxRecordSize/per + 2
				var c []*pb.Chunk
				for i := 0; i < count; i++ {
					c = append(c, &pb.Chunk{Index: uint32(i), Count: uint32(count), Data: misRandom(per)})
				}
				return misChunkFrames(t, pb.Notice_KEY, c[:MaxRecordSize/per+1])
			}, want: ErrChunk},
		{name: "key/item-over-bound-in-one-chunk", honest: Initiator, at: pb.Notice_KEY,
			setup: misNoticeSizes(MaxNoticeSize, MaxNoticeSize),
			bad:   misNotice(&pb.Notice{Type: pb.Notice_KEY, Chunk: &pb.Chunk{Index: 0, Count: 1, Data: make([]byte, MaxRecordSize+1)}}), want: ErrChunk},
		{name: "key/oversize-frame", honest: Initiator, at: pb.Notice_KEY,
			setup: misNoticeSizes(DefaultNoticeSize, 200), // negotiated: 200
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				require.Equal(t, 200, s.h.MaxFrame())
				return misOne(misPadTo(t, orig, 201))
			}, want: ErrFrameTooLarge},
		{name: "key/truncated-frame", honest: Responder, at: pb.Notice_KEY,
			bad:  func(t *testing.T, s *misScene, orig []byte) [][]byte { return misOne(orig[:len(orig)/2]) },
			want: ErrMalformed},
		{name: "key/not-expected", honest: Initiator, at: pb.Notice_PART,
			setup: misKnowEachOther,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misChunkFrames(t, pb.Notice_KEY, split(s.peer.key.Envelope, s.h.notice)[:1])
			}, want: ErrUnexpected},
		{name: "key/after-the-record-was-imported", honest: Responder, at: pb.Notice_KEY_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(s.ownFrames(t, Initiator, pb.Notice_KEY)[0])
			}, want: ErrUnexpected},

		// KEY: the record.
		{name: "key/garbage-record", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte { return misRandom(300) }), want: ErrBadRecord},
		{name: "key/record-with-bad-signature", honest: Responder, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				env := bytes.Clone(s.peer.key.Envelope)
				env[len(env)-1] ^= 1 // the signature is the envelope's last field
				return env
			}), want: ErrBadRecord},
		{name: "key/signed-by-a-third-identity", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, newParty(t).sk, s.peerRecordLike(nil))
			}), want: ErrWrongSigner},
		{name: "key/record-names-another-peer", honest: Responder, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				third := newParty(t)
				return misSealRecord(t, s.peer.sk, s.peerRecordLike(func(r *KeyRecord) { r.Peer = third.id }))
			}), want: ErrWrongSigner},
		{name: "key/honest-side-own-record", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte { return s.hon.key.Envelope }), want: ErrWrongSigner},
		{name: "key/expired-record", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerRecordLike(func(r *KeyRecord) {
					r.Created, r.Expires = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Second)
				}))
			}), want: ErrBadRecord},
		{name: "key/record-created-in-the-future", honest: Responder, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerRecordLike(func(r *KeyRecord) {
					r.Created, r.Expires = time.Now().Add(MaxClockSkew+time.Minute), time.Now().Add(time.Hour)
				}))
			}), want: ErrBadRecord},
		{name: "key/record-without-the-negotiated-suite", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				k, err := NewExchangeKey(s.peer.sk, []Suite{SuiteX25519}, 1, time.Now(), time.Hour)
				require.NoError(t, err)
				return k.Envelope
			}), want: ErrBadRecord},
		{name: "key/record-signed-for-another-domain", honest: Responder, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, &misRecord{KeyRecord: *s.peerRecordLike(nil), domain: "libp2p-routing-state"})
			}), want: ErrBadRecord},
		{name: "key/wrong-payload-type", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, &misRecord{KeyRecord: *s.peerRecordLike(nil), codec: []byte("/p2pkex/exchange-key/2")})
			}), want: ErrBadRecord},
		{name: "key/record-duplicate-suite", honest: Responder, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerPayload(t, func(r *pb.ExchangeKeyRecord) {
					r.Keys = append(r.Keys, r.Keys[0])
				}))
			}), want: ErrBadRecord},
		{name: "key/record-invalid-public-key", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerPayload(t, func(r *pb.ExchangeKeyRecord) {
					k := r.Keys[len(r.Keys)-1]
					k.PublicKey = k.PublicKey[1:]
				}))
			}), want: ErrBadRecord},
		{name: "key/record-without-known-suite", honest: Responder, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerPayload(t, func(r *pb.ExchangeKeyRecord) {
					r.Keys = []*pb.ExchangeKeyRecord_SuiteKey{{Suite: 0x7777, PublicKey: misRandom(32)}}
				}))
			}), want: ErrBadRecord},
		{name: "key/record-with-invalid-peer-id", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerPayload(t, func(r *pb.ExchangeKeyRecord) {
					r.PeerId = []byte{0xde, 0xad}
				}))
			}), want: ErrBadRecord},
		{name: "key/rollback-of-seq", honest: Initiator, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) {
				// The honest side already holds seq 5, created no earlier
				// than the peer's seq 1 (in the same second or later): the
				// peer's record is older, not a reset (RelateRecords).
				k, err := NewExchangeKey(s.peer.sk, DefaultSuites(), 5, time.Now(), time.Hour)
				require.NoError(t, err)
				r := k.PeerRecord
				s.honKnows = &r
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrRollback},
		{name: "key/equal-seq-different-record", honest: Responder, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) {
				// Another record of the peer's seq, created no earlier than
				// the one the peer sends.
				k, err := NewExchangeKey(s.peer.sk, DefaultSuites(), s.peer.key.Seq, time.Now(), time.Hour)
				require.NoError(t, err)
				r := k.PeerRecord
				s.honKnows = &r
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrRollback},
		{name: "key/rollback-created-earlier", honest: Responder, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) {
				// The peer presents a higher seq, but created an hour
				// before the record the honest side holds.
				s.honKnows = s.peer.record()
				k, err := NewExchangeKey(s.peer.sk, DefaultSuites(), s.peer.key.Seq+1, s.peer.key.Created.Add(-time.Hour), DefaultRecordLifetime)
				require.NoError(t, err)
				s.peer.key = k
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrRollback},
		{name: "key/seq-jump-beyond-bound", honest: Initiator, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) {
				s.honKnows = misPeerKey(t, s, 1, time.Now().Add(-time.Hour), DefaultRecordLifetime)
				misPeerKey(t, s, 2+MaxSeqJump, time.Now(), DefaultRecordLifetime)
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrRollback},
		{name: "key/rollback-against-expired-held-record", honest: Responder, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) {
				// Held: seq 3, created 40 days ago, expired 10 days ago.
				// Sent: seq 2, created 50 days ago, valid for 60: still
				// valid, and older than the held record.
				day := 24 * time.Hour
				s.honKnows = misPeerKey(t, s, 3, time.Now().Add(-40*day), 30*day)
				misPeerKey(t, s, 2, time.Now().Add(-50*day), MaxRecordLifetime)
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrRollback},
		{name: "key/store-reset-refused-by-trust-policy", honest: Initiator, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) {
				// A reset (lower seq, created later) is the policy's to
				// judge; this one refuses it.
				s.honKnows = misPeerKey(t, s, 5, time.Now().Add(-time.Hour), DefaultRecordLifetime)
				misPeerKey(t, s, 1, time.Now(), DefaultRecordLifetime)
				s.honMod = func(c *Config) { c.Accept = misRefuseAll }
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrKeyRejected},
		{name: "key/record-lifetime-too-long", honest: Responder, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerRecordLike(func(r *KeyRecord) {
					r.Created, r.Expires = time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour)
				}))
			}), want: ErrBadRecord},
		{name: "key/record-expires-before-created", honest: Initiator, at: pb.Notice_KEY,
			bad: misKeyItem(func(t *testing.T, s *misScene) []byte {
				return misSealRecord(t, s.peer.sk, s.peerRecordLike(func(r *KeyRecord) {
					// Created within the clock skew, not yet expired.
					r.Created, r.Expires = time.Now().Add(5*time.Minute), time.Now().Add(time.Minute)
				}))
			}), want: ErrBadRecord},
		{name: "key/record-of-a-downgrading-responder", honest: Initiator, at: pb.Notice_KEY,
			// First contact: the peer chose X25519 although its record
			// has the hybrid suite the initiator offered first (rule V52).
			setup: func(t *testing.T, s *misScene) {
				s.peerChoose = func(common []uint16) uint16 { return common[len(common)-1] }
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrDowngrade},
		{name: "key/refused-by-trust-policy", honest: Initiator, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) {
				s.honMod = func(c *Config) { c.Accept = misRefuseAll }
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_KEY, s.peer.key.Envelope)
			}, want: ErrKeyRejected},

		// KEY_RECEIVED.
		{name: "key-received/wrong-fingerprint", honest: Initiator, at: pb.Notice_KEY_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misMarshal(t, &pb.Notice{Type: pb.Notice_KEY_RECEIVED, KeyReceived: &pb.KeyReceived{Fingerprint: anyFP()}}))
			}, want: ErrFingerprint},
		{name: "key-received/names-the-peers-own-record", honest: Responder, at: pb.Notice_KEY_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				fp := s.peer.key.Fingerprint
				return misOne(misMarshal(t, &pb.Notice{Type: pb.Notice_KEY_RECEIVED, KeyReceived: &pb.KeyReceived{Fingerprint: fp[:]}}))
			}, want: ErrFingerprint},
		{name: "key-received/stale-fingerprint-after-rotation", honest: Responder, at: pb.Notice_KEY_RECEIVED,
			setup: func(t *testing.T, s *misScene) {
				// The peer holds the honest side's previous record, which
				// the honest side has since rotated.
				s.peerKnows = s.hon.record()
				s.hon.rotate(t)
			},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				stale := s.peerKnows.Fingerprint
				return misOne(misMarshal(t, &pb.Notice{Type: pb.Notice_KEY_RECEIVED, KeyReceived: &pb.KeyReceived{Fingerprint: stale[:]}}))
			}, want: ErrFingerprint},
		{name: "key-received/malformed-fingerprint", honest: Initiator, at: pb.Notice_KEY_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.KeyReceived.Fingerprint = n.KeyReceived.Fingerprint[:FingerprintSize-1] }))
			}, want: ErrFingerprint},
		{name: "key-received/no-key-was-sent", honest: Initiator, at: pb.Notice_KEY,
			setup: func(t *testing.T, s *misScene) { s.peerKnows = s.hon.record() },
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				fp := s.hon.key.Fingerprint
				return misOne(misMarshal(t, &pb.Notice{Type: pb.Notice_KEY_RECEIVED, KeyReceived: &pb.KeyReceived{Fingerprint: fp[:]}}))
			}, want: ErrUnexpected},
		{name: "key-received/twice", honest: Responder, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(s.ownFrames(t, Initiator, pb.Notice_KEY_RECEIVED)[0])
			}, want: ErrUnexpected},

		// PART.
		{name: "part/in-phase-2", honest: Responder, at: pb.Notice_KEY,
			bad: misNotice(&pb.Notice{Type: pb.Notice_PART, Chunk: &pb.Chunk{Index: 0, Count: 1, Data: []byte{1}}}), want: ErrUnexpected},
		{name: "part/bad-signature", honest: Initiator, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_PART, s.sealedPart(t, s.peerPart[:], s.peerRole(), s.peer.sk, nil, misFlipFirst))
			}, want: ErrBadSignature},
		{name: "part/signed-by-a-third-identity", honest: Responder, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_PART, s.sealedPart(t, s.peerPart[:], s.peerRole(), newParty(t).sk, nil, nil))
			}, want: ErrBadSignature},
		{name: "part/signed-with-the-wrong-role", honest: Initiator, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_PART, s.sealedPart(t, s.peerPart[:], s.honRole, s.peer.sk, nil, nil))
			}, want: ErrBadSignature},
		{name: "part/reflected", honest: Responder, at: pb.Notice_PART, setup: misKnowEachOther,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.ownFrames(t, Responder, pb.Notice_PART)
			}, want: ErrBadSignature},
		{name: "part/undecryptable", honest: Initiator, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				// Validly signed by the peer, but the AEAD tag is broken.
				return s.itemFrames(t, pb.Notice_PART, s.sealedPart(t, s.peerPart[:], s.peerRole(), s.peer.sk, misFlipLast, nil))
			}, want: ErrDecrypt},
		{name: "part/undecryptable-encapsulation", honest: Responder, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_PART, s.sealedPart(t, s.peerPart[:], s.peerRole(), s.peer.sk, misFlipFirst, nil))
			}, want: ErrDecrypt},
		{name: "part/sealed-with-the-wrong-role", honest: Initiator, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				// Sealed under the honest side's role label, signed for the
				// peer's: the signature holds, the HPKE info does not.
				p := s.p
				pk := s.hon.key.Keys[p.suite]
				c, err := p.suite.seal(pk, partInfo(s.honRole, &p.t2), s.peerPart[:])
				require.NoError(t, err)
				sg, err := s.peer.sk.Sign(partSigInput(s.peerRole(), &p.t2, c))
				require.NoError(t, err)
				b, err := proto.Marshal(&pb.SealedPart{Ciphertext: c, Signature: sg})
				require.NoError(t, err)
				return s.itemFrames(t, pb.Notice_PART, b)
			}, want: ErrDecrypt},
		{name: "part/short-plaintext", honest: Responder, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_PART, s.sealedPart(t, s.peerPart[:PartSize-1], s.peerRole(), s.peer.sk, nil, nil))
			}, want: ErrDecrypt},
		{name: "part/commitment-mismatch-from-responder", honest: Initiator, at: pb.Notice_PART,
			setup: func(t *testing.T, s *misScene) { s.tamper = misSwapPart },
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.ownFrames(t, s.peerRole(), pb.Notice_PART)
			},
			want: ErrCommitment},
		{name: "part/commitment-mismatch-from-initiator", honest: Responder, at: pb.Notice_PART, setup: func(t *testing.T, s *misScene) {
			misKnowEachOther(t, s)
			s.tamper = misSwapPart
		},
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.ownFrames(t, s.peerRole(), pb.Notice_PART)
			},
			want: ErrCommitment},
		{name: "part/garbage-item", honest: Initiator, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.itemFrames(t, pb.Notice_PART, []byte{0x0a, 0x05, 0x01})
			}, want: ErrMalformed},
		{name: "part/item-over-bound", honest: Responder, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				per := chunkData(s.h.notice)
				count := MaxSealedPartSize/per + 1
				var c []*pb.Chunk
				for i := 0; i < count; i++ {
					c = append(c, &pb.Chunk{Index: uint32(i), Count: uint32(count), Data: misRandom(per)})
				}
				return misChunkFrames(t, pb.Notice_PART, c)
			}, want: ErrChunk},
		{name: "part/out-of-order-chunk", honest: Initiator, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.Chunk.Index++ }))
			}, want: ErrChunk},
		{name: "part/replayed-from-earlier-session", honest: Responder, at: pb.Notice_PART,
			setup: func(t *testing.T, s *misScene) { s.recordSession(t) },
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.oldFrames(t, s.peerRole(), pb.Notice_PART)
			}, want: ErrBadSignature},
		{name: "part/after-the-part", honest: Initiator, at: pb.Notice_PART_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.ownFrames(t, s.peerRole(), pb.Notice_PART)[:1]
			}, want: ErrUnexpected},

		// PART_RECEIVED.
		{name: "part-received/bad-mac", honest: Initiator, at: pb.Notice_PART_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.PartReceived.Mac[7] ^= 4 }))
			}, want: ErrConfirmation},
		{name: "part-received/short-mac", honest: Responder, at: pb.Notice_PART_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misEdit(t, orig, func(n *pb.Notice) { n.PartReceived.Mac = n.PartReceived.Mac[:MACSize-1] }))
			}, want: ErrConfirmation},
		{name: "part-received/reflected", honest: Responder, at: pb.Notice_PART_RECEIVED,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(s.ownFrames(t, Responder, pb.Notice_PART_RECEIVED)[0])
			}, want: ErrConfirmation},
		{name: "part-received/before-the-part", honest: Initiator, at: pb.Notice_PART,
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return misOne(misMarshal(t, &pb.Notice{Type: pb.Notice_PART_RECEIVED, PartReceived: &pb.PartReceived{Mac: misRandom(MACSize)}}))
			}, want: ErrUnexpected},
		{name: "part-received/replayed-from-earlier-session", honest: Initiator, at: pb.Notice_PART_RECEIVED,
			setup: func(t *testing.T, s *misScene) { s.recordSession(t) },
			bad: func(t *testing.T, s *misScene, orig []byte) [][]byte {
				return s.oldFrames(t, s.peerRole(), pb.Notice_PART_RECEIVED)
			}, want: ErrConfirmation},

		// ABORT.
		{name: "abort/busy-in-phase-1", honest: Initiator, at: pb.Notice_CONTINUE,
			bad:  misNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_BUSY}}),
			want: ErrBusy, abort: pb.Status_BUSY},
		{name: "abort/conflict-in-phase-1", honest: Responder, at: pb.Notice_START,
			bad:  misNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_CONFLICT}}),
			want: ErrConflict, abort: pb.Status_CONFLICT},
		{name: "abort/key-rejected-in-phase-2", honest: Responder, at: pb.Notice_KEY,
			bad:   misNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_KEY_REJECTED}}),
			abort: pb.Status_KEY_REJECTED},
		{name: "abort/bad-confirmation-in-phase-3", honest: Initiator, at: pb.Notice_PART_RECEIVED,
			bad:   misNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_BAD_CONFIRMATION}}),
			abort: pb.Status_BAD_CONFIRMATION},
		{name: "abort/unknown-status", honest: Responder, at: pb.Notice_PART,
			bad:   misNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: 99}}),
			abort: 99},
		{name: "abort/without-body", honest: Initiator, at: pb.Notice_KEY,
			bad: misNotice(&pb.Notice{Type: pb.Notice_ABORT}), want: ErrUnexpected},
	}
}

var errMisPolicy = errors.New("test policy refuses every key")

// misPeerKey makes the peer's current exchange key one of sequence seq
// created at created, and returns its record.
func misPeerKey(t *testing.T, s *misScene, seq uint64, created time.Time, lifetime time.Duration) *PeerRecord {
	t.Helper()
	k, err := NewExchangeKey(s.peer.sk, DefaultSuites(), seq, created, lifetime)
	require.NoError(t, err)
	s.peer.key = k
	return s.peer.record()
}

func misRefuseAll(peer.ID, *PeerRecord, *PeerRecord) error { return errMisPolicy }

// misSwapPart makes the peer send a part other than the one it committed to.
func misSwapPart(s *misScene) {
	copy(s.p.part[:], misRandom(PartSize))
}

func misBytes(b ...byte) func(t *testing.T, s *misScene, orig []byte) [][]byte {
	return func(t *testing.T, s *misScene, orig []byte) [][]byte { return misOne(b) }
}

// TestMisbehavingPeer runs each misbehaviour against an honest machine and
// checks that it is refused with the expected error, that the refused frame
// left the machine exactly as it was, that failing the machine yields the
// ABORT that names the error, that nothing is installed, and that the same
// honest party then completes a fresh exchange.
func TestMisbehavingPeer(t *testing.T) {
	seenTypes := map[pb.Notice_Type]bool{}
	for _, row := range misbehaviours() {
		t.Run(row.name, func(t *testing.T) {
			s := &misScene{honRole: row.honest, hon: newParty(t), peer: newParty(t)}
			if row.setup != nil {
				row.setup(t, s)
			}
			s.build(t)
			orig := s.runUntil(t, row.at, row.nth)
			frames := row.bad(t, s, orig)
			require.NotEmpty(t, frames)
			h := s.h
			for i, f := range frames[:len(frames)-1] {
				_, err := h.Consume(f)
				require.NoError(t, err, "frame %d of the misbehaviour", i)
			}
			last := frames[len(frames)-1]
			if n := new(pb.Notice); proto.Unmarshal(last, n) == nil {
				seenTypes[n.Type] = true
			}

			before := snapshotMachine(h)
			out, err := h.Consume(last)
			require.Error(t, err)
			require.Empty(t, out)
			if row.want != nil {
				require.ErrorIs(t, err, row.want)
			}
			var ae *AbortError
			if errors.As(err, &ae) {
				// A remote ABORT ends the machine; nothing enters the
				// transcript and nothing is sent back.
				require.NotZero(t, row.abort, "unexpected remote ABORT %v", err)
				require.Equal(t, row.abort, ae.Status)
				require.Equal(t, stFailed, h.state)
				require.Equal(t, before.trValue, h.tr.value)
				require.Nil(t, h.Fail(err), "no ABORT answers an ABORT")
				require.ErrorIs(t, h.Err(), err)
			} else {
				require.Zero(t, row.abort, "expected a remote ABORT, got %v", err)
				requireUnchanged(t, before, h, "refused %v", err)
				ab := h.Fail(err)
				require.NotNil(t, ab, "Fail must produce an ABORT")
				require.Equal(t, pb.Notice_ABORT, ab.Type)
				n := misUnmarshal(t, ab.Bytes)
				require.Equal(t, pb.Notice_ABORT, n.Type)
				require.NotNil(t, n.Abort)
				require.Equal(t, StatusOf(err), n.Abort.Status)
				require.NotEqual(t, pb.Status_INTERNAL_ERROR, n.Abort.Status, "%v", err)
				require.LessOrEqual(t, len(ab.Bytes), MinNoticeSize)
			}
			require.False(t, h.Done())
			require.Nil(t, h.Result())
			_, err = h.Consume(orig)
			require.ErrorIs(t, err, ErrDone, "a failed machine takes nothing more")

			// The same honest party, with the same identity and exchange
			// key, still completes an exchange with an honest peer.
			requireFreshExchange(t, s.honRole, s.hon, newParty(t))
		})
	}
	for _, typ := range []pb.Notice_Type{pb.Notice_START, pb.Notice_CONTINUE, pb.Notice_NEXT, pb.Notice_KEY,
		pb.Notice_KEY_RECEIVED, pb.Notice_PART, pb.Notice_PART_RECEIVED, pb.Notice_ABORT} {
		require.True(t, seenTypes[typ], "no misbehaviour sends %v", typ)
	}
}

// requireFreshExchange runs an honest exchange between hon (in role) and
// other and checks that both sides end with the same key.
func requireFreshExchange(t *testing.T, role Role, hon, other *party) {
	t.Helper()
	a, b := hon, other
	if role == Responder {
		a, b = other, hon
	}
	ma, mb := pair(t, a, b, nil, nil, nil)
	_, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.True(t, ma.Done() && mb.Done())
	require.Equal(t, ma.Result().Key, mb.Result().Key)
	require.Equal(t, a.key.Fingerprint, mb.Result().PeerRecord.Fingerprint)
	require.Equal(t, b.key.Fingerprint, ma.Result().PeerRecord.Fingerprint)
}

// TestFrameOfExactNoticeSizeAccepted is the other side of the oversize rows:
// the same padding that makes a frame one byte too long is accepted when the
// frame is exactly at the limit, so those rows fail on the size alone.
func TestFrameOfExactNoticeSizeAccepted(t *testing.T) {
	t.Run("START at the responder's own size", func(t *testing.T) {
		s := &misScene{honRole: Responder, hon: newParty(t), peer: newParty(t)}
		misNoticeSizes(MinNoticeSize, DefaultNoticeSize)(t, s)
		s.build(t)
		orig := s.runUntil(t, pb.Notice_START, 0)
		_, err := s.h.Consume(misPadTo(t, orig, MinNoticeSize))
		require.NoError(t, err)
	})
	t.Run("KEY at the negotiated size", func(t *testing.T) {
		s := &misScene{honRole: Initiator, hon: newParty(t), peer: newParty(t)}
		misNoticeSizes(DefaultNoticeSize, 200)(t, s)
		s.build(t)
		orig := s.runUntil(t, pb.Notice_KEY, 0)
		_, err := s.h.Consume(misPadTo(t, orig, 200))
		require.NoError(t, err)
	})
}

// TestReplayFromEarlierSession records a whole session between two parties
// and, in a second session between the same parties, substitutes the old
// notices of one type for the new ones. Whatever is replayed, the second
// session fails with a typed error and neither side ends with a key.
// (Phase-1 notices carry nothing that names the other side's nonce, so a
// replayed START or CONTINUE is accepted where it arrives and the session
// fails in phase 3, where the transcript is signed; a replayed PART or
// PART_RECEIVED is refused where it arrives.)
func TestReplayFromEarlierSession(t *testing.T) {
	a, b := newParty(t), newParty(t)
	cases := []struct {
		typ  pb.Notice_Type
		from Role
		want error // the error of the side that refuses first
	}{
		{pb.Notice_START, Initiator, ErrBadSignature},
		{pb.Notice_CONTINUE, Responder, ErrBadSignature},
		{pb.Notice_PART, Initiator, ErrBadSignature},
		{pb.Notice_PART, Responder, ErrBadSignature},
		{pb.Notice_PART_RECEIVED, Initiator, ErrConfirmation},
		{pb.Notice_PART_RECEIVED, Responder, ErrConfirmation},
	}
	for _, c := range combos {
		for _, rc := range cases {
			t.Run(fmt.Sprintf("%s/%v-from-%v", c.name, rc.typ, rc.from), func(t *testing.T) {
				var kb, ka *PeerRecord
				if c.aKnowsB {
					kb = b.record()
				}
				if c.bKnowsA {
					ka = a.record()
				}
				ma, mb := pair(t, a, b, kb, ka, nil)
				old, errA, errB := pump(t, ma, mb, nil)
				require.NoError(t, errA)
				require.NoError(t, errB)
				var replay [][]byte
				for _, w := range old {
					if w.from == rc.from && w.frame.Type == rc.typ {
						replay = append(replay, w.frame.Bytes)
					}
				}
				require.NotEmpty(t, replay)

				ma, mb = pair(t, a, b, kb, ka, nil)
				replaced := 0
				_, errA, errB = pump(t, ma, mb, func(i int, w wire) []byte {
					if w.from == rc.from && w.frame.Type == rc.typ && replaced < len(replay) {
						replaced++
						return replay[replaced-1]
					}
					return w.frame.Bytes
				})
				require.NotZero(t, replaced)
				machines := map[Role]*Machine{Initiator: ma, Responder: mb}
				for _, r := range []Role{Initiator, Responder} {
					if rc.typ == pb.Notice_PART_RECEIVED && r == rc.from {
						// The side whose confirmation was swapped verified
						// the genuine one of its peer: the last notice of
						// any exchange can be lost, and only its receiver
						// must notice.
						continue
					}
					require.False(t, machines[r].Done(), "the %v finished a session with a replayed %v", r, rc.typ)
					require.Nil(t, machines[r].Result())
				}
				victim := map[Role]error{Initiator: errA, Responder: errB}[rc.from.other()]
				other := map[Role]error{Initiator: errA, Responder: errB}[rc.from]
				if rc.typ == pb.Notice_START || rc.typ == pb.Notice_CONTINUE {
					// Refused in phase 3 by whichever side verifies first.
					if victim == nil {
						victim = other
					}
				}
				require.ErrorIs(t, victim, rc.want)
			})
		}
	}
}

// TestNoticeAfterDone: a finished machine takes no further notice, does not
// change, and answers nothing (not even ABORT); its result stays available.
func TestNoticeAfterDone(t *testing.T) {
	a, b := newParty(t), newParty(t)
	ma, mb := pair(t, a, b, nil, nil, nil)
	log, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	for _, m := range []*Machine{ma, mb} {
		key := m.Result().Key
		for _, w := range log {
			before := snapshotMachine(m)
			out, err := m.Consume(w.frame.Bytes)
			require.ErrorIs(t, err, ErrDone)
			require.Empty(t, out)
			requireUnchanged(t, before, m)
		}
		abort := misMarshal(t, &pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_TIMEOUT}})
		_, err := m.Consume(abort)
		require.ErrorIs(t, err, ErrDone)
		require.Nil(t, m.Fail(ErrTimeout), "no ABORT after the exchange finished")
		require.True(t, m.Done())
		require.Equal(t, key, m.Result().Key)
	}
}
