package node

// Messaging: /p2pkex/msg/1.0.0
//
// Once two nodes share a session key they can exchange messages: [Node.Send]
// seals a message to a peer and returns once the peer has authenticated it
// and handed it to a subscriber; [Node.Messages] subscribes to the messages
// the node receives.
//
// # Wire format
//
// One stream per message. The sender writes one frame (an unsigned-varint
// length, as for the exchange: protocol.AppendFrame) holding
//
//	offset size  field
//	0      1     version, 1
//	1      8     epoch of the session key, big-endian
//	9      8     key ID of that session key
//	17     16    stream salt: random, chosen by the sender per (peer, epoch)
//	             and again whenever it restarts or its counter runs out
//	33     8     counter, big-endian; 0 for the first message of a salt
//	41     n+16  AES-256-GCM ciphertext of the message and its tag
//
// with the 41-byte header as the AEAD's additional data and the 12-byte
// nonce 0x00000000 || counter. The sender then closes its side; the receiver
// answers with one frame of one byte, a status (msgStatus below: 0 accepted,
// else the reason of the refusal) and closes the stream. A receiver that
// refuses a message from its length or header alone (no session with the
// sender, a malformed or oversize header, an epoch or key ID it does not
// accept) does not read the body: it resets the stream with the error code
// MessageResetCodeBase + status instead, and the sender takes the status
// from the code (msgadmit.go).
//
// # Keys
//
// Each direction and stream has its own key, never the session key itself:
//
//	key = HKDF-SHA256(secret = session key,
//	                  salt   = lp("p2pkex/1.0.0 msg") || stream salt,
//	                  info   = lp("p2pkex/1.0.0 msg") || lp(sender peer ID) ||
//	                           lp(receiver peer ID) || key ID || epoch (8 bytes BE),
//	                  32 bytes)
//
// where lp is a 4-byte big-endian length prefix (as in protocol/transcript.go).
// The peer IDs make A->B and B->A keys differ (no reflection); the salt makes
// a restarted sender, whose counter starts again at 0, use a fresh key, so a
// (key, nonce) pair is never used twice. The AEAD is AES-256-GCM from the
// standard library (crypto/aes, crypto/cipher): the design allows only
// standard-library and libp2p primitives, the standard library has no
// exported ChaCha20-Poly1305, and GCM with a counter nonce under a key used
// for at most msgCounterLimit messages stays far inside its bounds.
//
// # Epochs and replays
//
// A sender seals under the peer's active epoch. A receiver accepts the active
// epoch, and the epoch before it for a grace period (WithMessageGrace,
// default DefaultMessageGrace) counted from when the active epoch was
// installed; older epochs are refused. A message under an epoch above the
// receiver's active one waits for an exchange with the sender still running
// (the initiator installs before the responder does); if none runs, it is
// refused with ErrUnknownEpoch and an EventMessageRefused event: after a
// crash either peer can be one epoch ahead (docs/SECURITY.md, "Crash safety"). The sender then
// answers with a new exchange and sends the message again under the new
// epoch, so the pair converges instead of failing.
//
// Per (peer, epoch, salt) the receiver keeps a sliding window of the last
// msgWindow counters: a counter seen before, or older than the window, is
// refused with ErrReplay. The windows live in memory; they are dropped with
// the epochs that are no longer accepted, so that a peer has windows of two
// epochs at most (the active one and the one before it).
//
// # Replays across restarts
//
// Windows in memory die with the process, so a receiver accepts messages
// only under epochs it installed itself since it started (fresh epochs):
// every message it ever accepted under such an epoch went through windows
// it still holds. An epoch that was already in the store when the node
// started — before a clean restart or a SIGKILL alike — is refused with
// ErrEpochExpired, and the sender's Send answers that with a new exchange
// and sends again under the new epoch. Nothing is written per message; the
// cost is one exchange per peer after each restart of the receiver. A
// message accepted once is thus refused forever after under its key: in
// this run by the window, after a restart because its epoch is not fresh.
//
// An epoch does not also expire by time. Replay protection does not need
// it (the rule above holds however old the epoch is), and the exposure of
// a session key in use is bounded by the next exchange, which a restart of
// either side forces and the application may run at any time.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

const (
	// MessageProtocolID is the libp2p protocol ID of messaging.
	MessageProtocolID libp2pprotocol.ID = "/p2pkex/msg/1.0.0"
	// MessageServiceName is the resource-manager service of message streams.
	MessageServiceName = "p2pkex.msg"

	// DefaultMaxMessageSize bounds a message's plaintext.
	DefaultMaxMessageSize = 64 << 10
	// DefaultMessageGrace is how long after a new epoch is installed messages
	// under the previous epoch are still accepted.
	DefaultMessageGrace = time.Minute
	// MessageTimeout bounds one message stream, from opening it to the
	// status, including the wait for an exchange in flight at the receiver.
	MessageTimeout = 10 * time.Second

	// MessageHeaderSize is the size of a message's header (see the package
	// comment of messaging.go).
	MessageHeaderSize = 41

	msgVersion  = 1
	msgSaltSize = 16
	msgTagSize  = 16
	msgLabel    = "p2pkex/1.0.0 msg"
	// msgWindow is the replay window: how many counters back a message may
	// arrive out of order.
	msgWindow = 1024
	// msgMaxStreams bounds the salts a receiver tracks per peer and epoch;
	// a new salt beyond it is refused (the sender then re-keys).
	msgMaxStreams = 64
	// msgCounterLimit is the number of messages sealed under one stream key;
	// the sender then picks a new salt.
	msgCounterLimit = 1 << 32
	// msgSendAttempts bounds how often Send seals a message again after a
	// refusal that a new epoch cures.
	msgSendAttempts = 3
)

// EventMessageRefused: the node refused a received message (Err says why,
// wrapping one of the message errors). It is declared here rather than in
// events.go because messaging is self-contained in this file.
const EventMessageRefused EventKind = 64

// Message errors. A refusal by the peer reaches Send's caller as a
// *RefusedError wrapping one of them.
var (
	// ErrNoKey: no session key with the peer; run Exchange first.
	ErrNoKey = errors.New("no session key with the peer (run Exchange first)")
	// ErrMessageTooLarge: the message exceeds the maximum message size.
	ErrMessageTooLarge = errors.New("message too large")
	// ErrMessageMalformed: the frame is not a message.
	ErrMessageMalformed = errors.New("malformed message")
	// ErrUnknownEpoch: the message is sealed under an epoch the receiver does
	// not have.
	ErrUnknownEpoch = errors.New("message under an epoch the receiver does not have")
	// ErrEpochExpired: the message is sealed under an epoch no longer
	// accepted (older than the previous one, the previous one after the
	// grace period, or one the receiver installed before it last started).
	ErrEpochExpired = errors.New("message under an epoch no longer accepted")
	// ErrKeyMismatch: the message's key ID is not the one of its epoch.
	ErrKeyMismatch = errors.New("message key ID does not match the epoch's key")
	// ErrMessageAuth: the message does not authenticate (tampered, or
	// sealed under another key).
	ErrMessageAuth = errors.New("message failed authentication")
	// ErrReplay: the message's counter was seen before or is older than the
	// replay window.
	ErrReplay = errors.New("message replayed or too old")
	// ErrTooManyStreams: the sender used too many stream salts in one epoch.
	ErrTooManyStreams = errors.New("too many message streams in this epoch")
	// ErrNotDelivered: the receiver has no subscriber that took the message
	// in time.
	ErrNotDelivered = errors.New("message not delivered: no subscriber took it")
	// ErrMessageInternal: the receiver failed for a reason of its own.
	ErrMessageInternal = errors.New("receiver failed to process the message")
)

// msgStatus is the one byte a receiver answers a message with.
type msgStatus uint8

// Statuses, as on the wire. Do not renumber.
const (
	msgOK msgStatus = iota
	msgMalformed
	msgTooLarge
	msgUnknownEpoch
	msgEpochExpired
	msgKeyMismatch
	msgAuth
	msgReplay
	msgTooManyStreams
	msgNotDelivered
	msgInternal
)

var msgStatusErrs = map[msgStatus]error{
	msgMalformed:      ErrMessageMalformed,
	msgTooLarge:       ErrMessageTooLarge,
	msgUnknownEpoch:   ErrUnknownEpoch,
	msgEpochExpired:   ErrEpochExpired,
	msgKeyMismatch:    ErrKeyMismatch,
	msgAuth:           ErrMessageAuth,
	msgReplay:         ErrReplay,
	msgTooManyStreams: ErrTooManyStreams,
	msgNotDelivered:   ErrNotDelivered,
	msgInternal:       ErrMessageInternal,
	closedStatus:      ErrClosed,
}

// closedStatus: the receiver is closing.
const closedStatus msgStatus = 0xff

func statusOf(err error) msgStatus {
	for s, e := range msgStatusErrs {
		if errors.Is(err, e) {
			return s
		}
	}
	return msgInternal
}

// RefusedError is a peer's refusal of a message sent to it.
type RefusedError struct {
	Peer  peer.ID
	Epoch uint64 // the epoch the message was sealed under
	Err   error  // one of the message errors
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("peer %s refused the message (epoch %d): %v", e.Peer, e.Epoch, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Message is a message the node received and authenticated.
type Message struct {
	From  peer.ID
	Epoch uint64
	KeyID peerstore.KeyID
	Data  []byte
	Time  time.Time // when it was received, by the node's clock
}

// msgConfig holds the messaging options; the zero value means defaults.
type msgConfig struct {
	maxSize  int
	grace    time.Duration
	graceSet bool
}

func (c *msgConfig) maxMessage() int {
	if c.maxSize == 0 {
		return DefaultMaxMessageSize
	}
	return c.maxSize
}

func (c *msgConfig) graceTime() time.Duration {
	if !c.graceSet {
		return DefaultMessageGrace
	}
	return c.grace
}

// maxFrame is the largest message frame accepted.
func (c *msgConfig) maxFrame() int { return MessageHeaderSize + c.maxMessage() + msgTagSize }

// WithMessageGrace sets how long after a new epoch is installed messages
// sealed under the previous epoch are still accepted. Default
// DefaultMessageGrace (1 minute); 0 refuses them at once.
func WithMessageGrace(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return errors.New("message grace must not be negative")
		}
		c.msg.grace, c.msg.graceSet = d, true
		return nil
	}
}

// WithMaxMessageSize bounds a message's plaintext, sent and received.
// Default DefaultMaxMessageSize (64 KiB); at most 16 MiB.
func WithMaxMessageSize(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 16<<20 {
			return fmt.Errorf("max message size %d outside [1, %d]", n, 16<<20)
		}
		c.msg.maxSize = n
		return nil
	}
}

// messaging is the node's messaging state.
type messaging struct {
	mu   sync.Mutex
	send map[peer.ID]*msgSender
	recv map[peer.ID]*msgPeer
	// fresh is, per peer, the lowest epoch this node installed since it
	// started; only epochs from it up are accepted (see "Replays across
	// restarts" at the top of this file).
	fresh map[peer.ID]uint64
	// forgotten counts, per peer, the times the node forgot it (Forget).
	// A message whose key was read before a forget of its sender and whose
	// body arrives after it is refused (accept): the key it holds was
	// destroyed.
	forgotten map[peer.ID]uint64

	subsMu     sync.RWMutex
	subs       map[*msgSub]struct{}
	subsClosed bool
}

// msgSender is the sending state of one peer and epoch.
type msgSender struct {
	epoch uint64
	keyID peerstore.KeyID
	salt  [msgSaltSize]byte
	next  uint64
	aead  cipher.AEAD
}

// msgPeer is the receiving state of one peer.
type msgPeer struct {
	// floor only grows: messages under a lower epoch are refused even if
	// they passed the epoch check before the windows of that epoch were
	// dropped (a replay must not find a fresh window).
	floor   uint64
	streams map[msgStreamKey]*msgStream
}

type msgStreamKey struct {
	epoch uint64
	salt  [msgSaltSize]byte
}

// msgStream is the receiving state of one peer, epoch and salt.
type msgStream struct {
	aead cipher.AEAD
	win  replayWindow
}

type msgSub struct {
	ch   chan Message
	done chan struct{}
	stop func()
}

// lp appends x with a 4-byte big-endian length prefix.
func lp(dst, x []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(x)))
	return append(dst, x...)
}

// messageAEAD derives the key of messages from sender to receiver under
// session key s and salt (see the top of this file) and returns its AEAD.
func messageAEAD(s *peerstore.SessionKey, sender, receiver peer.ID, salt *[msgSaltSize]byte) (cipher.AEAD, error) {
	hsalt := append(lp(nil, []byte(msgLabel)), salt[:]...)
	info := lp(nil, []byte(msgLabel))
	info = lp(info, []byte(sender))
	info = lp(info, []byte(receiver))
	info = append(info, s.ID[:]...)
	info = binary.BigEndian.AppendUint64(info, s.Epoch)
	k, err := hkdf.Key(sha256.New, s.Key[:], hsalt, string(info), 32)
	if err != nil {
		return nil, err
	}
	var key [32]byte
	copy(key[:], k)
	clear(k)
	defer clear(key[:])
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func msgNonce(counter uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], counter)
	return n[:]
}

// msgHeader is a parsed message header.
type msgHeader struct {
	epoch   uint64
	keyID   peerstore.KeyID
	salt    [msgSaltSize]byte
	counter uint64
}

func (h *msgHeader) append(b []byte) []byte {
	b = append(b, msgVersion)
	b = binary.BigEndian.AppendUint64(b, h.epoch)
	b = append(b, h.keyID[:]...)
	b = append(b, h.salt[:]...)
	return binary.BigEndian.AppendUint64(b, h.counter)
}

func parseMsgHeader(frame []byte) (*msgHeader, error) {
	if len(frame) < MessageHeaderSize+msgTagSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessageMalformed, len(frame))
	}
	return decodeMsgHeader((*[MessageHeaderSize]byte)(frame)) // msgadmit.go
}

// Send seals data to p under the active session key with p and sends it.
// It returns nil once p has authenticated the message and handed it to a
// subscriber of its Messages; a refusal is a *RefusedError (errors.Is works
// with the message errors). Without a session key Send fails with ErrNoKey.
//
// When p does not hold the epoch the message was sealed under, or no longer
// accepts it (one of the peers is an epoch ahead after a crash), Send runs
// an Exchange with p and sends the message again under the new epoch. A
// message that fails for another reason is not sent again: it may have
// been delivered.
func (n *Node) Send(ctx context.Context, p peer.ID, data []byte) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if len(data) > n.cfg.msg.maxMessage() {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(data), n.cfg.msg.maxMessage())
	}
	for attempt := 1; ; attempt++ {
		frame, epoch, err := n.sealMessage(p, data)
		if err != nil {
			return err
		}
		err = n.sendFrame(ctx, p, epoch, frame)
		var re *RefusedError
		if err == nil || attempt == msgSendAttempts || !errors.As(err, &re) ||
			!(errors.Is(re, ErrUnknownEpoch) || errors.Is(re, ErrEpochExpired) ||
				errors.Is(re, ErrKeyMismatch) || errors.Is(re, ErrTooManyStreams)) {
			return err
		}
		// If no exchange moved our epoch on since we sealed, make one.
		act, aerr := n.store.ActiveSession(p)
		if aerr != nil {
			return errors.Join(err, aerr)
		}
		moved := act.Epoch != epoch
		clear(act.Key[:])
		if !moved {
			log.Debugw("message refused; exchanging keys again", "peer", p, "epoch", epoch, "err", re.Err)
			if _, xerr := n.Exchange(ctx, p); xerr != nil {
				return fmt.Errorf("%w; new exchange failed: %w", err, xerr)
			}
		}
	}
}

// sealMessage seals data to p under the active session key; it returns the
// frame and its epoch.
func (n *Node) sealMessage(p peer.ID, data []byte) ([]byte, uint64, error) {
	act, err := n.store.ActiveSession(p)
	if errors.Is(err, peerstore.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: %s", ErrNoKey, p)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read session of %s: %w", p, err)
	}
	defer clear(act.Key[:])
	aead, h, err := n.msg.reserve(n.host.ID(), p, act)
	if err != nil {
		return nil, 0, err
	}
	buf := h.append(make([]byte, 0, MessageHeaderSize+len(data)+msgTagSize))
	return aead.Seal(buf, msgNonce(h.counter), data, buf[:MessageHeaderSize]), h.epoch, nil
}

// reserve takes the next counter of the sending state for p, making a new
// state (a new salt) for a newer epoch or a spent counter.
func (m *messaging) reserve(self, p peer.ID, act *peerstore.SessionKey) (cipher.AEAD, *msgHeader, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.send[p]
	// A newer state than act means another Send read the store later.
	if cur == nil || cur.epoch < act.Epoch || cur.next >= msgCounterLimit {
		s := &msgSender{epoch: act.Epoch, keyID: act.ID}
		if _, err := rand.Read(s.salt[:]); err != nil {
			return nil, nil, err
		}
		var err error
		if s.aead, err = messageAEAD(act, self, p, &s.salt); err != nil {
			return nil, nil, err
		}
		if m.send == nil {
			m.send = map[peer.ID]*msgSender{}
		}
		m.send[p], cur = s, s
	}
	h := &msgHeader{epoch: cur.epoch, keyID: cur.keyID, salt: cur.salt, counter: cur.next}
	cur.next++
	return cur.aead, h, nil
}

// sendFrame sends one sealed message frame to p and reads the status.
func (n *Node) sendFrame(ctx context.Context, p peer.ID, epoch uint64, frame []byte) error {
	ctx, cancel := context.WithTimeout(ctx, MessageTimeout)
	defer cancel()
	// A relayed (limited) connection will do (nat.go); a dial backoff does
	// not stand (dial.go).
	s, err := n.newStream(ctx, p, MessageProtocolID)
	if err != nil {
		if err = n.identityChanged(p, err); errors.Is(err, ErrIdentityChanged) {
			return err // one line of its own (identity.go)
		}
		return fmt.Errorf("open %s stream to %s: %w", MessageProtocolID, p, err)
	}
	if err := s.Scope().SetService(MessageServiceName); err != nil {
		s.Reset()
		return fmt.Errorf("attach to service %s: %w", MessageServiceName, err)
	}
	size := len(frame) + 16
	if err := s.Scope().ReserveMemory(size, network.ReservationPriorityAlways); err != nil {
		s.Reset()
		return fmt.Errorf("reserve %d bytes: %w", size, err)
	}
	defer s.Scope().ReleaseMemory(size)
	deadline, _ := ctx.Deadline()
	_ = s.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = s.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	fail := func(err error) error {
		s.Reset()
		// A refusal from the header comes as a reset (msgadmit.go); it may
		// cut the write short.
		if st, ok := statusFromReset(err); ok {
			return refusedBy(p, epoch, st)
		}
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		return fmt.Errorf("send message to %s: %w", p, err)
	}
	if _, err := s.Write(protocol.AppendFrame(nil, frame)); err != nil {
		return fail(err)
	}
	// A failed CloseWrite is not returned: go-libp2p's yamux stream returns
	// the muxer's own error type from CloseWrite (not *network.StreamError,
	// as from Read and Write), so a receiver's refusal that arrives just then
	// would lose its status. The read below meets the same reset with it.
	_ = s.CloseWrite()
	reply, err := protocol.NewFrameReader(s).ReadFrame(1)
	if err != nil {
		return fail(fmt.Errorf("read status: %w", err))
	}
	_ = s.Close()
	st := msgStatus(reply[0])
	if st == msgOK {
		return nil
	}
	return refusedBy(p, epoch, st)
}

// refusedBy is p's refusal, with status st, of a message under epoch.
func refusedBy(p peer.ID, epoch uint64, st msgStatus) error {
	reason, ok := msgStatusErrs[st]
	if !ok {
		reason = fmt.Errorf("%w: status %d", ErrMessageMalformed, st)
	}
	return &RefusedError{Peer: p, Epoch: epoch, Err: reason}
}

// handleMessageStream serves one inbound message. Nothing is reserved or
// allocated for the body before the header checked out (msgadmit.go).
func (n *Node) handleMessageStream(s network.Stream) {
	p := s.Conn().RemotePeer()
	gen := n.msg.forgetGen(p) // before the key is read
	act, ok := n.mayMessage(p)
	if act != nil {
		defer clear(act.Key[:]) // on every path: messageKey may return it as the key
	}
	if !ok {
		n.admit.msgNoSession.Add(1)
		log.Debugw("refusing message stream: no session with the peer", "peer", p)
		resetMessage(s, msgUnknownEpoch)
		return
	}
	if err := s.Scope().SetService(MessageServiceName); err != nil {
		log.Debugw("refusing message stream", "peer", p, "err", err)
		s.Reset()
		return
	}
	if err := s.SetDeadline(time.Now().Add(MessageTimeout)); err != nil {
		s.Reset()
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.answer(s, closedStatus)
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(n.ctx, MessageTimeout)
	defer cancel()

	h, raw, size, err := readMsgHeader(s, n.cfg.msg.maxFrame())
	if err != nil {
		if errors.Is(err, ErrMessageTooLarge) || errors.Is(err, ErrMessageMalformed) {
			n.admit.msgMalformed.Add(1)
			n.refuseHeader(s, p, 0, err)
			return
		}
		log.Debugw("reading message", "peer", p, "err", err)
		s.Reset()
		return
	}
	sess, minEpoch, err := n.checkMessageHeader(ctx, p, h, act)
	if err != nil {
		n.admit.msgRefusedHeader.Add(1)
		n.refuseHeader(s, p, h.epoch, err)
		return
	}
	defer clear(sess.Key[:])
	if hook := testHookMsgBody.Load(); hook != nil {
		(*hook)(p, size)
	}
	if err := s.Scope().ReserveMemory(size+msgReserveSlack, network.ReservationPriorityAlways); err != nil {
		log.Debugw("refusing message", "peer", p, "err", err)
		s.Reset()
		return
	}
	defer s.Scope().ReleaseMemory(size + msgReserveSlack)
	frame := make([]byte, size)
	copy(frame, raw[:])
	if _, err := io.ReadFull(s, frame[MessageHeaderSize:]); err != nil {
		log.Debugw("reading message", "peer", p, "err", err)
		s.Reset()
		return
	}
	n.awaitFresh(ctx, p, h.epoch)
	msg, err := n.openMessage(p, h, sess, minEpoch, gen, frame)
	if err == nil {
		err = n.keepMessage(ctx, msg) // msgkeep.go: the keeper, then subscribers
	}
	if err != nil {
		n.refuseMessage(s, p, h.epoch, err)
		return
	}
	n.answer(s, msgOK)
}

// refuseMessage answers a message with the status of err and reports it.
func (n *Node) refuseMessage(s network.Stream, p peer.ID, epoch uint64, err error) {
	log.Debugw("message refused", "peer", p, "epoch", epoch, "err", err)
	n.events.publish(Event{Time: time.Now(), Peer: p, Kind: EventMessageRefused,
		Err: fmt.Errorf("message from %s under epoch %d: %w", p, epoch, err)})
	n.answer(s, statusOf(err))
}

func (n *Node) answer(s network.Stream, st msgStatus) {
	if err := protocol.WriteFrames(s, [][]byte{{byte(st)}}); err != nil {
		s.Reset()
		return
	}
	_ = s.Close()
}

// openMessage authenticates a frame from p, whose header h checked out
// with session key sess (checkMessageHeader), and checks it against the
// replay window. The header is the frame's first bytes, read before the
// body: the key is not looked up again; gen is p's forgetGen from before it
// was read.
func (n *Node) openMessage(p peer.ID, h *msgHeader, sess *peerstore.SessionKey, minEpoch, gen uint64, frame []byte) (*Message, error) {
	if !n.msg.isFresh(p, h.epoch) {
		return nil, fmt.Errorf("%w: epoch %d was installed before this node started: its replay windows are gone",
			ErrEpochExpired, h.epoch)
	}
	sk := msgStreamKey{epoch: h.epoch, salt: h.salt}
	n.msg.mu.Lock()
	var st *msgStream
	if mp := n.msg.recv[p]; mp != nil {
		st = mp.streams[sk]
	}
	n.msg.mu.Unlock()
	var aead cipher.AEAD
	var err error
	if st != nil {
		aead = st.aead
	} else if aead, err = messageAEAD(sess, p, n.host.ID(), &h.salt); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessageInternal, err)
	}
	data, err := aead.Open(nil, msgNonce(h.counter), frame[MessageHeaderSize:], frame[:MessageHeaderSize])
	if err != nil {
		return nil, ErrMessageAuth
	}
	// Only an authenticated message creates or moves a window.
	if err := n.msg.accept(p, sk, aead, h.counter, minEpoch, gen); err != nil {
		return nil, err
	}
	return &Message{From: p, Epoch: h.epoch, KeyID: h.keyID, Data: data, Time: n.cfg.now()}, nil
}

// forgetGen returns how often the node forgot p so far.
func (m *messaging) forgetGen(p peer.ID) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forgotten[p]
}

// installed records that the node installed epoch for p (node.install):
// messages under it, and under later epochs, are accepted from now on.
func (m *messaging) installed(p peer.ID, epoch uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fresh == nil {
		m.fresh = map[peer.ID]uint64{}
	}
	if f, ok := m.fresh[p]; !ok || epoch < f {
		m.fresh[p] = epoch
	}
}

// awaitFresh waits, while epoch of p is not fresh, for the exchange with p
// in flight to end, as messageKey waits for an epoch above the active
// one: the exchange that installs an epoch records it as fresh just after
// its commit (install), so a message sent as soon as the peer's Exchange
// returned can find the new session in the store a moment before that.
// It only waits: openMessage decides.
func (n *Node) awaitFresh(ctx context.Context, p peer.ID, epoch uint64) {
	for waits := 0; waits < 3 && !n.msg.isFresh(p, epoch) && n.awaitExchange(ctx, p); waits++ {
	}
}

// isFresh reports whether the node installed epoch of p, or an earlier one,
// since it started.
func (m *messaging) isFresh(p peer.ID, epoch uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.fresh[p]
	return ok && epoch >= f
}

// accept marks counter in the window of (p, sk), creating it, and drops the
// windows of p's epochs below minEpoch. It refuses the message if the node
// forgot p since gen was read.
func (m *messaging) accept(p peer.ID, sk msgStreamKey, aead cipher.AEAD, counter, minEpoch, gen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forgotten[p] != gen {
		return fmt.Errorf("%w: the peer was forgotten while its message was read", ErrUnknownEpoch)
	}
	mp := m.recv[p]
	if mp == nil {
		if m.recv == nil {
			m.recv = map[peer.ID]*msgPeer{}
		}
		mp = &msgPeer{streams: map[msgStreamKey]*msgStream{}}
		m.recv[p] = mp
	}
	// Within the grace period minEpoch is 0 (the previous epoch, whichever
	// it is, is still accepted), yet the epochs below the previous one are
	// not. Every epoch with a window, and sk.epoch, was at most the active
	// one when its message passed the epoch check, so the second highest of
	// them is at most the previous epoch: everything below it is refused
	// anyway. Without this, a peer that exchanges and messages more often
	// than once per grace period left one window and AEAD per epoch behind
	// (about 1 KB each; tools/soak measured it).
	minEpoch = max(minEpoch, secondEpoch(mp.streams, sk.epoch))
	if minEpoch > mp.floor {
		mp.floor = minEpoch
		for k := range mp.streams {
			if k.epoch < minEpoch {
				delete(mp.streams, k)
			}
		}
	}
	if sk.epoch < mp.floor {
		return fmt.Errorf("%w: epoch %d", ErrEpochExpired, sk.epoch)
	}
	streams := mp.streams
	st := streams[sk]
	if st == nil {
		same := 0
		for k := range streams {
			if k.epoch == sk.epoch {
				same++
			}
		}
		if same >= msgMaxStreams {
			return ErrTooManyStreams
		}
		st = &msgStream{aead: aead}
		streams[sk] = st
	}
	if !st.win.accept(counter) {
		return fmt.Errorf("%w: counter %d", ErrReplay, counter)
	}
	return nil
}

// secondEpoch returns the second highest of the epochs of streams and e
// (counting each epoch once), or 0 if there is only one.
func secondEpoch(streams map[msgStreamKey]*msgStream, e uint64) uint64 {
	top, second := e, uint64(0)
	for k := range streams {
		switch {
		case k.epoch > top:
			top, second = k.epoch, top
		case k.epoch < top && k.epoch > second:
			second = k.epoch
		}
	}
	return second
}

// messageKey returns the session key of p's epoch if the node accepts
// messages under it, and the lowest epoch it accepts. An epoch above the
// active one waits for an exchange with p in flight. read is the active
// session as just read from the store, or nil: it is used (and then
// cleared or returned) if epoch is not above it, else the store is read.
func (n *Node) messageKey(ctx context.Context, p peer.ID, epoch uint64, read *peerstore.SessionKey) (*peerstore.SessionKey, uint64, error) {
	for waits := 0; ; waits++ {
		act, err := read, error(nil)
		read = nil
		if act == nil || epoch > act.Epoch {
			if act != nil {
				clear(act.Key[:])
			}
			if act, err = n.store.ActiveSession(p); err != nil && !errors.Is(err, peerstore.ErrNotFound) {
				return nil, 0, fmt.Errorf("%w: read session: %v", ErrMessageInternal, err)
			}
		}
		if act != nil && epoch <= act.Epoch {
			return n.acceptedKey(p, act, epoch)
		}
		if act != nil {
			clear(act.Key[:])
		}
		if waits == 3 || !n.awaitExchange(ctx, p) {
			return nil, 0, ErrUnknownEpoch
		}
	}
}

// awaitExchange waits for the exchange with p in flight to end, and
// reports whether one did: false if none was in flight, or ctx ended
// first.
func (n *Node) awaitExchange(ctx context.Context, p peer.ID) bool {
	n.mu.Lock()
	sl := n.slots[p]
	n.mu.Unlock()
	if sl == nil {
		return false
	}
	select {
	case <-sl.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// acceptedKey applies the epoch rules to epoch <= act.Epoch.
func (n *Node) acceptedKey(p peer.ID, act *peerstore.SessionKey, epoch uint64) (*peerstore.SessionKey, uint64, error) {
	if epoch == act.Epoch {
		min := act.Epoch
		if n.cfg.now().Sub(act.Created) < n.cfg.msg.graceTime() {
			// The previous epoch, whichever it is (epochs may skip), is
			// still accepted: keep its windows.
			min = 0
		}
		return act, min, nil
	}
	clear(act.Key[:])
	if n.cfg.now().Sub(act.Created) >= n.cfg.msg.graceTime() {
		return nil, 0, fmt.Errorf("%w: epoch %d, active %d installed %v ago", ErrEpochExpired,
			epoch, act.Epoch, n.cfg.now().Sub(act.Created).Round(time.Millisecond))
	}
	all, err := n.store.Sessions(p)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: read sessions: %v", ErrMessageInternal, err)
	}
	var prev *peerstore.SessionKey
	for i := range all {
		if all[i].Epoch < act.Epoch && (prev == nil || all[i].Epoch > prev.Epoch) {
			prev = &all[i]
		}
	}
	var out *peerstore.SessionKey
	if prev != nil && prev.Epoch == epoch {
		k := *prev
		out = &k
	}
	for i := range all {
		clear(all[i].Key[:])
	}
	if out == nil {
		return nil, 0, fmt.Errorf("%w: epoch %d, active %d", ErrEpochExpired, epoch, act.Epoch)
	}
	return out, out.Epoch, nil
}

// Messages returns a channel of the messages the node receives and a
// function that ends the subscription. The channel is closed when the
// subscription ends or the node closes. buffer <= 0 means
// DefaultSubscriptionBuffer.
//
// A message is delivered to every subscriber; a full subscriber is waited
// for (up to MessageTimeout, which also holds back other messages). The
// sender's Send succeeds once one subscriber took it; a node without
// subscribers (and without a keeper: WithMessageKeeper) refuses messages
// with ErrNotDelivered.
func (n *Node) Messages(buffer int) (<-chan Message, func()) {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	m := &n.msg
	sub := &msgSub{ch: make(chan Message, buffer), done: make(chan struct{})}
	sub.stop = sync.OnceFunc(func() { close(sub.done) })
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	if m.subsClosed {
		close(sub.ch)
		return sub.ch, func() {}
	}
	if m.subs == nil {
		m.subs = map[*msgSub]struct{}{}
	}
	m.subs[sub] = struct{}{}
	return sub.ch, func() {
		sub.stop() // wakes a delivery waiting on this subscriber
		m.subsMu.Lock()
		defer m.subsMu.Unlock()
		if _, ok := m.subs[sub]; ok {
			delete(m.subs, sub)
			close(sub.ch)
		}
	}
}

// deliver hands msg to every subscriber.
func (m *messaging) deliver(ctx context.Context, msg *Message) error {
	m.subsMu.RLock()
	defer m.subsMu.RUnlock()
	delivered := false
	first := true
	for sub := range m.subs {
		c := *msg
		if !first {
			c.Data = append([]byte(nil), msg.Data...)
		}
		first = false
		select {
		case sub.ch <- c:
			delivered = true
		case <-sub.done:
		case <-ctx.Done():
			if delivered {
				return nil
			}
			return ErrNotDelivered
		}
	}
	if !delivered {
		return ErrNotDelivered
	}
	return nil
}

// close ends every subscription. The node calls it after its handlers ended.
func (m *messaging) close() {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	m.subsClosed = true
	for sub := range m.subs {
		sub.stop()
		close(sub.ch)
	}
	m.subs = nil
	m.mu.Lock()
	m.send, m.recv = nil, nil
	m.mu.Unlock()
}

// replayWindow remembers which of the last msgWindow counters were seen, as
// a ring of bits indexed by counter mod msgWindow (RFC 6479's idea without
// its block optimisation).
type replayWindow struct {
	top  uint64 // highest counter seen + 1; 0 before the first
	bits [msgWindow / 64]uint64
}

// accept marks c as seen; false if it was seen or is older than the window.
func (w *replayWindow) accept(c uint64) bool {
	if c == ^uint64(0) {
		return false // would overflow top; a sender never gets there
	}
	if c >= w.top {
		if gap := c + 1 - w.top; gap >= msgWindow {
			clear(w.bits[:])
		} else {
			for x := w.top; x <= c; x++ {
				w.clearBit(x)
			}
		}
		w.top = c + 1
		w.setBit(c)
		return true
	}
	if w.top-c > msgWindow {
		return false
	}
	if w.bits[(c%msgWindow)/64]&(1<<(c%64)) != 0 {
		return false
	}
	w.setBit(c)
	return true
}

func (w *replayWindow) setBit(c uint64)   { w.bits[(c%msgWindow)/64] |= 1 << (c % 64) }
func (w *replayWindow) clearBit(c uint64) { w.bits[(c%msgWindow)/64] &^= 1 << (c % 64) }
