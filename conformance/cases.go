package conformance

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// want is the outcome a case expects of the IUT.
type want struct {
	ok bool // the exchange succeeds on both sides
	// status: the IUT aborts with it (in ABORT or its reset code; a bare
	// reset passes with a note).
	status pb.Status
	// quiet: the IUT ends the exchange with a reset and sends no ABORT
	// (it received one: V48).
	quiet bool
}

func succeeds() want            { return want{ok: true} }
func aborts(s pb.Status) want   { return want{status: s} }
func protocolError() want       { return aborts(pb.Status_PROTOCOL_ERROR) }
func keyRejected() want         { return aborts(pb.Status_KEY_REJECTED) }
func resetsWithoutAnswer() want { return want{quiet: true} }
func (w want) String() string {
	switch {
	case w.ok:
		return "success"
	case w.quiet:
		return "reset, no ABORT"
	}
	return "ABORT " + w.status.String()
}

// Roles a case applies to: the role of the IUT.
var (
	iutResponder = []protocol.Role{protocol.Responder}
	iutInitiator = []protocol.Role{protocol.Initiator}
	iutBoth      = []protocol.Role{protocol.Responder, protocol.Initiator}
)

// testCase is one case of the suite.
type testCase struct {
	name    string // unique, "<notice or topic>/<what>"
	section string // the spec section and rule, "§14 V10"
	summary string
	roles   []protocol.Role
	// fresh: the IUT must hold no record of the suite's identity (first
	// contact). Each case in responder mode has a fresh identity; in
	// initiator mode these cases run before any exchange succeeds.
	fresh bool
	// prior honest exchanges before the case, so that both sides hold
	// each other's current record.
	prior int
	// ownKey: the suite's record must travel in phase 2 (in initiator
	// mode the suite rotates first if the IUT holds its current record).
	ownKey bool
	// setup runs after the prior exchanges.
	setup func(r runner, id *identity) error
	// tc builds the tactic for the IUT's role.
	tc   func(iut protocol.Role) tactic
	want want
	// check is an extra check of a successful exchange.
	check func(x *exchange, res *protocol.Result) error
	// script replaces the single exchange (several exchanges per case).
	script func(r runner, id *identity) error
	// slow: waits for the IUT's phase timeout; run only with Options.Slow.
	slow bool
	// expect, when set, is the expected outcome as listed (a script case
	// whose outcome depends on the IUT's trust policy).
	expect string
}

func (c *testCase) appliesTo(iut protocol.Role) bool {
	for _, r := range c.roles {
		if r == iut {
			return true
		}
	}
	return false
}

// is returns a tactic that does not depend on the IUT's role.
func is(t tactic) func(protocol.Role) tactic { return func(protocol.Role) tactic { return t } }

// opening is the suite's first notice type for the IUT's role: START when
// the IUT responds, CONTINUE when it initiates.
func opening(iut protocol.Role) pb.Notice_Type {
	if iut == protocol.Responder {
		return pb.Notice_START
	}
	return pb.Notice_CONTINUE
}

// editOpening changes the suite's first notice.
func editOpening(fn func(n *pb.Notice)) func(protocol.Role) tactic {
	return func(iut protocol.Role) tactic {
		return tactic{out: editType(opening(iut), func(_ *exchange, n *pb.Notice) { fn(n) })}
	}
}

func editStart(fn func(s *pb.Start)) func(protocol.Role) tactic {
	return is(tactic{out: editType(pb.Notice_START, func(_ *exchange, n *pb.Notice) { fn(n.Start) })})
}

func editContinue(fn func(x *exchange, c *pb.Continue)) func(protocol.Role) tactic {
	return is(tactic{out: editType(pb.Notice_CONTINUE, func(x *exchange, n *pb.Notice) { fn(x, n.Continue) })})
}

// iutStart is the IUT's START (initiator mode).
func iutStart(x *exchange) *pb.Start { return x.peerOpening.GetStart() }

// forgetPeer makes the IUT's record travel: the suite names none.
func forgetPeer(_ *exchange, c *protocol.Config) { c.Known = nil }

func withSuites(s ...protocol.Suite) func(*exchange, *protocol.Config) {
	return func(_ *exchange, c *protocol.Config) { c.Suites = s }
}

func cases() []*testCase {
	var cs []*testCase
	add := func(c *testCase) { cs = append(cs, c) }

	// -----------------------------------------------------------------
	// Happy paths (sections 2, 6, 7, 11.3).
	add(&testCase{name: "happy/first-contact", section: "§7.1", roles: iutBoth, fresh: true,
		summary: "no record known: both records travel in phase 2", tc: is(tactic{}), want: succeeds(),
		check: func(_ *exchange, res *protocol.Result) error {
			if !res.InitiatorKeySent || !res.ResponderKeySent {
				return fmt.Errorf("records sent: initiator %v, responder %v; want both", res.InitiatorKeySent, res.ResponderKeySent)
			}
			return nil
		}})
	add(&testCase{name: "happy/records-known", section: "§7.4", roles: iutBoth, prior: 1,
		summary: "both records known: phase 2 is empty", tc: is(tactic{}), want: succeeds(),
		check: func(_ *exchange, res *protocol.Result) error {
			if res.InitiatorKeySent || res.ResponderKeySent {
				return fmt.Errorf("records sent: initiator %v, responder %v; want none", res.InitiatorKeySent, res.ResponderKeySent)
			}
			return nil
		}})
	add(&testCase{name: "happy/notice-size-128", section: "§6, §12", roles: iutBoth,
		summary: "the suite asks for 128-byte notices: every record and part is chunked",
		tc:      is(tactic{config: func(_ *exchange, c *protocol.Config) { c.NoticeSize = protocol.MinNoticeSize }}),
		want:    succeeds(),
		check: func(_ *exchange, res *protocol.Result) error {
			if res.NoticeSize != protocol.MinNoticeSize {
				return fmt.Errorf("negotiated notice size %d, want 128", res.NoticeSize)
			}
			return nil
		}})
	add(&testCase{name: "happy/unknown-field-in-PART_RECEIVED", section: "§3", roles: iutBoth,
		summary: "a valid but unusual encoding: an unknown field in an unhashed notice is ignored",
		tc: is(tactic{out: onBatch(func(x *exchange, batch []protocol.Frame) {
			out := make([]protocol.Frame, len(batch))
			copy(out, batch)
			for i, f := range out {
				if f.Type == pb.Notice_PART_RECEIVED {
					b := append([]byte(nil), f.Bytes...)
					b = protowire.AppendTag(b, 99, protowire.VarintType)
					b = protowire.AppendVarint(b, 7)
					out[i] = protocol.Frame{Type: f.Type, Bytes: b}
				}
			}
			x.send(out...)
		}, pb.Notice_PART_RECEIVED)}),
		want: succeeds()})
	add(&testCase{name: "happy/kept-stream", section: "§2", roles: iutResponder,
		summary: "three exchanges one after another on one stream", script: keptStream})
	add(&testCase{name: "happy/new-stream-per-exchange", section: "§2", roles: iutResponder,
		summary: "two exchanges, each on a stream of its own, closed after it", script: newStreams})
	for _, s := range protocol.DefaultSuites() {
		s := s
		add(&testCase{name: "happy/suite-" + s.String(), section: "§6, §11.3", roles: iutBoth,
			summary: fmt.Sprintf("the exchange runs with suite %d (%v)", s, s),
			setup: func(r runner, id *identity) error {
				if r.iut() == protocol.Initiator {
					// The responder takes the first offered suite its
					// record holds: a record of this suite only.
					return id.rotate([]protocol.Suite{s})
				}
				return nil
			},
			tc: func(iut protocol.Role) tactic {
				if iut == protocol.Responder {
					return tactic{config: withSuites(s)}
				}
				return tactic{}
			},
			want: succeeds(),
			check: func(_ *exchange, res *protocol.Result) error {
				if res.Suite != s {
					return fmt.Errorf("suite %v, want %v", res.Suite, s)
				}
				return nil
			}})
	}
	suiteChoiceCases(add)
	add(&testCase{name: "happy/stale-record-after-rotation", section: "§7.5", roles: iutBoth, prior: 1,
		summary: "the suite rotated: the IUT names the stale record and receives the new one",
		setup:   func(_ runner, id *identity) error { return id.rotate(protocol.DefaultSuites()) },
		tc:      is(tactic{}), want: succeeds(),
		check: func(x *exchange, res *protocol.Result) error {
			own := res.InitiatorKeySent
			peerSent := res.ResponderKeySent
			if x.role == protocol.Responder {
				own, peerSent = peerSent, own
			}
			if !own || peerSent {
				return fmt.Errorf("records sent: the suite's %v, the IUT's %v; want only the suite's", own, peerSent)
			}
			return nil
		}})
	add(&testCase{name: "abort/after-completion", section: "§16, V48", roles: iutBoth,
		summary: "an ABORT after the IUT completed: it keeps its key, does not answer, and the next exchange succeeds",
		tc: is(tactic{after: func(x *exchange) {
			// ABORT and a half-close, not a reset: a reset could overtake
			// the suite's last PART_RECEIVED, and then the IUT would not
			// have completed.
			x.sendNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_BAD_CONFIRMATION}})
			x.closeWrite()
		}}),
		want: want{ok: true, quiet: true}})

	// -----------------------------------------------------------------
	// Framing and decoding of the first notice (section 3, 4; V1-V7).
	add(&testCase{name: "frame/non-minimal-length", section: "§3 V1", roles: iutBoth,
		summary: "length prefix 0x82 0x00", tc: is(tactic{out: rawFirst([]byte{0x82, 0x00})}), want: protocolError()})
	add(&testCase{name: "frame/length-over-63-bits", section: "§3 V1", roles: iutBoth,
		summary: "a ten-byte length prefix", tc: is(tactic{out: rawFirst([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})}), want: protocolError()})
	add(&testCase{name: "frame/over-notice-size", section: "§3 V2", roles: iutBoth,
		summary: "a length of 65537 and no body: refused before the body is read",
		tc:      is(tactic{out: rawFirst(protowire.AppendVarint(nil, protocol.MaxNoticeSize+1))}), want: protocolError()})
	add(&testCase{name: "frame/empty", section: "§3 V3", roles: iutBoth,
		summary: "a zero-length frame", tc: is(tactic{out: rawFirst([]byte{0x00})}), want: protocolError()})
	add(&testCase{name: "notice/undecodable", section: "§4 V4", roles: iutBoth,
		summary: "a frame that is no protobuf", tc: is(tactic{out: rawFirst([]byte{0x04, 0xff, 0xff, 0xff, 0xff})}), want: protocolError()})
	add(&testCase{name: "notice/unspecified-type", section: "§4.1 V5", roles: iutBoth,
		summary: "type 0 with the body of the first notice",
		tc:      editOpening(func(n *pb.Notice) { n.Type = pb.Notice_UNSPECIFIED }), want: protocolError()})
	add(&testCase{name: "notice/unknown-type", section: "§4.1 V5", roles: iutBoth,
		summary: "type 9", tc: editOpening(func(n *pb.Notice) { n.Type = 9 }), want: protocolError()})
	add(&testCase{name: "notice/two-bodies", section: "§4.1 V6", roles: iutBoth,
		summary: "the first notice with a NEXT body besides its own",
		tc:      editOpening(func(n *pb.Notice) { n.Next = &pb.Next{} }), want: protocolError()})
	add(&testCase{name: "notice/body-of-another-type", section: "§4.1 V6", roles: iutBoth,
		summary: "the first notice's type with a NEXT body only",
		tc: editOpening(func(n *pb.Notice) {
			n.Start, n.Continue, n.Next = nil, nil, &pb.Next{}
		}), want: protocolError()})
	add(&testCase{name: "notice/no-body", section: "§4.1 V6", roles: iutBoth,
		summary: "the first notice's type without a body",
		tc:      editOpening(func(n *pb.Notice) { n.Start, n.Continue = nil, nil }), want: protocolError()})
	add(&testCase{name: "order/PART-as-first-notice", section: "§5 V7", roles: iutBoth,
		summary: "a PART chunk instead of the first notice",
		tc:      is(tactic{out: noticeFirst(&pb.Notice{Type: pb.Notice_PART, Chunk: &pb.Chunk{Index: 0, Count: 1, Data: []byte{1}}})}),
		want:    protocolError()})
	add(&testCase{name: "order/second-START", section: "§5.1 V7", roles: iutResponder,
		summary: "START again instead of NEXT",
		tc: is(tactic{out: onBatch(func(x *exchange, batch []protocol.Frame) {
			x.send(replace(batch, pb.Notice_NEXT, []protocol.Frame{x.produced[0]})[:1]...)
		}, pb.Notice_NEXT)}),
		want: protocolError()})
	add(&testCase{name: "order/START-answered-with-START", section: "§5.1 V7", roles: iutInitiator,
		summary: "a START instead of CONTINUE",
		tc: is(tactic{out: onBatch(func(x *exchange, _ []protocol.Frame) {
			x.sendNotice(&pb.Notice{Type: pb.Notice_START, Start: &pb.Start{Version: 1, Suites: []uint32{1, 2},
				Nonce: randomBytes(32), Commitment: randomBytes(32), NoticeSize: 1024, Epoch: 1}})
		}, pb.Notice_CONTINUE)}),
		want: protocolError()})
	add(&testCase{name: "order/KEY-when-none-announced", section: "§5.2 V7", roles: iutBoth, prior: 1,
		summary: "records known (phase 2 empty), yet a KEY chunk before PART",
		tc: is(tactic{out: onBatch(func(x *exchange, batch []protocol.Frame) {
			key := chunks(pb.Notice_KEY, x.id.key.Envelope, x.noticeSize())[:1]
			x.send(replace(batch, pb.Notice_PART, append(key, partsOf(batch)...))...)
		}, pb.Notice_PART)}),
		want: protocolError()})
	add(&testCase{name: "order/KEY_RECEIVED-for-no-KEY", section: "§5.2 V7", roles: iutBoth, prior: 1,
		summary: "records known, yet a KEY_RECEIVED before PART",
		tc: is(tactic{out: onBatch(func(x *exchange, batch []protocol.Frame) {
			kr := marshal(&pb.Notice{Type: pb.Notice_KEY_RECEIVED, KeyReceived: &pb.KeyReceived{Fingerprint: x.id.known.Fingerprint[:]}})
			x.send(replace(batch, pb.Notice_PART, append([]protocol.Frame{kr}, partsOf(batch)...))...)
		}, pb.Notice_PART)}),
		want: protocolError()})
	add(&testCase{name: "order/PART_RECEIVED-before-PART", section: "§5.3 V7", roles: iutBoth,
		summary: "PART_RECEIVED in place of the suite's PART",
		tc: is(tactic{out: replaceWith(pb.Notice_PART, func(*exchange) []protocol.Frame {
			return []protocol.Frame{marshal(&pb.Notice{Type: pb.Notice_PART_RECEIVED, PartReceived: &pb.PartReceived{Mac: randomBytes(32)}})}
		})}),
		want: protocolError()})

	// -----------------------------------------------------------------
	// START (the IUT responds; V10-V17).
	add(&testCase{name: "start/unsupported-version", section: "§6 V10", roles: iutResponder,
		summary: "version 2", tc: editStart(func(s *pb.Start) { s.Version = 2 }), want: aborts(pb.Status_UNSUPPORTED_VERSION)})
	add(&testCase{name: "start/short-nonce", section: "§4.2 V11", roles: iutResponder,
		summary: "a 31-byte nonce", tc: editStart(func(s *pb.Start) { s.Nonce = s.Nonce[:31] }), want: protocolError()})
	add(&testCase{name: "start/long-commitment", section: "§4.2 V12", roles: iutResponder,
		summary: "a 33-byte commitment", tc: editStart(func(s *pb.Start) { s.Commitment = append(s.Commitment, 0) }), want: protocolError()})
	add(&testCase{name: "start/epoch-zero", section: "§6 V13", roles: iutResponder,
		summary: "epoch 0", tc: editStart(func(s *pb.Start) { s.Epoch = 0 }), want: protocolError()})
	add(&testCase{name: "start/epoch-above-max", section: "§6 V13", roles: iutResponder,
		summary: "epoch 2^48 + 1", tc: editStart(func(s *pb.Start) { s.Epoch = protocol.MaxEpoch + 1 }), want: protocolError()})
	add(&testCase{name: "start/epoch-too-far-ahead", section: "§6 V13", roles: iutResponder, fresh: true,
		summary: "epoch 2^20 + 2 on first contact (the IUT proposes 1)",
		tc:      editStart(func(s *pb.Start) { s.Epoch = protocol.MaxEpochAhead + 2 }), want: protocolError()})
	add(&testCase{name: "start/notice-size-below-min", section: "§6 V14", roles: iutResponder,
		summary: "notice size 127", tc: editStart(func(s *pb.Start) { s.NoticeSize = 127 }), want: aborts(pb.Status_BAD_NOTICE_SIZE)})
	add(&testCase{name: "start/notice-size-above-max", section: "§6 V14", roles: iutResponder,
		summary: "notice size 65537", tc: editStart(func(s *pb.Start) { s.NoticeSize = protocol.MaxNoticeSize + 1 }), want: aborts(pb.Status_BAD_NOTICE_SIZE)})
	add(&testCase{name: "start/no-suites", section: "§4.2 V15", roles: iutResponder,
		summary: "an empty suite list", tc: editStart(func(s *pb.Start) { s.Suites = nil }), want: protocolError()})
	add(&testCase{name: "start/too-many-suites", section: "§4.2 V15", roles: iutResponder,
		summary: "17 suites (also over 128 bytes: V2 gives the same status)",
		tc: editStart(func(s *pb.Start) {
			s.Suites = nil
			for i := uint32(1); i <= 17; i++ {
				s.Suites = append(s.Suites, i)
			}
		}), want: protocolError()})
	add(&testCase{name: "start/malformed-fingerprint", section: "§9 V16", roles: iutResponder,
		summary: "a 33-byte fingerprint", tc: editStart(func(s *pb.Start) { s.KeyFingerprint = append([]byte{0x12, 0x20}, randomBytes(31)...) }), want: protocolError()})
	add(&testCase{name: "start/fingerprint-not-sha256", section: "§9 V16", roles: iutResponder,
		summary: "a 34-byte multihash of another function (0x13)",
		tc:      editStart(func(s *pb.Start) { s.KeyFingerprint = append([]byte{0x13, 0x20}, randomBytes(32)...) }), want: protocolError()})
	add(&testCase{name: "start/no-common-suite", section: "§6 V17", roles: iutResponder,
		summary: "only suite 99 offered", tc: editStart(func(s *pb.Start) { s.Suites = []uint32{99} }), want: aborts(pb.Status_NO_COMMON_SUITE)})

	// -----------------------------------------------------------------
	// CONTINUE (the IUT initiates; V18-V25).
	add(&testCase{name: "continue/short-nonce", section: "§4.3 V18", roles: iutInitiator,
		summary: "a 31-byte nonce", tc: editContinue(func(_ *exchange, c *pb.Continue) { c.Nonce = c.Nonce[:31] }), want: protocolError()})
	add(&testCase{name: "continue/short-commitment", section: "§4.3 V19", roles: iutInitiator,
		summary: "a 31-byte commitment", tc: editContinue(func(_ *exchange, c *pb.Continue) { c.Commitment = c.Commitment[:31] }), want: protocolError()})
	add(&testCase{name: "continue/epoch-zero", section: "§6 V20", roles: iutInitiator,
		summary: "epoch 0", tc: editContinue(func(_ *exchange, c *pb.Continue) { c.Epoch = 0 }), want: protocolError()})
	add(&testCase{name: "continue/epoch-above-max", section: "§6 V20", roles: iutInitiator,
		summary: "epoch 2^48 + 1", tc: editContinue(func(_ *exchange, c *pb.Continue) { c.Epoch = protocol.MaxEpoch + 1 }), want: protocolError()})
	add(&testCase{name: "continue/epoch-too-far-ahead", section: "§6 V20", roles: iutInitiator,
		summary: "2^20 + 1 above the IUT's proposal",
		tc: editContinue(func(x *exchange, c *pb.Continue) {
			c.Epoch = iutStart(x).GetEpoch() + protocol.MaxEpochAhead + 1
		}), want: protocolError()})
	add(&testCase{name: "continue/notice-size-above-offered", section: "§6 V21", roles: iutInitiator,
		summary: "one above the IUT's offer",
		tc: editContinue(func(x *exchange, c *pb.Continue) {
			c.NoticeSize = iutStart(x).GetNoticeSize() + 1
		}), want: aborts(pb.Status_BAD_NOTICE_SIZE)})
	add(&testCase{name: "continue/notice-size-below-min", section: "§6 V21", roles: iutInitiator,
		summary: "notice size 127", tc: editContinue(func(_ *exchange, c *pb.Continue) { c.NoticeSize = 127 }), want: aborts(pb.Status_BAD_NOTICE_SIZE)})
	add(&testCase{name: "continue/suite-not-offered", section: "§6 V22", roles: iutInitiator,
		summary: "suite 99 chosen", tc: editContinue(func(_ *exchange, c *pb.Continue) { c.Suite = 99 }), want: aborts(pb.Status_NO_COMMON_SUITE)})
	add(&testCase{name: "continue/claims-match-without-fingerprint", section: "§6 V23", roles: iutInitiator, fresh: true,
		summary: "key_matched although START named no record",
		tc:      editContinue(func(_ *exchange, c *pb.Continue) { c.KeyMatched = true }), want: protocolError()})
	add(&testCase{name: "continue/echoes-initiator-commitment", section: "§11.1 V24", roles: iutInitiator,
		summary: "the IUT's own commitment sent back",
		tc: editContinue(func(x *exchange, c *pb.Continue) {
			c.Commitment = iutStart(x).GetCommitment()
		}), want: aborts(pb.Status_BAD_COMMITMENT)})
	add(&testCase{name: "continue/malformed-fingerprint", section: "§9 V25", roles: iutInitiator,
		summary: "a 33-byte fingerprint", tc: editContinue(func(_ *exchange, c *pb.Continue) { c.KeyFingerprint = append([]byte{0x12, 0x20}, randomBytes(31)...) }), want: protocolError()})

	// -----------------------------------------------------------------
	// NEXT (the IUT responds; V26).
	add(&testCase{name: "next/claims-match-without-fingerprint", section: "§6 V26", roles: iutResponder, fresh: true,
		summary: "key_matched although CONTINUE named no record",
		tc:      is(tactic{out: editType(pb.Notice_NEXT, func(_ *exchange, n *pb.Notice) { n.Next.KeyMatched = true })}),
		want:    protocolError()})

	// -----------------------------------------------------------------
	// Chunks (section 12; V27-V31).
	halves := func(x *exchange) (a, b []byte) {
		e := x.own.Envelope
		return e[:len(e)/2], e[len(e)/2:]
	}
	chunkCase := func(name, rule, summary string, cs func(x *exchange) []*pb.Chunk) {
		add(&testCase{name: "key/" + name, section: "§12 " + rule, roles: iutBoth, ownKey: true, summary: summary,
			tc: is(tactic{out: replaceChunks(pb.Notice_KEY, cs)}), want: protocolError()})
	}
	chunkCase("zero-chunks", "V27", "chunk count 0", func(x *exchange) []*pb.Chunk {
		return []*pb.Chunk{{Index: 0, Count: 0, Data: x.own.Envelope[:64]}}
	})
	chunkCase("too-many-chunks", "V27", "chunk count 129", func(x *exchange) []*pb.Chunk {
		return []*pb.Chunk{{Index: 0, Count: protocol.MaxChunks + 1, Data: x.own.Envelope[:64]}}
	})
	chunkCase("inconsistent-chunk-count", "V28", "counts 2 then 3", func(x *exchange) []*pb.Chunk {
		a, b := halves(x)
		return []*pb.Chunk{{Index: 0, Count: 2, Data: a}, {Index: 1, Count: 3, Data: b}}
	})
	chunkCase("out-of-order-chunk", "V29", "index 1 first", func(x *exchange) []*pb.Chunk {
		a, b := halves(x)
		return []*pb.Chunk{{Index: 1, Count: 2, Data: b}, {Index: 0, Count: 2, Data: a}}
	})
	chunkCase("repeated-chunk", "V29", "index 0 twice", func(x *exchange) []*pb.Chunk {
		a, _ := halves(x)
		return []*pb.Chunk{{Index: 0, Count: 2, Data: a}, {Index: 0, Count: 2, Data: a}}
	})
	chunkCase("index-not-below-count", "V29", "index 2 of 2", func(x *exchange) []*pb.Chunk {
		a, b := halves(x)
		return []*pb.Chunk{{Index: 0, Count: 2, Data: a}, {Index: 2, Count: 2, Data: b}}
	})
	chunkCase("empty-chunk", "V30", "a chunk without data", func(x *exchange) []*pb.Chunk {
		return []*pb.Chunk{{Index: 0, Count: 2, Data: nil}}
	})
	add(&testCase{name: "key/item-over-bound", section: "§12 V31", roles: iutBoth, ownKey: true,
		summary: "chunks of 8193 bytes in all",
		tc: is(tactic{out: replaceItem(pb.Notice_KEY, func(*exchange) []byte {
			return randomBytes(protocol.MaxRecordSize + 1)
		})}), want: protocolError()})
	add(&testCase{name: "part/out-of-order-chunk", section: "§12 V29", roles: iutBoth,
		summary: "the sealed part's chunks with index 1 first",
		tc: is(tactic{out: onBatch(func(x *exchange, batch []protocol.Frame) {
			sp := sealedPart(batch)
			item, _ := proto.Marshal(sp)
			h := len(item) / 2
			x.send(replace(batch, pb.Notice_PART, []protocol.Frame{
				marshal(&pb.Notice{Type: pb.Notice_PART, Chunk: &pb.Chunk{Index: 1, Count: 2, Data: item[h:]}}),
				marshal(&pb.Notice{Type: pb.Notice_PART, Chunk: &pb.Chunk{Index: 0, Count: 2, Data: item[:h]}}),
			})...)
		}, pb.Notice_PART)}), want: protocolError()})
	add(&testCase{name: "part/item-over-bound", section: "§12 V31", roles: iutBoth,
		summary: "PART chunks of 4097 bytes in all",
		tc: is(tactic{out: replaceItem(pb.Notice_PART, func(*exchange) []byte {
			return randomBytes(protocol.MaxSealedPartSize + 1)
		})}), want: protocolError()})

	// -----------------------------------------------------------------
	// The record (section 8; V33-V40). V32 cannot be reached through KEY
	// (V31 comes first) and V41 is the IUT's own trust policy.
	recordCase := func(name, section, summary string, envelope func(x *exchange) ([]byte, error), opts ...func(*testCase)) {
		c := &testCase{name: "key/" + name, section: section, roles: iutBoth, ownKey: true, summary: summary,
			tc: is(tactic{out: replaceItem(pb.Notice_KEY, func(x *exchange) []byte {
				b, err := envelope(x)
				if err != nil {
					x.machineErr = fmt.Errorf("suite: %w", err)
					return randomBytes(8)
				}
				return b
			})}), want: keyRejected()}
		for _, o := range opts {
			o(c)
		}
		add(c)
	}
	recordCase("garbage-record", "§8 V33", "random bytes as the record", func(*exchange) ([]byte, error) {
		return append([]byte{0xff, 0xff, 0xff}, randomBytes(200)...), nil
	})
	recordCase("record-with-bad-signature", "§8 V33", "the record's signature altered", func(x *exchange) ([]byte, error) {
		e := append([]byte(nil), x.own.Envelope...)
		e[len(e)-1] ^= 1 // the signature is the envelope's last field
		return e, nil
	})
	recordCase("record-signed-for-another-domain", "§8 V33", "signed with domain \"libp2p-peer-record\"", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, "libp2p-peer-record", protocol.RecordCodec, x.id.payload(nil))
	})
	recordCase("wrong-payload-type", "§8 V34", "payload type /p2pkex/exchange-key/2", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, []byte("/p2pkex/exchange-key/2"), x.id.payload(nil))
	})
	recordCase("record-duplicate-suite", "§8 V35", "suite 2 listed twice", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			for _, k := range r.Keys {
				if k.Suite == uint32(protocol.SuiteX25519) {
					r.Keys = append(r.Keys, &pb.ExchangeKeyRecord_SuiteKey{Suite: k.Suite, PublicKey: k.PublicKey})
					return
				}
			}
		}))
	})
	recordCase("record-invalid-public-key", "§8 V35", "a 31-byte key for suite 2", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			for _, k := range r.Keys {
				if k.Suite == uint32(protocol.SuiteX25519) {
					k.PublicKey = k.PublicKey[:31]
				}
			}
		}))
	})
	recordCase("record-without-known-suite", "§8 V35", "only suite 99", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.Keys = []*pb.ExchangeKeyRecord_SuiteKey{{Suite: 99, PublicKey: randomBytes(32)}}
		}))
	})
	recordCase("signed-by-a-third-identity", "§8 V36", "a record naming the suite's peer, signed by another key", func(x *exchange) ([]byte, error) {
		third, err := newKey()
		if err != nil {
			return nil, err
		}
		return x.id.rawRecord(third, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(nil))
	})
	recordCase("record-names-another-peer", "§8 V36", "signed by the suite, naming a third peer", func(x *exchange) ([]byte, error) {
		third, err := newKey()
		if err != nil {
			return nil, err
		}
		other, err := peer.IDFromPrivateKey(third)
		if err != nil {
			return nil, err
		}
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.PeerId = []byte(other)
		}))
	})
	recordCase("record-created-in-the-future", "§8 V37", "created one hour from now", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.Created = time.Now().Add(time.Hour).Unix()
			r.Expires = r.Created + int64(protocol.DefaultRecordLifetime/time.Second)
		}))
	})
	recordCase("expired-record", "§8 V38", "expired a day ago", func(x *exchange) ([]byte, error) {
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			r.Expires = time.Now().Add(-24 * time.Hour).Unix()
			r.Created = r.Expires - int64(protocol.DefaultRecordLifetime/time.Second)
		}))
	})
	// Section 8 checks V39 (step 8) before V52 (step 9): a record without
	// the negotiated suite is KEY_REJECTED, not SUITE_DOWNGRADE, although
	// the initiator's downgrade check would also refuse it.
	recordCase("record-without-the-negotiated-suite", "§8 V39", "a record holding only the suite not negotiated (V39 before V52: KEY_REJECTED)", func(x *exchange) ([]byte, error) {
		neg := x.suite()
		return x.id.rawRecord(x.id.sk, protocol.RecordDomain, protocol.RecordCodec, x.id.payload(func(r *pb.ExchangeKeyRecord) {
			var keep []*pb.ExchangeKeyRecord_SuiteKey
			for _, k := range r.Keys {
				if k.Suite != uint32(neg) {
					keep = append(keep, k)
				}
			}
			r.Keys = keep
		}))
	})
	add(&testCase{name: "key/rollback-of-seq", section: "§8.1 V40", roles: iutBoth, prior: 1,
		summary: "after the IUT imported seq n+1, the record of seq n",
		setup: func(r runner, id *identity) error {
			if err := id.rotate(nil); err != nil {
				return err
			}
			return r.honest(id)
		},
		tc: is(tactic{config: func(x *exchange, c *protocol.Config) {
			c.Own = x.id.old[len(x.id.old)-1]
		}}),
		want: keyRejected()})
	// Section 8.1: the same sequence number created in the same second is
	// a rollback; created later it would be a store reset, which the trust
	// policy judges (key/store-reset): the record is created in the held
	// record's second, whatever the time now.
	add(&testCase{name: "key/equal-seq-different-record", section: "§8.1 V40", roles: iutBoth, prior: 1,
		summary: "another record with the sequence number and the creation second of the record the IUT holds",
		tc: is(tactic{config: func(x *exchange, c *protocol.Config) {
			k, err := protocol.NewExchangeKey(x.id.sk, x.id.key.Suites(), x.id.key.Seq, x.id.key.Created, protocol.DefaultRecordLifetime)
			if err != nil {
				x.machineErr = fmt.Errorf("suite: %w", err)
				return
			}
			c.Own = k
		}}),
		want: keyRejected()})
	recordOrderCases(add, recordCase)

	// -----------------------------------------------------------------
	// KEY_RECEIVED (V42): the IUT's record travels (the suite names none).
	receiptCase := func(name, summary string, fp func(x *exchange) []byte) {
		add(&testCase{name: "key-received/" + name, section: "§5.2 V42", roles: iutBoth, summary: summary,
			tc: is(tactic{config: forgetPeer, out: editType(pb.Notice_KEY_RECEIVED, func(x *exchange, n *pb.Notice) {
				n.KeyReceived.Fingerprint = fp(x)
			})}), want: protocolError()})
	}
	receiptCase("wrong-fingerprint", "a random SHA2-256 multihash", func(*exchange) []byte {
		return append([]byte{0x12, 0x20}, randomBytes(32)...)
	})
	receiptCase("malformed-fingerprint", "a 33-byte fingerprint", func(*exchange) []byte {
		return append([]byte{0x12, 0x20}, randomBytes(31)...)
	})
	receiptCase("names-the-suites-own-record", "the fingerprint of the suite's record", func(x *exchange) []byte {
		return x.id.key.Fingerprint[:]
	})

	// -----------------------------------------------------------------
	// PART (V43-V46).
	add(&testCase{name: "part/garbage-item", section: "§4.7 V43", roles: iutBoth,
		summary: "an item that is no SealedPart",
		tc: is(tactic{out: replaceItem(pb.Notice_PART, func(*exchange) []byte {
			b := make([]byte, 64)
			for i := range b {
				b[i] = 0xff
			}
			return b
		})}), want: protocolError()})
	partCase := func(name, section, summary string, st pb.Status, fn func(x *exchange, sp *pb.SealedPart) error) {
		add(&testCase{name: "part/" + name, section: section, roles: iutBoth, summary: summary,
			tc: is(tactic{out: editPart(fn)}), want: aborts(st)})
	}
	partCase("bad-signature", "§11.4 V44", "a signature bit flipped", pb.Status_BAD_SIGNATURE, func(_ *exchange, sp *pb.SealedPart) error {
		sp.Signature[0] ^= 1
		return nil
	})
	partCase("signed-by-a-third-identity", "§11.4 V44", "signed by a key the channel did not authenticate", pb.Status_BAD_SIGNATURE, func(x *exchange, sp *pb.SealedPart) error {
		third, err := newKey()
		if err != nil {
			return err
		}
		sp.Signature, err = x.sign(sp.Ciphertext, x.role, third)
		return err
	})
	partCase("signed-with-the-wrong-role", "§11.4 V44", "signed with the IUT's role label", pb.Status_BAD_SIGNATURE, func(x *exchange, sp *pb.SealedPart) error {
		var err error
		sp.Signature, err = x.sign(sp.Ciphertext, otherRole(x.role), x.id.sk)
		return err
	})
	partCase("undecryptable", "§11.3 V45", "the ciphertext altered, then signed", pb.Status_DECRYPT_FAILED, func(x *exchange, sp *pb.SealedPart) error {
		sp.Ciphertext[len(sp.Ciphertext)-1] ^= 1
		var err error
		sp.Signature, err = x.sign(sp.Ciphertext, x.role, x.id.sk)
		return err
	})
	partCase("sealed-with-the-wrong-role", "§11.3 V45", "HPKE info with the IUT's role label", pb.Status_DECRYPT_FAILED, func(x *exchange, sp *pb.SealedPart) error {
		ct, err := x.seal(randomBytes(protocol.PartSize), otherRole(x.role))
		if err != nil {
			return err
		}
		sp.Ciphertext = ct
		sp.Signature, err = x.sign(ct, x.role, x.id.sk)
		return err
	})
	partCase("short-plaintext", "§11.3 V45", "a sealed 31-byte part", pb.Status_DECRYPT_FAILED, func(x *exchange, sp *pb.SealedPart) error {
		ct, err := x.seal(randomBytes(protocol.PartSize-1), x.role)
		if err != nil {
			return err
		}
		sp.Ciphertext = ct
		sp.Signature, err = x.sign(ct, x.role, x.id.sk)
		return err
	})
	partCase("commitment-mismatch", "§11.1 V46", "a part other than the committed one, sealed and signed", pb.Status_BAD_COMMITMENT, func(x *exchange, sp *pb.SealedPart) error {
		ct, err := x.seal(randomBytes(protocol.PartSize), x.role)
		if err != nil {
			return err
		}
		sp.Ciphertext = ct
		sp.Signature, err = x.sign(ct, x.role, x.id.sk)
		return err
	})
	add(&testCase{name: "part/reflected", section: "§11.4 V44", roles: iutBoth,
		summary: "the IUT's own PART sent back", tc: is(echo(pb.Notice_PART)), want: aborts(pb.Status_BAD_SIGNATURE)})

	// -----------------------------------------------------------------
	// PART_RECEIVED (V47).
	add(&testCase{name: "part-received/bad-mac", section: "§11.5 V47", roles: iutBoth,
		summary: "a MAC bit flipped",
		tc: is(tactic{out: editType(pb.Notice_PART_RECEIVED, func(_ *exchange, n *pb.Notice) {
			n.PartReceived.Mac[0] ^= 1
		})}), want: aborts(pb.Status_BAD_CONFIRMATION)})
	add(&testCase{name: "part-received/short-mac", section: "§11.5 V47", roles: iutBoth,
		summary: "a 31-byte MAC",
		tc: is(tactic{out: editType(pb.Notice_PART_RECEIVED, func(_ *exchange, n *pb.Notice) {
			n.PartReceived.Mac = n.PartReceived.Mac[:31]
		})}), want: aborts(pb.Status_BAD_CONFIRMATION)})
	add(&testCase{name: "part-received/reflected", section: "§11.5 V47", roles: iutBoth,
		summary: "the IUT's own PART_RECEIVED sent back", tc: is(echo(pb.Notice_PART_RECEIVED)), want: aborts(pb.Status_BAD_CONFIRMATION)})

	// -----------------------------------------------------------------
	// ABORT and time (V48, V49).
	abortCase := func(name, summary string, st pb.Status) {
		add(&testCase{name: "abort/" + name, section: "§16 V48", roles: iutBoth, ownKey: true, summary: summary,
			tc: is(tactic{out: replaceWith(pb.Notice_KEY, func(*exchange) []protocol.Frame {
				return []protocol.Frame{marshal(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: st}})}
			})}), want: resetsWithoutAnswer()})
	}
	abortCase("in-phase-2", "ABORT KEY_REJECTED in place of the suite's record", pb.Status_KEY_REJECTED)
	abortCase("unknown-status", "ABORT with status 200", 200)
	add(&testCase{name: "time/silent-in-phase-1", section: "§2 V49", roles: iutBoth, slow: true,
		summary: "the suite sends nothing after the first notice: TIMEOUT after the IUT's phase timeout",
		tc: is(tactic{wait: 3 * protocol.DefaultPhaseTimeout, out: func(x *exchange, batch []protocol.Frame) {
			if has(batch, pb.Notice_START, pb.Notice_CONTINUE) {
				x.send(batch...)
				x.silent = true
			}
		}}), want: aborts(pb.Status_TIMEOUT)})
	return cs
}

// partsOf returns the PART notices of batch.
func partsOf(batch []protocol.Frame) []protocol.Frame {
	var out []protocol.Frame
	for _, f := range batch {
		if f.Type == pb.Notice_PART {
			out = append(out, f)
		}
	}
	return out
}

// echo sends the IUT's own notices of type typ back to it, and keeps the
// suite's notices of that type to itself.
func echo(typ pb.Notice_Type) tactic {
	return tactic{
		out: func(x *exchange, batch []protocol.Frame) {
			x.send(replace(batch, typ, nil)...)
		},
		in: func(x *exchange, frame []byte) {
			if decode(frame).Type == typ {
				x.send(protocol.Frame{Type: typ, Bytes: frame})
			}
		},
	}
}

// payload is the ExchangeKeyRecord of the identity's current record,
// changed by edit.
func (id *identity) payload(edit func(r *pb.ExchangeKeyRecord)) []byte {
	r := &pb.ExchangeKeyRecord{
		PeerId:  []byte(id.id),
		Seq:     id.key.Seq,
		Created: id.key.Created.Unix(),
		Expires: id.key.Expires.Unix(),
	}
	for _, s := range id.key.Suites() {
		r.Keys = append(r.Keys, &pb.ExchangeKeyRecord_SuiteKey{Suite: uint32(s), PublicKey: id.key.Keys[s].Bytes()})
	}
	if edit != nil {
		edit(r)
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	return b
}

// rawRecord signs payload into an envelope with domain and payload type.
func (id *identity) rawRecord(signer crypto.PrivKey, domain string, codec, payload []byte) ([]byte, error) {
	env, err := record.Seal(&rawRecord{domain: domain, codec: codec, payload: payload}, signer)
	if err != nil {
		return nil, err
	}
	return env.Marshal()
}

// rawRecord is a record.Record with arbitrary domain, type and payload.
type rawRecord struct {
	domain  string
	codec   []byte
	payload []byte
}

func (r *rawRecord) Domain() string                 { return r.domain }
func (r *rawRecord) Codec() []byte                  { return r.codec }
func (r *rawRecord) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *rawRecord) UnmarshalRecord(b []byte) error { r.payload = b; return nil }
