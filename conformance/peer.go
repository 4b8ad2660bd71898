package conformance

import (
	"context"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/internal/wiretest"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// The suite's side of an exchange: an honest protocol.Machine whose notices
// a tactic may change, drop or replace before they are written, so that
// exactly one rule is broken. Everything the tactics compute (transcript,
// sealing, signatures) follows docs/PROTOCOL.md directly, with the
// standard library and libp2p's keys: no internals of package protocol.

// identity is one identity of the suite, with the long-term state an honest
// peer of that identity keeps towards the implementation under test (IUT).
type identity struct {
	h   host.Host
	sk  crypto.PrivKey
	id  peer.ID
	key *protocol.ExchangeKey // current record
	// old holds the records this identity rotated away from, oldest first.
	old []*protocol.ExchangeKey
	// known is the IUT's record this identity holds, or nil.
	known *protocol.PeerRecord
	// epoch is the epoch this identity proposes next.
	epoch uint64
	// iut is what the IUT must propose and name in its next exchange with
	// this identity, if nothing was installed since: its epoch proposal
	// and the fingerprint of this identity's record it holds.
	iut iutState
}

type iutState struct {
	known bool // the values below are known
	epoch uint64
	fp    []byte
	// by is the case whose exchange set the values; failed says that
	// exchange failed (and so must have installed nothing).
	by     *Result
	failed bool
}

func newIdentity(h host.Host, sk crypto.PrivKey, suites []protocol.Suite) (*identity, error) {
	key, err := protocol.NewExchangeKey(sk, suites, 1, time.Now(), protocol.DefaultRecordLifetime)
	if err != nil {
		return nil, err
	}
	return &identity{h: h, sk: sk, id: h.ID(), key: key, epoch: 1}, nil
}

// rotate replaces the current record with a new one of higher sequence
// number, for suites (the current record's when nil).
func (id *identity) rotate(suites []protocol.Suite) error {
	if suites == nil {
		suites = id.key.Suites()
	}
	k, err := protocol.NewExchangeKey(id.sk, suites, id.key.Seq+1, time.Now(), protocol.DefaultRecordLifetime)
	if err != nil {
		return err
	}
	id.old = append(id.old, id.key)
	id.key = k
	return nil
}

// replaceKey makes k the identity's current record (a record the suite
// builds itself, with a chosen sequence number, creation time or lifetime).
func (id *identity) replaceKey(k *protocol.ExchangeKey) {
	id.old = append(id.old, id.key)
	id.key = k
}

// tactic is how the suite's side deviates in one exchange. The zero tactic
// is an honest peer.
type tactic struct {
	// config changes the machine's configuration.
	config func(x *exchange, c *protocol.Config)
	// out writes, instead of a batch the machine produced (START, or its
	// answer to one notice), what the suite sends.
	out func(x *exchange, batch []protocol.Frame)
	// in sees every frame read from the IUT before the machine does.
	in func(x *exchange, frame []byte)
	// after runs once the machine is done, before the outcome is read
	// (abort after completion).
	after func(x *exchange)
	// wait, when longer, replaces the run's bound on each read (for the
	// cases that wait for the IUT's phase timeout).
	wait time.Duration
}

// exchange is one exchange of the suite with the IUT on a stream.
type exchange struct {
	id   *identity
	s    network.Stream
	fr   *protocol.FrameReader
	m    *protocol.Machine
	role protocol.Role // the suite's role
	tc   tactic
	// own is the suite's record in this exchange (the tactic may choose
	// another than the identity's current one).
	own *protocol.ExchangeKey
	// wait bounds each read.
	wait time.Duration

	// produced are the frames the machine produced (before the tactic),
	// received the frames read from the IUT, both in order.
	produced []protocol.Frame
	received [][]byte
	// peerOpening is the IUT's START or CONTINUE as received.
	peerOpening *pb.Notice
	// peerEnvelope is the record the IUT sent in KEY, if it did.
	peerEnvelope []byte
	keyItem      []byte
	// aborts are the statuses of the ABORT notices the IUT sent;
	// afterAbort counts the notices it sent after its first ABORT.
	aborts     []pb.Status
	afterAbort int
	// machineErr is what ended the machine, if it failed.
	machineErr error
	// endErr is how the stream ended: io.EOF, a reset, a timeout.
	endErr error
	silent bool
	closed bool // the suite half-closed the stream
	// skip, when set by a tactic, ends the exchange: the case cannot be
	// built against this IUT (the reason).
	skip string
	// violations are rules the IUT broke as a sender, seen on the way.
	violations []string
}

// errNoAnswer is the end of an exchange in which the IUT stayed silent.
var errNoAnswer = errors.New("no answer")

func newExchange(id *identity, s network.Stream, fr *protocol.FrameReader, role protocol.Role, tc tactic, wait time.Duration) (*exchange, error) {
	x := &exchange{id: id, s: s, fr: fr, role: role, tc: tc, wait: max(wait, tc.wait)}
	cfg := protocol.Config{
		Role:      role,
		Identity:  id.sk,
		Remote:    s.Conn().RemotePeer(),
		RemoteKey: s.Conn().RemotePublicKey(),
		Own:       id.key,
		Known:     id.known,
		Epoch:     id.epoch,
	}
	if tc.config != nil {
		tc.config(x, &cfg)
	}
	m, err := protocol.NewMachine(cfg)
	if err != nil {
		return nil, fmt.Errorf("suite machine: %w", err)
	}
	x.m, x.own = m, cfg.Own
	return x, nil
}

// run drives the exchange: it starts (initiator) or consumes first (the
// IUT's START, responder), and then reads until the machine is done and
// the tactic has nothing more to do, or the IUT ends the stream. It
// returns when the suite's machine is done (the exchange succeeded on the
// suite's side) or the stream ended.
func (x *exchange) run(ctx context.Context, first []byte) {
	stop := context.AfterFunc(ctx, func() { _ = x.s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var out []protocol.Frame
	var err error
	if x.role == protocol.Initiator {
		if out, err = x.m.Start(); err != nil {
			x.machineErr = err
			return
		}
	} else {
		x.observe(first)
		if out, err = x.m.Consume(first); err != nil {
			x.machineErr = err
			out = nil
		}
	}
	live := x.machineErr == nil
	for {
		if len(out) > 0 {
			x.produced = append(x.produced, out...)
			if x.tc.out != nil {
				x.tc.out(x, out)
			} else {
				x.send(out...)
			}
			out = nil
			if x.skip != "" {
				return
			}
		}
		if live && x.m.Done() {
			if x.tc.after != nil {
				x.tc.after(x)
			}
			return
		}
		frame, err := x.read()
		if err != nil {
			x.endErr = err
			return
		}
		if x.tc.in != nil {
			x.tc.in(x, frame)
		}
		if live {
			if out, err = x.m.Consume(frame); err != nil {
				x.machineErr = err
				live, out = false, nil
			}
		}
	}
}

// drain reads until the IUT ends the stream (after the suite's side is
// done and the IUT is not), for the outcome of a broken exchange.
func (x *exchange) drain() {
	for x.endErr == nil {
		if _, err := x.read(); err != nil {
			x.endErr = err
		}
	}
}

// read reads one frame of the IUT and notes what the checks need.
func (x *exchange) read() ([]byte, error) {
	f, _, err := wiretest.ReadFrame(x.s, x.fr, x.wait)
	if err != nil {
		if isTimeout(err) {
			err = fmt.Errorf("%w within %v", errNoAnswer, x.wait)
		}
		return nil, err
	}
	x.observe(f)
	return f, nil
}

func (x *exchange) observe(f []byte) {
	x.received = append(x.received, f)
	var n pb.Notice
	if proto.Unmarshal(f, &n) != nil {
		return
	}
	if len(x.aborts) > 0 {
		x.afterAbort++
	}
	switch n.Type {
	case pb.Notice_START, pb.Notice_CONTINUE, pb.Notice_NEXT:
		if len(f) > protocol.MinNoticeSize {
			// Section 3: within 128 bytes as sent, whatever the encoding.
			x.violations = append(x.violations, fmt.Sprintf("sent a %d-byte %v; phase-1 notices must fit 128 bytes (§3)", len(f), n.Type))
		}
	}
	switch n.Type {
	case pb.Notice_ABORT:
		if n.Abort != nil {
			x.aborts = append(x.aborts, n.Abort.Status)
		}
	case pb.Notice_START, pb.Notice_CONTINUE:
		if x.peerOpening == nil {
			x.peerOpening = &n
		}
	case pb.Notice_KEY:
		if n.Chunk != nil {
			x.keyItem = append(x.keyItem, n.Chunk.Data...)
			if n.Chunk.Index+1 == n.Chunk.Count {
				x.peerEnvelope, x.keyItem = x.keyItem, nil
			}
		}
	}
}

// write sends raw bytes, unless the tactic went silent. The IUT may already
// have reset the stream: errors are the outcome's, not the write's.
func (x *exchange) write(b []byte) {
	if !x.silent {
		_ = wiretest.Write(x.s, x.wait, b)
	}
}

func (x *exchange) send(frames ...protocol.Frame) { x.write(wiretest.AppendFrames(nil, frames...)) }

func (x *exchange) sendNotice(n *pb.Notice) { x.send(marshal(n)) }

// closeWrite ends the suite's side of the stream and goes silent.
func (x *exchange) closeWrite() {
	_ = x.s.CloseWrite()
	x.silent, x.closed = true, true
}

// status is what the IUT reported: the status of its ABORT, else the one
// its reset carried; ok is false when it reported none.
func (x *exchange) status() (pb.Status, bool) {
	if len(x.aborts) > 0 {
		return x.aborts[0], true
	}
	var se *network.StreamError
	if errors.As(x.endErr, &se) && se.Remote && se.ErrorCode > protocol.AbortCodeBase && se.ErrorCode <= protocol.AbortCodeBase+0xff {
		return pb.Status(se.ErrorCode - protocol.AbortCodeBase), true
	}
	return 0, false
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// peerProposal is the epoch the IUT proposed and the fingerprint of the
// suite's record it named, from its START or CONTINUE.
func (x *exchange) peerProposal() (epoch uint64, fp []byte, ok bool) {
	n := x.peerOpening
	switch {
	case n == nil:
		return 0, nil, false
	case n.Start != nil:
		return n.Start.Epoch, n.Start.KeyFingerprint, true
	case n.Continue != nil:
		return n.Continue.Epoch, n.Continue.KeyFingerprint, true
	}
	return 0, nil, false
}

// peerRecord is the IUT's record this exchange uses: the one it sent, or
// the one the suite holds.
func (x *exchange) peerRecord() (*protocol.PeerRecord, error) {
	if x.peerEnvelope != nil {
		return protocol.ParsePeerRecord(x.peerEnvelope, x.s.Conn().RemotePeer(), time.Now())
	}
	if x.id.known != nil {
		return x.id.known, nil
	}
	return nil, errors.New("no record of the implementation under test")
}

// noticeSize is the negotiated notice size.
func (x *exchange) noticeSize() int { return x.m.MaxFrame() }

// ---------------------------------------------------------------------------
// docs/PROTOCOL.md sections 10 and 11, for the tactics that re-seal or
// re-sign a part.

const (
	labelTranscript = "p2pkex/1.0.0 transcript"
	labelPart       = "p2pkex/1.0.0 part"
	labelPartSig    = "p2pkex/1.0.0 part signature"
)

func lp(dst, x []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(x)))
	return append(dst, x...)
}

func roleName(r protocol.Role) string { return r.String() }

func otherRole(r protocol.Role) protocol.Role { return wiretest.Other(r) }

func stageOf(t pb.Notice_Type) int {
	switch t {
	case pb.Notice_START, pb.Notice_CONTINUE, pb.Notice_NEXT:
		return 1
	case pb.Notice_KEY, pb.Notice_KEY_RECEIVED:
		return 2
	case pb.Notice_PART:
		return 3
	}
	return 0
}

// t2 is the phase-2 transcript checkpoint of the exchange as the IUT
// computes it, from the suite's notices as produced (no tactic changed a
// hashed one before PART) and the IUT's as received.
func (x *exchange) t2() [32]byte {
	var idI, idR []byte
	if x.role == protocol.Initiator {
		idI, idR = []byte(x.id.id), []byte(x.s.Conn().RemotePeer())
	} else {
		idI, idR = []byte(x.s.Conn().RemotePeer()), []byte(x.id.id)
	}
	var in []byte
	in = lp(in, []byte(labelTranscript))
	in = lp(in, []byte(protocol.ID))
	in = lp(in, idI)
	in = lp(in, idR)
	t := sha256.Sum256(in)
	for stage := 1; stage <= 2; stage++ {
		var own, peer []byte
		for _, f := range x.produced {
			if stageOf(f.Type) == stage {
				own = lp(own, f.Bytes)
			}
		}
		for _, f := range x.received {
			var n pb.Notice
			if proto.Unmarshal(f, &n) == nil && stageOf(n.Type) == stage {
				peer = lp(peer, f)
			}
		}
		fI, fR := own, peer
		if x.role == protocol.Responder {
			fI, fR = peer, own
		}
		hI, hR := sha256.Sum256(fI), sha256.Sum256(fR)
		in = lp(in[:0], []byte(labelTranscript))
		in = lp(in, []byte(fmt.Sprintf("phase %d", stage)))
		in = append(in, t[:]...)
		in = append(in, hI[:]...)
		in = append(in, hR[:]...)
		t = sha256.Sum256(in)
	}
	return t
}

func partInfo(r protocol.Role, t2 [32]byte) []byte {
	var b []byte
	b = lp(b, []byte(labelPart))
	b = lp(b, []byte(roleName(r)))
	return append(b, t2[:]...)
}

func partSigInput(r protocol.Role, t2 [32]byte, ct []byte) []byte {
	var b []byte
	b = lp(b, []byte(labelPartSig))
	b = lp(b, []byte(roleName(r)))
	b = append(b, t2[:]...)
	return lp(b, ct)
}

// seal seals part to the IUT's key of the negotiated suite with the HPKE
// info of role.
func (x *exchange) seal(part []byte, role protocol.Role) ([]byte, error) {
	rec, err := x.peerRecord()
	if err != nil {
		return nil, err
	}
	suite := x.suite()
	pk := rec.Keys[suite]
	if pk == nil {
		return nil, fmt.Errorf("record of the implementation under test has no %v key", suite)
	}
	return hpke.Seal(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), partInfo(role, x.t2()), part)
}

// suite is the negotiated suite, from the phase-1 notices.
func (x *exchange) suite() protocol.Suite {
	for _, f := range append(x.produced, framesOf(x.received)...) {
		if f.Type != pb.Notice_CONTINUE {
			continue
		}
		var n pb.Notice
		if proto.Unmarshal(f.Bytes, &n) == nil && n.Continue != nil {
			return protocol.Suite(n.Continue.Suite)
		}
	}
	return 0
}

func framesOf(raw [][]byte) []protocol.Frame {
	out := make([]protocol.Frame, 0, len(raw))
	for _, b := range raw {
		var n pb.Notice
		_ = proto.Unmarshal(b, &n)
		out = append(out, protocol.Frame{Type: n.Type, Bytes: b})
	}
	return out
}

// sign signs ct as role with signer over this exchange's T2.
func (x *exchange) sign(ct []byte, role protocol.Role, signer crypto.PrivKey) ([]byte, error) {
	return signer.Sign(partSigInput(role, x.t2(), ct))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return b
}

func marshal(n *pb.Notice) protocol.Frame {
	// The suite's notices have no strings: marshalling cannot fail.
	f, _ := wiretest.Marshal(n)
	return f
}

// decode decodes b; what does not decode is an empty notice.
func decode(b []byte) *pb.Notice {
	if n, err := wiretest.Decode(b); err == nil {
		return n
	}
	return &pb.Notice{}
}

// chunks cuts item into notices of type typ of at most size bytes, as
// section 12 says: size - 24 data bytes in every chunk but the last.
func chunks(typ pb.Notice_Type, item []byte, size int) []protocol.Frame {
	per := size - 24
	count := (len(item) + per - 1) / per
	var out []protocol.Frame
	for i := 0; i < count; i++ {
		out = append(out, marshal(&pb.Notice{Type: typ, Chunk: &pb.Chunk{
			Index: uint32(i), Count: uint32(count), Data: item[i*per : min((i+1)*per, len(item))],
		}}))
	}
	return out
}

// ---------------------------------------------------------------------------
// Batch helpers for tactics: those of internal/wiretest, which protocol's
// hostile-peer table shares, under the names the cases use.

func has(batch []protocol.Frame, types ...pb.Notice_Type) bool { return wiretest.Has(batch, types...) }

// replace returns batch with its notices of type typ replaced by with, at
// the place of the first of them.
func replace(batch []protocol.Frame, typ pb.Notice_Type, with []protocol.Frame) []protocol.Frame {
	return wiretest.Replace(batch, typ, with)
}

// onBatch runs fn on the batch that holds a notice of one of types; every
// other batch goes out unchanged.
func onBatch(fn func(x *exchange, batch []protocol.Frame), types ...pb.Notice_Type) func(*exchange, []protocol.Frame) {
	return wiretest.OnBatch((*exchange).send, fn, types...)
}

// editType changes the suite's notices of type typ.
func editType(typ pb.Notice_Type, fn func(x *exchange, n *pb.Notice)) func(*exchange, []protocol.Frame) {
	return onBatch(func(x *exchange, batch []protocol.Frame) {
		out, err := wiretest.Edit(batch, typ, func(n *pb.Notice) { fn(x, n) })
		if err != nil {
			x.suiteFailed(err)
			return
		}
		x.send(out...)
	}, typ)
}

// replaceWith replaces the suite's notices of type typ with frames(x).
func replaceWith(typ pb.Notice_Type, frames func(x *exchange) []protocol.Frame) func(*exchange, []protocol.Frame) {
	return onBatch(func(x *exchange, batch []protocol.Frame) {
		x.send(replace(batch, typ, frames(x))...)
	}, typ)
}

// replaceItem replaces the suite's KEY or PART notices with the chunks of
// item(x) at the negotiated notice size.
func replaceItem(typ pb.Notice_Type, item func(x *exchange) []byte) func(*exchange, []protocol.Frame) {
	return replaceWith(typ, func(x *exchange) []protocol.Frame { return chunks(typ, item(x), x.noticeSize()) })
}

// replaceChunks replaces the suite's KEY or PART notices with chunks(x).
func replaceChunks(typ pb.Notice_Type, cs func(x *exchange) []*pb.Chunk) func(*exchange, []protocol.Frame) {
	return replaceWith(typ, func(x *exchange) []protocol.Frame {
		out, _ := wiretest.ChunkNotices(typ, cs(x)) // no strings: cannot fail
		return out
	})
}

// sealedPart reassembles the suite's sealed part from the PART notices of
// batch (empty if they hold none).
func sealedPart(batch []protocol.Frame) *pb.SealedPart {
	if sp, err := wiretest.SealedPart(batch); err == nil {
		return sp
	}
	return &pb.SealedPart{}
}

// suiteFailed ends the suite's side of the exchange: a tactic could not
// build what it sends.
func (x *exchange) suiteFailed(err error) {
	x.machineErr = fmt.Errorf("suite: %w", err)
	x.silent = true
}

// editPart changes the suite's sealed part before it is chunked again.
func editPart(fn func(x *exchange, sp *pb.SealedPart) error) func(*exchange, []protocol.Frame) {
	return onBatch(func(x *exchange, batch []protocol.Frame) {
		sp, err := wiretest.SealedPart(batch)
		if err == nil {
			err = fn(x, sp)
		}
		if err != nil {
			x.suiteFailed(err)
			return
		}
		item, _ := proto.Marshal(sp)
		x.send(replace(batch, pb.Notice_PART, chunks(pb.Notice_PART, item, x.noticeSize()))...)
	}, pb.Notice_PART)
}

// rawFirst replaces the suite's first batch (START or CONTINUE) with raw
// bytes.
func rawFirst(raw []byte) func(*exchange, []protocol.Frame) {
	return onBatch(func(x *exchange, _ []protocol.Frame) { x.write(raw) }, pb.Notice_START, pb.Notice_CONTINUE)
}

// noticeFirst replaces the suite's first batch with one notice.
func noticeFirst(n *pb.Notice) func(*exchange, []protocol.Frame) {
	return onBatch(func(x *exchange, _ []protocol.Frame) { x.sendNotice(n) }, pb.Notice_START, pb.Notice_CONTINUE)
}

// newKey returns a fresh Ed25519 identity key.
func newKey() (crypto.PrivKey, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	return sk, err
}
