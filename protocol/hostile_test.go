package protocol_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2ppeerstore "github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/internal/wiretest"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/internal/hooks"
	"github.com/p2pkex/p2pkex/protocol/pb"
	"github.com/p2pkex/p2pkex/protocol/protocoltest"
)

// The misbehaving-peer table over real libp2p hosts on 127.0.0.1. Each row
// puts an honest node.Node in front of a "villain": a libp2p host that
// speaks /p2pkex/1.0.0 through an honest protocol.Machine of its own and
// misbehaves in one way (a tactic), as the initiator that dials the honest
// node, as the responder the honest node's Exchange dials, or both. For each
// row and direction the test checks that
//
//  1. the honest side fails with the row's typed error (Exchange's error,
//     or the Err of the node's EventFailed);
//  2. the honest side reset the stream: the villain's next read is a reset,
//     not a clean EOF, and an ABORT it may read first carries
//     protocol.StatusOf of that error (the reset usually overtakes the ABORT:
//     see TestHostileAbortStatusReachesThePeer);
//  3. nothing was installed: no new session key and no peer record (or the
//     ones of the earlier honest exchanges, unchanged);
//  4. the same honest node then completes an exchange, in the same role,
//     with a fresh honest node and with the villain's identity acting
//     honestly, with equal keys on both sides and the next epoch.

const (
	// hostileTimeout bounds one exchange of the table, from dial to outcome.
	hostileTimeout = 20 * time.Second
	// hostileSilentPhase is the phase timeout of honest nodes facing a peer
	// that goes silent.
	hostileSilentPhase = 300 * time.Millisecond
)

// hostileDir says which role the honest node plays against the villain.
type hostileDir int

const (
	// honestInitiator: the honest node's Exchange dials the villain.
	honestInitiator hostileDir = iota + 1
	// honestResponder: the villain dials the honest node.
	honestResponder
)

var hostileBoth = []hostileDir{honestInitiator, honestResponder}

func (d hostileDir) String() string {
	if d == honestInitiator {
		return "honest-initiator"
	}
	return "honest-responder"
}

// hostileNode starts an honest node on loopback TCP only.
func hostileNode(t *testing.T, opts ...node.Option) *node.Node {
	t.Helper()
	// The villain reads until the honest side ends the stream: an honest
	// initiator keeps none for its next exchange (node/streams.go).
	opts = append([]node.Option{node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithStreamIdleTimeout(0)}, opts...)
	n, err := node.New(context.Background(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}

// hostileIntroduce tells a where b listens.
func hostileIntroduce(a, b host.Host) {
	a.Peerstore().AddAddrs(b.ID(), b.Addrs(), libp2ppeerstore.PermanentAddrTTL)
}

// villain is the malicious host with the long-term state an honest peer of
// its identity would keep.
type villain struct {
	h       host.Host
	sk      crypto.PrivKey
	id      peer.ID
	key     *protocol.ExchangeKey
	known   *protocol.PeerRecord // the honest node's record as the villain holds it
	epoch   uint64               // the epoch the villain proposes next
	streams chan network.Stream  // inbound exchanges
	// sessions holds, for each completed honest exchange, the notices the
	// villain sent, in order: the material of the replay rows.
	sessions [][]protocol.Frame
}

func newVillain(t *testing.T, seq uint64) *villain {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	key, err := protocol.NewExchangeKey(sk, protocol.DefaultSuites(), seq, time.Now(), protocol.DefaultRecordLifetime)
	require.NoError(t, err)
	v := &villain{h: h, sk: sk, id: h.ID(), key: key, epoch: 1, streams: make(chan network.Stream, 4)}
	h.SetStreamHandler(protocol.ID, func(s network.Stream) {
		select {
		case v.streams <- s:
		default:
			_ = s.Reset()
		}
	})
	return v
}

// villainTactic is how the villain misbehaves. The zero villainTactic is an
// honest peer.
type villainTactic struct {
	// config changes the villain machine's configuration.
	config func(c *protocol.Config)
	// machine changes the villain's machine before it runs.
	machine func(t *testing.T, m *protocol.Machine)
	// out writes, instead of the batch the villain's machine produced
	// (START, or its answer to one notice), what the villain sends.
	out func(ss *villainSession, batch []protocol.Frame)
	// in sees each frame read from the honest side before the villain's
	// machine does; it may send frames of its own.
	in func(ss *villainSession, frame []byte)
}

// villainSession is one exchange as the villain runs it.
type villainSession struct {
	t       *testing.T
	v       *villain
	s       network.Stream
	m       *protocol.Machine
	fr      *protocol.FrameReader
	hostile bool

	sent    []protocol.Frame // what the villain's machine produced, before the tactic
	aborts  []pb.Status      // ABORT notices read from the honest side
	silent  bool             // the tactic sends nothing more
	readErr error            // the read that ended a hostile session
	note    []byte           // scratch space of a tactic
}

// runSession drives the villain's machine over s. An honest session
// (hostile false) must complete. A hostile one reads until the honest side
// ends the stream, whatever the villain's machine thinks: it returns with
// readErr set.
func (v *villain) runSession(t *testing.T, s network.Stream, role protocol.Role, tc villainTactic, hostile bool) *villainSession {
	t.Helper()
	cfg := protocol.Config{
		Role:     role,
		Identity: v.sk,
		Remote:   s.Conn().RemotePeer(),
		Own:      v.key,
		Known:    v.known,
		Epoch:    v.epoch,
	}
	if tc.config != nil {
		tc.config(&cfg)
	}
	m, err := protocol.NewMachine(cfg)
	require.NoError(t, err)
	if tc.machine != nil {
		tc.machine(t, m)
	}
	ss := &villainSession{t: t, v: v, s: s, m: m, fr: protocol.NewFrameReader(s), hostile: hostile}
	var out []protocol.Frame
	if role == protocol.Initiator {
		out, err = m.Start()
		require.NoError(t, err)
	}
	live := true // the villain's machine still takes notices
	for {
		if len(out) > 0 {
			ss.sent = append(ss.sent, out...)
			if tc.out != nil {
				tc.out(ss, out)
			} else {
				ss.send(out...)
			}
			out = nil
		}
		if live && m.Done() {
			if !hostile {
				require.NoError(t, s.Close())
				return ss
			}
			live = false
			if role == protocol.Initiator && !ss.silent {
				// As an initiator that keeps no stream: an honest
				// responder that finished waits for the next START
				// (docs/PROTOCOL.md section 2) and, reading the end,
				// closes its side.
				require.NoError(t, s.CloseWrite())
			}
		}
		frame, err := ss.read()
		if err != nil {
			require.True(t, hostile, "honest session: read: %v", err)
			ss.readErr = err
			_ = s.Reset()
			return ss
		}
		if tc.in != nil {
			tc.in(ss, frame)
		}
		if live {
			if out, err = m.Consume(frame); err != nil {
				require.True(t, hostile, "honest session: villain machine: %v", err)
				live, out = false, nil
			}
		}
	}
}

// read reads one frame of the honest side, noting ABORTs.
func (ss *villainSession) read() ([]byte, error) {
	f, abort, err := wiretest.ReadFrame(ss.s, ss.fr, hostileTimeout)
	if abort != nil {
		ss.aborts = append(ss.aborts, *abort)
	}
	return f, err
}

// write sends raw bytes, unless the tactic went silent. In a hostile
// session the honest side may already have reset the stream: write errors
// are then expected and ignored.
func (ss *villainSession) write(b []byte) {
	if ss.silent {
		return
	}
	if err := wiretest.Write(ss.s, hostileTimeout, b); !ss.hostile {
		require.NoError(ss.t, err)
	}
}

// send writes frames.
func (ss *villainSession) send(frames ...protocol.Frame) {
	ss.write(wiretest.AppendFrames(nil, frames...))
}

// closeWrite ends the villain's side of the stream and goes silent.
func (ss *villainSession) closeWrite() {
	require.NoError(ss.t, ss.s.CloseWrite())
	ss.silent = true
}

// villainRole and honestRole of the session.
func (ss *villainSession) villainRole() protocol.Role { return ss.m.Role() }

func (ss *villainSession) honestRole() protocol.Role { return wiretest.Other(ss.m.Role()) }

func hostileMarshal(t *testing.T, n *pb.Notice) protocol.Frame {
	t.Helper()
	f, err := wiretest.Marshal(n)
	require.NoError(t, err)
	return f
}

func hostileDecode(t *testing.T, b []byte) *pb.Notice {
	t.Helper()
	n, err := wiretest.Decode(b)
	require.NoError(t, err)
	return n
}

// edit returns f changed by fn.
func (ss *villainSession) edit(f protocol.Frame, fn func(n *pb.Notice)) protocol.Frame {
	n := hostileDecode(ss.t, f.Bytes)
	fn(n)
	return hostileMarshal(ss.t, n)
}

// chunks cuts item into notices of type typ that fit noticeSize (the
// negotiated size when 0).
func (ss *villainSession) chunks(typ pb.Notice_Type, item []byte, noticeSize int) []protocol.Frame {
	if noticeSize == 0 {
		noticeSize = ss.m.MaxFrame()
	}
	out, err := wiretest.ChunkNotices(typ, protocol.SplitForTest(item, noticeSize))
	require.NoError(ss.t, err)
	return out
}

// hostileOnBatch runs fn on the batch that holds a notice of one of types (each
// type travels in one batch only); every other batch goes out unchanged.
func hostileOnBatch(fn func(ss *villainSession, batch []protocol.Frame), types ...pb.Notice_Type) func(*villainSession, []protocol.Frame) {
	return wiretest.OnBatch((*villainSession).send, fn, types...)
}

// hostileOpening is the villain's first notice: START or CONTINUE.
var hostileOpening = []pb.Notice_Type{pb.Notice_START, pb.Notice_CONTINUE}

// hostileOpeningRaw replaces the villain's first batch with raw bytes.
func hostileOpeningRaw(raw []byte) func(*villainSession, []protocol.Frame) {
	return hostileOnBatch(func(ss *villainSession, _ []protocol.Frame) { ss.write(raw) }, hostileOpening...)
}

// hostileOpeningNotice replaces the villain's first batch with one notice.
func hostileOpeningNotice(n *pb.Notice) func(*villainSession, []protocol.Frame) {
	return hostileOnBatch(func(ss *villainSession, _ []protocol.Frame) { ss.send(hostileMarshal(ss.t, n)) }, hostileOpening...)
}

// hostileEditType edits the villain's notice of type typ.
func hostileEditType(typ pb.Notice_Type, fn func(ss *villainSession, n *pb.Notice)) func(*villainSession, []protocol.Frame) {
	return hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
		out, err := wiretest.Edit(batch, typ, func(n *pb.Notice) { fn(ss, n) })
		require.NoError(ss.t, err)
		ss.send(out...)
	}, typ)
}

// hostileReplaceItem replaces the villain's KEY or PART notices with the chunks of
// item(ss).
func hostileReplaceItem(typ pb.Notice_Type, item func(ss *villainSession) []byte) func(*villainSession, []protocol.Frame) {
	return hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
		ss.send(wiretest.Replace(batch, typ, ss.chunks(typ, item(ss), 0))...)
	}, typ)
}

// hostileReplaceChunks replaces the villain's KEY or PART notices with chunks(ss).
func hostileReplaceChunks(typ pb.Notice_Type, chunks func(ss *villainSession) []*pb.Chunk) func(*villainSession, []protocol.Frame) {
	return hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
		with, err := wiretest.ChunkNotices(typ, chunks(ss))
		require.NoError(ss.t, err)
		ss.send(wiretest.Replace(batch, typ, with)...)
	}, typ)
}

// sealedPart reassembles the villain's sealed part from the PART notices of
// batch.
func (ss *villainSession) sealedPart(batch []protocol.Frame) *pb.SealedPart {
	sp, err := wiretest.SealedPart(batch)
	require.NoError(ss.t, err)
	return sp
}

// hostileEditPart changes the villain's sealed part before it is chunked again.
func hostileEditPart(fn func(ss *villainSession, sp *pb.SealedPart)) func(*villainSession, []protocol.Frame) {
	return hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
		sp := ss.sealedPart(batch)
		fn(ss, sp)
		item, err := proto.Marshal(sp)
		require.NoError(ss.t, err)
		ss.send(wiretest.Replace(batch, pb.Notice_PART, ss.chunks(pb.Notice_PART, item, 0))...)
	}, pb.Notice_PART)
}

// signPart signs the villain's (changed) ciphertext as role with signer,
// over the villain's phase-2 transcript.
func (ss *villainSession) signPart(sp *pb.SealedPart, role protocol.Role, signer crypto.PrivKey) {
	sig, err := signer.Sign(protocol.PartSigInputForTest(role, ss.m.TranscriptT2ForTest(), sp.Ciphertext))
	require.NoError(ss.t, err)
	sp.Signature = sig
}

// hostileEcho sends the honest side's own notices of type typ back to it, and
// keeps the villain's own notices of that type to itself.
func hostileEcho(typ pb.Notice_Type) villainTactic {
	return villainTactic{
		out: func(ss *villainSession, batch []protocol.Frame) {
			ss.send(wiretest.Replace(batch, typ, nil)...)
		},
		in: func(ss *villainSession, frame []byte) {
			if hostileDecode(ss.t, frame).Type == typ {
				ss.send(protocol.Frame{Type: typ, Bytes: frame})
			}
		},
	}
}

// hostileReplay replaces the villain's notices of type typ with the ones it sent
// in its nth recorded session.
func hostileReplay(typ pb.Notice_Type, nth int) func(*villainSession, []protocol.Frame) {
	return hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
		require.Greater(ss.t, len(ss.v.sessions), nth, "no recorded session %d", nth)
		var old []protocol.Frame
		for _, f := range ss.v.sessions[nth] {
			if f.Type == typ {
				old = append(old, f)
			}
		}
		require.NotEmpty(ss.t, old, "recorded session %d has no %v", nth, typ)
		ss.send(wiretest.Replace(batch, typ, old)...)
	}, typ)
}

// hostileSilentFrom sends the villain's notices up to the first of type typ and
// then nothing more.
func hostileSilentFrom(typ pb.Notice_Type) func(*villainSession, []protocol.Frame) {
	return func(ss *villainSession, batch []protocol.Frame) {
		ss.send(wiretest.Before(batch, typ)...)
		if wiretest.Has(batch, typ) {
			ss.silent = true
		}
	}
}

func hostileRandom(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func hostileThirdIdentity(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	return sk, id
}

// run runs one exchange between the honest node and the villain in
// direction dir and returns the villain's session and the honest side's
// outcome: Exchange's error (honest initiator) or the error of the node's
// EventFailed, nil for EventDone (honest responder).
func (v *villain) run(t *testing.T, honest *node.Node, dir hostileDir, tc villainTactic, hostile bool) (*villainSession, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileTimeout)
	defer cancel()
	if dir == honestInitiator {
		errc := make(chan error, 1)
		go func() {
			_, err := honest.Exchange(ctx, v.id)
			errc <- err
		}()
		var s network.Stream
		select {
		case s = <-v.streams:
		case err := <-errc:
			require.FailNow(t, "honest Exchange returned before the villain got a stream", "%v", err)
		case <-ctx.Done():
			require.FailNow(t, "the honest node never opened a stream")
		}
		ss := v.runSession(t, s, protocol.Responder, tc, hostile)
		for {
			select {
			case err := <-errc:
				return ss, err
			case s := <-v.streams:
				// The honest node tries again (after a CONFLICT whose
				// START never came, docs/PROTOCOL.md section 17): the
				// villain answers the same way every time.
				v.runSession(t, s, protocol.Responder, tc, hostile)
			case <-ctx.Done():
				require.FailNow(t, "honest Exchange did not return")
				return nil, nil
			}
		}
	}
	events, stop := honest.Subscribe(0)
	defer stop()
	s, err := v.h.NewStream(ctx, honest.ID(), protocol.ID)
	require.NoError(t, err)
	// Negotiate the protocol now, even if the villain never speaks.
	_, err = s.Write(nil)
	require.NoError(t, err)
	ss := v.runSession(t, s, protocol.Initiator, tc, hostile)
	for {
		select {
		case e, ok := <-events:
			require.True(t, ok, "the honest node closed")
			if e.Peer != v.id {
				continue
			}
			switch e.Kind {
			case node.EventFailed:
				require.Error(t, e.Err)
				return ss, e.Err
			case node.EventDone:
				return ss, nil
			}
		case <-ctx.Done():
			require.FailNow(t, "the honest responder reported no outcome")
		}
	}
}

// honestExchange runs an exchange in which the villain behaves, records
// what it sent, and checks that both sides hold the same key.
func (v *villain) honestExchange(t *testing.T, honest *node.Node, dir hostileDir) *protocol.Result {
	t.Helper()
	ss, err := v.run(t, honest, dir, villainTactic{}, false)
	require.NoError(t, err, "the honest node failed an honest exchange")
	res := ss.m.Result()
	require.NotNil(t, res)
	ak, err := honest.ActiveKey(v.id)
	require.NoError(t, err)
	require.Equal(t, res.Epoch, ak.Epoch)
	want := peerstore.Key(res.Key)
	require.True(t, ak.Key.Equal(&want), "the honest node and the villain hold different keys")
	require.Equal(t, peerstore.KeyID(res.KeyID), ak.ID)
	require.Equal(t, honest.Fingerprint(), res.PeerRecord.Fingerprint)
	v.known = res.PeerRecord
	v.epoch = res.Epoch + 1
	v.sessions = append(v.sessions, ss.sent)
	res.Wipe()
	return res
}

// hostileState is what the honest node keeps of the villain.
type hostileState struct {
	active  *peerstore.SessionKey
	peerKey *peerstore.PeerKey
}

func hostileSnapshot(t *testing.T, honest *node.Node, p peer.ID) hostileState {
	t.Helper()
	var st hostileState
	var err error
	if st.active, err = honest.ActiveKey(p); errors.Is(err, peerstore.ErrNotFound) {
		st.active = nil
	} else {
		require.NoError(t, err)
	}
	if st.peerKey, err = honest.Store().Peer(p); errors.Is(err, peerstore.ErrNotFound) {
		st.peerKey = nil
	} else {
		require.NoError(t, err)
	}
	return st
}

// requireHostileNothingInstalled checks that the honest node's state of p is as
// it was.
func requireHostileNothingInstalled(t *testing.T, honest *node.Node, p peer.ID, was hostileState) {
	t.Helper()
	ak, err := honest.ActiveKey(p)
	if was.active == nil {
		require.ErrorIs(t, err, peerstore.ErrNotFound, "a session key was installed")
	} else {
		require.NoError(t, err)
		require.Equal(t, was.active.Epoch, ak.Epoch, "a new epoch was installed")
		require.True(t, ak.Key.Equal(&was.active.Key), "the active key changed")
		require.Equal(t, was.active.ID, ak.ID)
	}
	pk, err := honest.Store().Peer(p)
	if was.peerKey == nil {
		require.ErrorIs(t, err, peerstore.ErrNotFound, "a peer record was stored")
	} else {
		require.NoError(t, err)
		require.Equal(t, was.peerKey.Seq, pk.Seq)
		require.Equal(t, was.peerKey.Fingerprint, pk.Fingerprint, "the stored peer record changed")
		require.Equal(t, was.peerKey.Record, pk.Record)
	}
}

// requireHostileReset checks that the honest side, failing with err, reset the
// stream, after at most one ABORT carrying StatusOf(err) (none if noAbort).
// The ABORT is best effort, and the reset usually overtakes it (see
// TestHostileAbortStatusReachesThePeer): its absence is not checked.
func requireHostileReset(t *testing.T, ss *villainSession, err error, noAbort bool) {
	t.Helper()
	require.Error(t, ss.readErr)
	require.NotErrorIs(t, ss.readErr, io.EOF, "the honest side closed the stream instead of resetting it")
	require.ErrorIs(t, ss.readErr, network.ErrReset, "the villain's last read: %v", ss.readErr)
	if noAbort {
		require.Empty(t, ss.aborts, "the honest side answered the villain's ABORT with an ABORT")
		return
	}
	require.LessOrEqual(t, len(ss.aborts), 1, "more than one ABORT")
	for _, st := range ss.aborts {
		require.Equal(t, protocol.StatusOf(err), st, "ABORT status for %v", err)
	}
}

// requireHostileRecovery checks that honest completes exchanges, in the role of
// dir, with a fresh honest node and with the villain's identity acting
// honestly; the latter installs epoch wantEpoch.
func requireHostileRecovery(t *testing.T, honest *node.Node, v *villain, dir hostileDir, wantEpoch uint64) {
	t.Helper()
	fresh := hostileNode(t)
	hostileIntroduce(honest.Host(), fresh.Host())
	hostileIntroduce(fresh.Host(), honest.Host())
	a, b := honest, fresh
	if dir == honestResponder {
		a, b = fresh, honest
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostileTimeout)
	defer cancel()
	info, err := a.Exchange(ctx, b.ID())
	require.NoError(t, err, "exchange with a fresh honest node")
	require.EqualValues(t, 1, info.Epoch)
	ka, err := a.ActiveKey(b.ID())
	require.NoError(t, err)
	var kb *peerstore.SessionKey
	require.Eventually(t, func() bool { // the responder installs after the initiator
		kb, err = b.ActiveKey(a.ID())
		return err == nil
	}, hostileTimeout, 5*time.Millisecond)
	require.Equal(t, ka.Epoch, kb.Epoch)
	require.True(t, ka.Key.Equal(&kb.Key), "keys with the fresh node differ")
	require.Equal(t, ka.ID, kb.ID)

	res := v.honestExchange(t, honest, dir)
	require.Equal(t, wantEpoch, res.Epoch, "the failed exchange must not use up an epoch")
}

// hostileRow is one way of misbehaving.
type hostileRow struct {
	name string
	dirs []hostileDir
	// prior is the number of honest exchanges between the villain and the
	// honest node, in the row's direction, before the attack.
	prior int
	// villainSeq is the sequence number of the villain's exchange-key
	// record (default 1).
	villainSeq uint64
	// opts are the honest node's options.
	opts []node.Option
	// setup runs after the prior exchanges; undo, if returned, before the
	// recovery exchanges.
	setup  func(t *testing.T, honest *node.Node, v *villain) (undo func())
	tactic villainTactic
	// want is the error the honest side fails with (errors.Is).
	want error
	// abort, when set, is the status of the villain's ABORT: the honest
	// side must fail with that *protocol.AbortError and send no ABORT.
	abort pb.Status
}

func hostileRows() []hostileRow {
	phase1End := []pb.Notice_Type{pb.Notice_CONTINUE, pb.Notice_NEXT}
	silent := []node.Option{node.WithPhaseTimeout(hostileSilentPhase)}
	return []hostileRow{
		// Wrong type or order: ErrUnexpected.
		{
			name: "order/PART-as-first-notice", dirs: hostileBoth, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOpeningNotice(&pb.Notice{Type: pb.Notice_PART, Chunk: &pb.Chunk{Index: 0, Count: 1, Data: []byte("part")}})},
		},
		{
			name: "order/START-answered-with-START", dirs: []hostileDir{honestInitiator}, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, _ []protocol.Frame) {
				m, err := protocol.NewMachine(protocol.Config{Role: protocol.Initiator, Identity: ss.v.sk,
					Remote: ss.s.Conn().RemotePeer(), Own: ss.v.key, Epoch: 1})
				require.NoError(ss.t, err)
				start, err := m.Start()
				require.NoError(ss.t, err)
				ss.send(start...)
			}, pb.Notice_CONTINUE)},
		},
		{
			name: "order/START-twice", dirs: []hostileDir{honestResponder}, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				ss.send(append(batch, batch...)...)
			}, pb.Notice_START)},
		},
		{
			// KEY before the villain's CONTINUE or NEXT: phase 2 has not begun.
			name: "order/KEY-in-phase-1", dirs: hostileBoth, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				ss.send(ss.chunks(pb.Notice_KEY, ss.v.key.Envelope, 0)...)
				ss.send(wiretest.Replace(batch, pb.Notice_KEY, nil)...)
			}, phase1End...)},
		},
		{
			// Both sides hold each other's current record: phase 2 is
			// skipped, and the honest side expects no KEY.
			name: "order/KEY-when-none-announced", dirs: hostileBoth, prior: 1, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				for _, f := range batch {
					ss.send(f)
					if f.Type == pb.Notice_CONTINUE || f.Type == pb.Notice_NEXT {
						ss.send(ss.chunks(pb.Notice_KEY, ss.v.key.Envelope, 0)...)
					}
				}
			}, phase1End...)},
		},
		{
			name: "order/KEY_RECEIVED-for-no-KEY", dirs: hostileBoth, prior: 1, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				for _, f := range batch {
					ss.send(f)
					if f.Type == pb.Notice_CONTINUE || f.Type == pb.Notice_NEXT {
						ss.send(hostileMarshal(ss.t, &pb.Notice{Type: pb.Notice_KEY_RECEIVED,
							KeyReceived: &pb.KeyReceived{Fingerprint: ss.v.known.Fingerprint[:]}}))
					}
				}
			}, phase1End...)},
		},
		{
			name: "order/PART_RECEIVED-before-PART", dirs: hostileBoth, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				ss.send(wiretest.Before(batch, pb.Notice_PART)...)
				ss.send(hostileMarshal(ss.t, &pb.Notice{Type: pb.Notice_PART_RECEIVED,
					PartReceived: &pb.PartReceived{Mac: hostileRandom(ss.t, protocol.MACSize)}}))
				ss.send(batch[len(wiretest.Before(batch, pb.Notice_PART)):]...)
			}, pb.Notice_PART)},
		},

		// Oversize frames: ErrFrameTooLarge, refused on the length prefix.
		{
			name: "oversize/length-above-notice-size", dirs: hostileBoth, want: protocol.ErrFrameTooLarge,
			tactic: villainTactic{out: hostileOpeningRaw(binary.AppendUvarint(nil, protocol.DefaultNoticeSize+1))},
		},
		{
			name: "oversize/length-2^63-1", dirs: hostileBoth, want: protocol.ErrFrameTooLarge,
			tactic: villainTactic{out: hostileOpeningRaw(binary.AppendUvarint(nil, 1<<63-1))},
		},
		{
			// The villain asks for the smallest notice size, then sends its
			// PART in notices of the default size: the honest side holds it
			// to the negotiated size, not its own.
			name: "oversize/above-negotiated-notice-size", dirs: hostileBoth, want: protocol.ErrFrameTooLarge,
			tactic: villainTactic{
				config: func(c *protocol.Config) { c.NoticeSize = protocol.MinNoticeSize },
				out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
					item, err := proto.Marshal(ss.sealedPart(batch))
					require.NoError(ss.t, err)
					ss.send(wiretest.Replace(batch, pb.Notice_PART, ss.chunks(pb.Notice_PART, item, protocol.DefaultNoticeSize))...)
				}, pb.Notice_PART),
			},
		},

		// Frames that do not decode: ErrMalformed.
		{
			name: "garbage/length-prefix-overflows-63-bits", dirs: hostileBoth, want: protocol.ErrMalformed,
			tactic: villainTactic{out: hostileOpeningRaw(bytes.Repeat([]byte{0xff}, 10))},
		},
		{
			name: "garbage/non-minimal-length-prefix", dirs: hostileBoth, want: protocol.ErrMalformed,
			tactic: villainTactic{out: hostileOpeningRaw([]byte{0x81, 0x00})},
		},
		{
			name: "garbage/empty-frame", dirs: hostileBoth, want: protocol.ErrMalformed,
			tactic: villainTactic{out: hostileOpeningRaw([]byte{0x00})},
		},
		{
			name: "garbage/undecodable-notice", dirs: hostileBoth, want: protocol.ErrMalformed,
			tactic: villainTactic{out: hostileOpeningRaw(protocol.AppendFrame(nil, []byte{0xff, 0xff, 0xff, 0xff}))},
		},
		{
			name: "garbage/unknown-notice-type", dirs: hostileBoth, want: protocol.ErrMalformed,
			tactic: villainTactic{out: hostileOpeningNotice(&pb.Notice{Type: pb.Notice_Type(42)})},
		},
		{
			// "a notice whose body does not match its type" is ErrUnexpected
			// by its documentation (errors.go).
			name: "garbage/body-of-another-type", dirs: hostileBoth, want: protocol.ErrUnexpected,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				ss.send(ss.edit(batch[0], func(n *pb.Notice) { n.Type = pb.Notice_NEXT }))
			}, hostileOpening...)},
		},
		{
			name: "garbage/undecodable-sealed-part", dirs: hostileBoth, want: protocol.ErrMalformed,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_PART, func(*villainSession) []byte { return bytes.Repeat([]byte{0xff}, 40) })},
		},

		// Truncated frames: the stream ends inside a frame.
		{
			name: "truncated/closed-mid-frame", dirs: hostileBoth, want: io.ErrUnexpectedEOF,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				full := protocol.AppendFrame(nil, batch[0].Bytes)
				ss.write(full[:len(full)/2])
				ss.closeWrite()
			}, hostileOpening...)},
		},
		{
			name: "truncated/closed-mid-length-prefix", dirs: hostileBoth, want: io.ErrUnexpectedEOF,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, _ []protocol.Frame) {
				ss.write([]byte{0x81})
				ss.closeWrite()
			}, hostileOpening...)},
		},
		{
			name: "truncated/closed-mid-PART", dirs: hostileBoth, want: io.ErrUnexpectedEOF,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				var b []byte
				for _, f := range batch {
					b = protocol.AppendFrame(b, f.Bytes)
				}
				ss.write(b[:len(b)-10])
				ss.closeWrite()
			}, pb.Notice_PART)},
		},
		{
			name: "truncated/closed-between-notices", dirs: hostileBoth, want: io.ErrUnexpectedEOF,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				ss.send(batch...)
				ss.closeWrite()
			}, hostileOpening...)},
		},

		// Phase 1: START, CONTINUE, NEXT.
		{
			name: "START/unsupported-version", dirs: []hostileDir{honestResponder}, want: protocol.ErrVersion,
			tactic: villainTactic{out: hostileEditType(pb.Notice_START, func(_ *villainSession, n *pb.Notice) { n.Start.Version = protocol.Version + 1 })},
		},
		{
			name: "START/no-common-suite", dirs: []hostileDir{honestResponder}, want: protocol.ErrNoCommonSuite,
			tactic: villainTactic{out: hostileEditType(pb.Notice_START, func(_ *villainSession, n *pb.Notice) { n.Start.Suites = []uint32{99} })},
		},
		{
			name: "START/notice-size-below-minimum", dirs: []hostileDir{honestResponder}, want: protocol.ErrNoticeSize,
			tactic: villainTactic{out: hostileEditType(pb.Notice_START, func(_ *villainSession, n *pb.Notice) { n.Start.NoticeSize = protocol.MinNoticeSize - 1 })},
		},
		{
			name: "START/short-nonce", dirs: []hostileDir{honestResponder}, want: protocol.ErrMalformed,
			tactic: villainTactic{out: hostileEditType(pb.Notice_START, func(_ *villainSession, n *pb.Notice) { n.Start.Nonce = n.Start.Nonce[1:] })},
		},
		{
			// Reflection: the responder answers with the initiator's own
			// commitment, to make the XOR of the parts zero.
			name: "CONTINUE/echoes-the-initiator-commitment", dirs: []hostileDir{honestInitiator}, want: protocol.ErrCommitment,
			tactic: villainTactic{
				in: func(ss *villainSession, frame []byte) {
					if n := hostileDecode(ss.t, frame); n.Type == pb.Notice_START {
						ss.note = n.Start.Commitment
					}
				},
				out: hostileEditType(pb.Notice_CONTINUE, func(ss *villainSession, n *pb.Notice) { n.Continue.Commitment = ss.note }),
			},
		},
		{
			name: "CONTINUE/suite-not-offered", dirs: []hostileDir{honestInitiator}, want: protocol.ErrNoCommonSuite,
			tactic: villainTactic{out: hostileEditType(pb.Notice_CONTINUE, func(_ *villainSession, n *pb.Notice) { n.Continue.Suite = 99 })},
		},
		{
			name: "CONTINUE/notice-size-above-offer", dirs: []hostileDir{honestInitiator}, want: protocol.ErrNoticeSize,
			tactic: villainTactic{out: hostileEditType(pb.Notice_CONTINUE, func(_ *villainSession, n *pb.Notice) { n.Continue.NoticeSize = 2 * protocol.DefaultNoticeSize })},
		},
		{
			// First contact: the initiator sent no fingerprint.
			name: "CONTINUE/claims-a-match-for-no-fingerprint", dirs: []hostileDir{honestInitiator}, want: protocol.ErrFingerprint,
			tactic: villainTactic{out: hostileEditType(pb.Notice_CONTINUE, func(_ *villainSession, n *pb.Notice) { n.Continue.KeyMatched = true })},
		},
		{
			// First contact: the responder sent no fingerprint.
			name: "NEXT/claims-a-match-for-no-fingerprint", dirs: []hostileDir{honestResponder}, want: protocol.ErrFingerprint,
			tactic: villainTactic{out: hostileEditType(pb.Notice_NEXT, func(_ *villainSession, n *pb.Notice) { n.Next.KeyMatched = true })},
		},
		{
			name: "phase-1/malformed-fingerprint", dirs: hostileBoth, want: protocol.ErrFingerprint,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				ss.send(ss.edit(batch[0], func(n *pb.Notice) {
					if n.Start != nil {
						n.Start.KeyFingerprint = []byte{0x12, 0x20, 1, 2, 3}
					} else {
						n.Continue.KeyFingerprint = []byte{0x12, 0x20, 1, 2, 3}
					}
				}))
			}, hostileOpening...)},
		},

		// Phase 2: KEY.
		{
			name: "KEY/record-of-a-third-identity", dirs: hostileBoth, want: protocol.ErrWrongSigner,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_KEY, func(ss *villainSession) []byte {
				sk, _ := hostileThirdIdentity(ss.t)
				k, err := protocol.NewExchangeKey(sk, protocol.DefaultSuites(), 1, time.Now(), protocol.DefaultRecordLifetime)
				require.NoError(ss.t, err)
				return k.Envelope
			})},
		},
		{
			name: "KEY/record-naming-a-third-peer", dirs: hostileBoth, want: protocol.ErrWrongSigner,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_KEY, func(ss *villainSession) []byte {
				_, third := hostileThirdIdentity(ss.t)
				rec := ss.v.key.KeyRecord
				rec.Peer = third
				env, err := record.Seal(&rec, ss.v.sk)
				require.NoError(ss.t, err)
				b, err := env.Marshal()
				require.NoError(ss.t, err)
				return b
			})},
		},
		{
			name: "KEY/corrupt-record-signature", dirs: hostileBoth, want: protocol.ErrBadRecord,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_KEY, func(ss *villainSession) []byte {
				b := bytes.Clone(ss.v.key.Envelope)
				b[len(b)-1] ^= 0x01 // the envelope ends with its signature
				return b
			})},
		},
		{
			name: "KEY/expired-record", dirs: hostileBoth, want: protocol.ErrBadRecord,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_KEY, func(ss *villainSession) []byte {
				k, err := protocol.NewExchangeKey(ss.v.sk, protocol.DefaultSuites(), 1, time.Now().Add(-2*time.Hour), time.Hour)
				require.NoError(ss.t, err)
				return k.Envelope
			})},
		},
		{
			// The honest node holds the villain's record of sequence 2; the
			// villain comes back with a record of sequence 1 created an
			// hour before it: an old record replayed, refused under every
			// policy (a record created after the held one would be a
			// store reset, for the trust policy to judge).
			name: "KEY/rollback-to-an-older-record", dirs: hostileBoth, prior: 1, villainSeq: 2, want: protocol.ErrRollback,
			setup: hostileSwapVillainKey(1, -time.Hour),
		},
		{
			// Another record of the held sequence, signed in the same
			// second as the held one.
			name: "KEY/other-record-with-the-same-sequence", dirs: hostileBoth, prior: 1, want: protocol.ErrRollback,
			setup: hostileSwapVillainKey(1, 0),
		},
		{
			// A sequence jump beyond protocol.MaxSeqJump: accepted, it
			// would make every later honest record a rollback.
			name: "KEY/sequence-jump-beyond-the-bound", dirs: hostileBoth, prior: 1, want: protocol.ErrRollback,
			setup: hostileSwapVillainKey(2+protocol.MaxSeqJump, time.Second),
		},
		{
			// A record valid for ten years, correctly signed.
			name: "KEY/record-lifetime-beyond-the-bound", dirs: hostileBoth, want: protocol.ErrBadRecord,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_KEY, func(ss *villainSession) []byte {
				k, err := protocoltest.ForgeExchangeKey(ss.v.sk, protocol.DefaultSuites(), 1, time.Now(), time.Now().Add(10*365*24*time.Hour))
				require.NoError(ss.t, err)
				return k.Envelope
			})},
		},
		{
			// The villain, as responder, answers a first contact with
			// X25519 although its record has the hybrid suite the honest
			// initiator offered first: refused when its record arrives.
			name: "KEY/record-of-a-downgrading-responder", dirs: []hostileDir{honestInitiator}, want: protocol.ErrDowngrade,
			tactic: villainTactic{machine: hostileDowngrade},
		},
		{
			// The same with the villain's record held: refused at CONTINUE.
			name: "CONTINUE/suite-downgrade", dirs: []hostileDir{honestInitiator}, prior: 1, want: protocol.ErrDowngrade,
			tactic: villainTactic{machine: hostileDowngrade},
		},
		{
			name: "KEY/too-many-chunks", dirs: hostileBoth, want: protocol.ErrChunk,
			tactic: villainTactic{out: hostileReplaceChunks(pb.Notice_KEY, func(ss *villainSession) []*pb.Chunk {
				return []*pb.Chunk{{Index: 0, Count: protocol.MaxChunks + 1, Data: ss.v.key.Envelope[:64]}}
			})},
		},
		{
			name: "KEY/chunks-out-of-order", dirs: hostileBoth, want: protocol.ErrChunk,
			tactic: villainTactic{out: hostileReplaceChunks(pb.Notice_KEY, func(ss *villainSession) []*pb.Chunk {
				c := protocol.SplitForTest(ss.v.key.Envelope, ss.m.MaxFrame())
				require.Greater(ss.t, len(c), 1)
				return append(c[1:], c[0])
			})},
		},
		{
			name: "KEY/record-above-size-bound", dirs: hostileBoth, want: protocol.ErrChunk,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_KEY, func(ss *villainSession) []byte {
				return hostileRandom(ss.t, protocol.MaxRecordSize+protocol.DefaultNoticeSize)
			})},
		},

		// Phase 2: KEY_RECEIVED.
		{
			name: "KEY_RECEIVED/wrong-fingerprint", dirs: hostileBoth, want: protocol.ErrFingerprint,
			tactic: villainTactic{out: hostileEditType(pb.Notice_KEY_RECEIVED, func(ss *villainSession, n *pb.Notice) {
				fp := protocol.FingerprintOf(hostileRandom(ss.t, 64))
				n.KeyReceived.Fingerprint = fp[:]
			})},
		},
		{
			name: "KEY_RECEIVED/malformed-fingerprint", dirs: hostileBoth, want: protocol.ErrFingerprint,
			tactic: villainTactic{out: hostileEditType(pb.Notice_KEY_RECEIVED, func(_ *villainSession, n *pb.Notice) {
				n.KeyReceived.Fingerprint = n.KeyReceived.Fingerprint[:3]
			})},
		},
		{
			// The honest node rotated its exchange key after the prior
			// exchange; the villain acknowledges the new record with the
			// fingerprint of the old one.
			name: "KEY_RECEIVED/stale-fingerprint-after-rotation", dirs: hostileBoth, prior: 1, want: protocol.ErrFingerprint,
			setup: func(t *testing.T, honest *node.Node, v *villain) func() {
				require.NoError(t, honest.RotateExchangeKey())
				require.NotEqual(t, v.known.Fingerprint, honest.Fingerprint())
				return nil
			},
			tactic: villainTactic{out: hostileEditType(pb.Notice_KEY_RECEIVED, func(ss *villainSession, n *pb.Notice) {
				n.KeyReceived.Fingerprint = ss.v.known.Fingerprint[:]
			})},
		},

		// Phase 3: PART.
		{
			name: "PART/bad-signature", dirs: hostileBoth, want: protocol.ErrBadSignature,
			tactic: villainTactic{out: hostileEditPart(func(_ *villainSession, sp *pb.SealedPart) { sp.Signature[0] ^= 0x01 })},
		},
		{
			// A valid signature over the right input, by an identity other
			// than the authenticated remote peer.
			name: "PART/signed-by-a-third-identity", dirs: hostileBoth, want: protocol.ErrBadSignature,
			tactic: villainTactic{out: hostileEditPart(func(ss *villainSession, sp *pb.SealedPart) {
				sk, _ := hostileThirdIdentity(ss.t)
				ss.signPart(sp, ss.villainRole(), sk)
			})},
		},
		{
			name: "PART/signed-with-the-other-role-label", dirs: hostileBoth, want: protocol.ErrBadSignature,
			tactic: villainTactic{out: hostileEditPart(func(ss *villainSession, sp *pb.SealedPart) {
				ss.signPart(sp, ss.honestRole(), ss.v.sk)
			})},
		},
		{
			name: "PART/reflected", dirs: hostileBoth, want: protocol.ErrBadSignature,
			tactic: hostileEcho(pb.Notice_PART),
		},
		{
			// The villain swaps its part after committing to it in phase 1.
			name: "PART/commitment-mismatch", dirs: hostileBoth, want: protocol.ErrCommitment,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				var p [protocol.PartSize]byte
				copy(p[:], hostileRandom(ss.t, protocol.PartSize))
				ss.m.SetPartForTest(p)
				ss.send(batch...)
			}, hostileOpening...)},
		},
		{
			// A correctly signed ciphertext that does not open.
			name: "PART/undecryptable", dirs: hostileBoth, want: protocol.ErrDecrypt,
			tactic: villainTactic{out: hostileEditPart(func(ss *villainSession, sp *pb.SealedPart) {
				sp.Ciphertext[len(sp.Ciphertext)-1] ^= 0x01
				ss.signPart(sp, ss.villainRole(), ss.v.sk)
			})},
		},
		{
			name: "PART/too-many-chunks", dirs: hostileBoth, want: protocol.ErrChunk,
			tactic: villainTactic{out: hostileReplaceChunks(pb.Notice_PART, func(ss *villainSession) []*pb.Chunk {
				return []*pb.Chunk{{Index: 0, Count: protocol.MaxChunks + 1, Data: hostileRandom(ss.t, 64)}}
			})},
		},
		{
			name: "PART/item-above-size-bound", dirs: hostileBoth, want: protocol.ErrChunk,
			tactic: villainTactic{out: hostileReplaceItem(pb.Notice_PART, func(ss *villainSession) []byte {
				return hostileRandom(ss.t, protocol.MaxSealedPartSize+protocol.DefaultNoticeSize)
			})},
		},

		// Phase 3: PART_RECEIVED.
		{
			name: "PART_RECEIVED/bad-mac", dirs: hostileBoth, want: protocol.ErrConfirmation,
			tactic: villainTactic{out: hostileEditType(pb.Notice_PART_RECEIVED, func(_ *villainSession, n *pb.Notice) { n.PartReceived.Mac[0] ^= 0x01 })},
		},
		{
			name: "PART_RECEIVED/short-mac", dirs: hostileBoth, want: protocol.ErrConfirmation,
			tactic: villainTactic{out: hostileEditType(pb.Notice_PART_RECEIVED, func(_ *villainSession, n *pb.Notice) {
				n.PartReceived.Mac = n.PartReceived.Mac[:protocol.MACSize-1]
			})},
		},
		{
			name: "PART_RECEIVED/reflected", dirs: hostileBoth, want: protocol.ErrConfirmation,
			tactic: hostileEcho(pb.Notice_PART_RECEIVED),
		},

		// Replays of notices recorded in an earlier, completed session
		// between the villain and the honest node.
		{
			// Every notice the villain sent in the first session, verbatim:
			// phase 1 and 2 are accepted (the record is the known one), the
			// PART is signed over the old transcript.
			name: "replay/whole-earlier-session", dirs: hostileBoth, prior: 1, want: protocol.ErrBadSignature,
			tactic: villainTactic{out: func(ss *villainSession, batch []protocol.Frame) {
				if wiretest.Has(batch, hostileOpening...) {
					ss.send(ss.v.sessions[0]...)
				}
				ss.silent = true
			}},
		},
		{
			name: "replay/old-CONTINUE", dirs: []hostileDir{honestInitiator}, prior: 2, want: protocol.ErrBadSignature,
			tactic: villainTactic{out: hostileReplay(pb.Notice_CONTINUE, 1)},
		},
		{
			name: "replay/old-START", dirs: []hostileDir{honestResponder}, prior: 2, want: protocol.ErrBadSignature,
			tactic: villainTactic{out: hostileReplay(pb.Notice_START, 1)},
		},
		{
			name: "replay/old-PART", dirs: hostileBoth, prior: 1, want: protocol.ErrBadSignature,
			tactic: villainTactic{out: hostileReplay(pb.Notice_PART, 0)},
		},
		{
			name: "replay/old-PART_RECEIVED", dirs: hostileBoth, prior: 1, want: protocol.ErrConfirmation,
			tactic: villainTactic{out: hostileReplay(pb.Notice_PART_RECEIVED, 0)},
		},

		// A peer that goes silent: ErrTimeout.
		{
			name: "silent/from-the-start", dirs: hostileBoth, opts: silent, want: protocol.ErrTimeout,
			tactic: villainTactic{out: func(ss *villainSession, _ []protocol.Frame) { ss.silent = true }},
		},
		{
			name: "silent/instead-of-KEY_RECEIVED", dirs: hostileBoth, opts: silent, want: protocol.ErrTimeout,
			tactic: villainTactic{out: hostileSilentFrom(pb.Notice_KEY_RECEIVED)},
		},
		{
			// The honest side has derived the key and confirmed it; it must
			// not install it without the villain's confirmation.
			name: "silent/instead-of-PART_RECEIVED", dirs: hostileBoth, opts: silent, want: protocol.ErrTimeout,
			tactic: villainTactic{out: hostileSilentFrom(pb.Notice_PART_RECEIVED)},
		},

		// ABORT from the villain: *protocol.AbortError, no ABORT back.
		{
			name: "ABORT/instead-of-the-opening", dirs: hostileBoth, abort: pb.Status_UNSUPPORTED_VERSION,
			tactic: villainTactic{out: hostileOpeningNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_UNSUPPORTED_VERSION}})},
		},
		{
			name: "ABORT/instead-of-PART", dirs: hostileBoth, abort: pb.Status_BAD_COMMITMENT,
			tactic: villainTactic{out: hostileOnBatch(func(ss *villainSession, batch []protocol.Frame) {
				ss.send(wiretest.Before(batch, pb.Notice_PART)...)
				ss.send(hostileMarshal(ss.t, &pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_BAD_COMMITMENT}}))
				ss.silent = true
			}, pb.Notice_PART)},
		},
		{
			// CONFLICT tells an initiator to join the peer's simultaneous
			// exchange; when none comes, it runs its exchange once more
			// (docs/PROTOCOL.md section 17), and a peer that answers
			// CONFLICT again fails the call: no endless retries.
			name: "ABORT/CONFLICT-without-a-simultaneous-start", dirs: hostileBoth, opts: silent, abort: pb.Status_CONFLICT,
			tactic: villainTactic{out: hostileOpeningNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_CONFLICT}})},
		},
		{
			name: "ABORT/unknown-status", dirs: hostileBoth, abort: pb.Status(999),
			tactic: villainTactic{out: hostileOpeningNotice(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status(999)}})},
		},
	}
}

// hostileSwapVillainKey replaces the villain's exchange key, after the prior
// exchange, with a new one of sequence seq created at the creation time of
// the one the honest node holds plus offset; undo restores it.
func hostileSwapVillainKey(seq uint64, offset time.Duration) func(t *testing.T, honest *node.Node, v *villain) func() {
	return func(t *testing.T, _ *node.Node, v *villain) func() {
		prev := v.key
		k, err := protocol.NewExchangeKey(v.sk, protocol.DefaultSuites(), seq, prev.Created.Add(offset), protocol.DefaultRecordLifetime)
		require.NoError(t, err)
		v.key = k
		return func() { v.key = prev }
	}
}

// hostileDowngrade makes the villain's responder machine choose the last
// common suite instead of the first (protocoltest's downgrading responder).
func hostileDowngrade(t *testing.T, m *protocol.Machine) {
	require.NoError(t, hooks.SetSuiteChoice(m, func(common []uint16) uint16 { return common[len(common)-1] }))
}

func TestHostilePeers(t *testing.T) {
	rows := hostileRows()
	for _, row := range rows {
		for _, dir := range row.dirs {
			t.Run(row.name+"/"+dir.String(), func(t *testing.T) {
				if len(row.opts) == 0 {
					// Rows with short phase timeouts run alone, first,
					// so that load cannot make their recovery time out.
					t.Parallel()
				}
				runHostileRow(t, row, dir)
			})
		}
	}
}

func runHostileRow(t *testing.T, row hostileRow, dir hostileDir) {
	honest := hostileNode(t, row.opts...)
	seq := row.villainSeq
	if seq == 0 {
		seq = 1
	}
	v := newVillain(t, seq)
	hostileIntroduce(v.h, honest.Host())
	hostileIntroduce(honest.Host(), v.h)
	for range row.prior {
		v.honestExchange(t, honest, dir)
	}
	var undo func()
	if row.setup != nil {
		undo = row.setup(t, honest, v)
	}
	was := hostileSnapshot(t, honest, v.id)
	if row.prior == 0 {
		require.Nil(t, was.active)
		require.Nil(t, was.peerKey)
	}

	ss, err := v.run(t, honest, dir, row.tactic, true)

	// (1) A typed error on the honest side.
	require.Error(t, err, "the honest node completed an exchange with a misbehaving peer")
	if row.abort != 0 {
		var ae *protocol.AbortError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, row.abort, ae.Status)
		if row.abort == pb.Status_CONFLICT {
			require.ErrorIs(t, err, protocol.ErrConflict)
		}
	} else {
		require.ErrorIs(t, err, row.want)
		// Caused by the peer, so never reported as the node's own failure.
		require.NotEqual(t, pb.Status_INTERNAL_ERROR, protocol.StatusOf(err), "%v", err)
	}
	// (2) The honest side reset the stream.
	requireHostileReset(t, ss, err, row.abort != 0)
	// (3) Nothing installed.
	requireHostileNothingInstalled(t, honest, v.id, was)
	// (4) The honest node still works, with others and with the villain's
	// identity.
	if undo != nil {
		undo()
	}
	wantEpoch := uint64(1)
	if was.active != nil {
		wantEpoch = was.active.Epoch + 1
	}
	requireHostileRecovery(t, honest, v, dir, wantEpoch)
}

// TestHostileHarnessHonest checks the harness itself: the villain's driver,
// used without a tactic, completes exchanges with an honest node in both
// directions, with and without phase 2, and a hostile run of an honest
// tactic is told apart from a failure.
func TestHostileHarnessHonest(t *testing.T) {
	for _, dir := range hostileBoth {
		t.Run(dir.String(), func(t *testing.T) {
			honest := hostileNode(t)
			v := newVillain(t, 1)
			hostileIntroduce(v.h, honest.Host())
			hostileIntroduce(honest.Host(), v.h)
			first := v.honestExchange(t, honest, dir)
			require.EqualValues(t, 1, first.Epoch)
			require.True(t, first.InitiatorKeySent && first.ResponderKeySent)
			second := v.honestExchange(t, honest, dir)
			require.EqualValues(t, 2, second.Epoch)
			require.False(t, second.InitiatorKeySent || second.ResponderKeySent)
			// In hostile mode an honest tactic ends in a clean close, which
			// requireHostileReset refuses.
			ss, err := v.run(t, honest, dir, villainTactic{}, true)
			require.NoError(t, err)
			require.ErrorIs(t, ss.readErr, io.EOF)
			require.NotErrorIs(t, ss.readErr, network.ErrReset)
		})
	}
}

// TestHostileAbortStatusReachesThePeer: a node that refuses a peer's
// exchange-key record aborts with KEY_REJECTED (docs/PROTOCOL.md, sections 15
// and 16: "SHOULD send one ABORT ... and then MUST reset the stream"). The
// peer should fail with that status, as a *protocol.AbortError. Over yamux it
// almost never does: node's run resets the stream right after Run's ABORT,
// and a yamux stream that receives a reset drops the data it has not read
// yet, so the peer reads a bare "stream reset" instead.
func TestHostileAbortStatusReachesThePeer(t *testing.T) {
	errRefused := errors.New("test policy refuses every record")
	a := hostileNode(t, node.WithTrustPolicy(func(node.PeerKeyChange) error { return errRefused }))
	b := hostileNode(t)
	hostileIntroduce(a.Host(), b.Host())
	events, stop := b.Subscribe(0)
	defer stop()
	for round := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), hostileTimeout)
		_, err := a.Exchange(ctx, b.ID())
		cancel()
		require.ErrorIs(t, err, protocol.ErrKeyRejected, "round %d", round)
		var failed error
		for failed == nil {
			select {
			case e, ok := <-events:
				require.True(t, ok)
				if e.Peer == a.ID() && e.Kind == node.EventFailed {
					failed = e.Err
				}
				require.NotEqual(t, node.EventDone, e.Kind, "round %d", round)
			case <-time.After(hostileTimeout):
				require.FailNow(t, "no EventFailed", "round %d", round)
			}
		}
		var ae *protocol.AbortError
		require.ErrorAs(t, failed, &ae, "round %d: the peer's error", round)
		require.Equal(t, pb.Status_KEY_REJECTED, ae.Status, "round %d", round)
	}
}

// TestHostileEpochAtTheEndOfItsRange: START and CONTINUE may propose any
// epoch up to protocol.MaxEpoch (rule V13), and the exchange installs the
// larger proposal. A peer that proposes MaxEpoch leaves the honest node
// with an active epoch of MaxEpoch for it, after which the node can no
// longer build a machine for that peer (its next proposal, MaxEpoch+1, is
// out of range): every later exchange with the peer, in either direction,
// fails with an untyped local error until the store is wiped. MaxEpoch was
// meant to stop exactly this ("so that a hostile peer cannot push a node's
// epochs to the end of their range", machine.go).
func TestHostileEpochAtTheEndOfItsRange(t *testing.T) {
	for _, dir := range hostileBoth {
		t.Run(dir.String(), func(t *testing.T) {
			honest := hostileNode(t)
			v := newVillain(t, 1)
			hostileIntroduce(v.h, honest.Host())
			hostileIntroduce(honest.Host(), v.h)
			push := villainTactic{config: func(c *protocol.Config) { c.Epoch = protocol.MaxEpoch }}
			ss, err := v.run(t, honest, dir, push, true)
			if err != nil {
				// Refusing the proposal is fine, as a peer's protocol error.
				require.NotEqual(t, pb.Status_INTERNAL_ERROR, protocol.StatusOf(err), "%v", err)
				requireHostileReset(t, ss, err, false)
			}
			// Whatever the node did with it, the peer's identity must still
			// be able to run an honest exchange with it.
			v.epoch = 1
			v.honestExchange(t, honest, dir)
		})
	}
}
