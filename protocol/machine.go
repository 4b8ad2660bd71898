package protocol

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// MaxEpoch bounds every epoch.
const MaxEpoch = 1 << 48

// MaxEpochAhead bounds how far a peer's epoch proposal may run ahead of
// ours, so that a hostile peer cannot push a node's epochs to the end of
// their range: that would take MaxEpoch/MaxEpochAhead (2^28) exchanges.
const MaxEpochAhead = 1 << 20

// Config is what a Machine needs to know before the exchange starts.
type Config struct {
	// Role of this side.
	Role Role
	// Identity is this node's libp2p identity key; it signs the key part.
	Identity crypto.PrivKey
	// Remote is the peer, as authenticated by the secure channel.
	Remote peer.ID
	// RemoteKey is the remote identity key as authenticated by the secure
	// channel. When nil it is extracted from Remote (which works for
	// Ed25519, secp256k1 and ECDSA peer IDs, not RSA). NewMachine refuses a
	// key whose peer ID is not Remote: the part's signature is checked
	// under this key, so it must be the named peer's.
	RemoteKey crypto.PubKey
	// Own is this node's current exchange key.
	Own *ExchangeKey
	// Known is the remote peer's record this node holds, or nil. An
	// expired one is not offered in phase 1 (the peer sends its current
	// record), but a received record is still ordered against it
	// (RelateRecords): a rollback stays a rollback after the held record
	// expired.
	Known *PeerRecord
	// Suites this side accepts, most preferred first. Default DefaultSuites.
	// An initiator offers them in this order (those its exchange key
	// covers). A responder answers with the first offered suite its record
	// has a key for, as the initiator checks (ErrDowngrade); if this list
	// excludes that suite, it refuses with ErrNoCommonSuite rather than
	// choosing a later one. Own's record should therefore have keys for
	// exactly these suites.
	Suites []Suite
	// NoticeSize is the largest notice this side accepts and asks for.
	// Default DefaultNoticeSize.
	NoticeSize int
	// Epoch is the epoch this side would install next (its active epoch
	// plus one); the exchange installs the larger of both sides' values.
	Epoch uint64
	// Accept is the trust policy for a record received in phase 2; known is
	// Config.Known (expired or not), nil on first contact. It sees only a
	// record that passed every other check: a first record, a rotation, or
	// a reset (RelateRecords; a rollback is refused before). An error
	// refuses the record. Nil accepts.
	Accept func(remote peer.ID, known, received *PeerRecord) error
	// Trace, when set, is called synchronously with every event.
	Trace func(Event)
	// Rand is the source of nonces and key parts. Default crypto/rand.
	Rand io.Reader
	// Now is the clock for record validity. Default time.Now.
	Now func() time.Time
}

// Phase of an exchange.
type Phase uint8

const (
	PhaseNone Phase = iota
	Phase1
	Phase2
	Phase3
	PhaseDone
)

func (p Phase) String() string {
	switch p {
	case Phase1:
		return "phase 1"
	case Phase2:
		return "phase 2"
	case Phase3:
		return "phase 3"
	case PhaseDone:
		return "done"
	}
	return "not started"
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	EventPhaseEntered EventKind = iota + 1
	EventPhaseLeft
	EventNoticeSent
	EventNoticeReceived
)

func (k EventKind) String() string {
	switch k {
	case EventPhaseEntered:
		return "phase-entered"
	case EventPhaseLeft:
		return "phase-left"
	case EventNoticeSent:
		return "notice-sent"
	case EventNoticeReceived:
		return "notice-received"
	}
	return "event"
}

// Event is one step of an exchange, for progress display and metrics.
type Event struct {
	Kind   EventKind
	Role   Role
	Phase  Phase
	Notice pb.Notice_Type // for notice events
	Size   int            // frame size, for notice events
	// For EventPhaseEntered of Phase2: which records will travel.
	SendOwn, ReceivePeer bool
}

// Frame is one notice to send. Its Bytes are the caller's, to keep or drop.
type Frame struct {
	Type  pb.Notice_Type
	Bytes []byte
	// buf is the pooled buffer (pool.go) Bytes live in, or nil. Run, which
	// drops the frames as soon as it wrote them, gives it back
	// (releaseFrames); another caller's frames go to the collector.
	buf *[]byte
}

// releaseFrames returns the pooled buffers of frames the caller has
// written and keeps no slice of.
func releaseFrames(out []Frame) {
	for i := range out {
		putBuf(out[i].buf)
		out[i].buf, out[i].Bytes = nil, nil
	}
}

// Result is a finished exchange.
type Result struct {
	Remote peer.ID
	Role   Role
	Suite  Suite
	Epoch  uint64
	Key    [KeySize]byte
	KeyID  [KeyIDSize]byte
	// InitiatorKeySent and ResponderKeySent tell which records phase 2
	// carried.
	InitiatorKeySent, ResponderKeySent bool
	// NoticeSize is the negotiated notice size.
	NoticeSize int
	// PeerRecord is the remote record the part was sealed to; Received says
	// whether it arrived in this exchange (and must be stored).
	PeerRecord *PeerRecord
	Received   bool
}

// Wipe zeroes the session key held in r.
func (r *Result) Wipe() { clear(r.Key[:]) }

type state uint8

const (
	stNew           state = iota // initiator before Start, responder before START
	stAwaitContinue              // initiator
	stAwaitNext                  // responder
	stPhase2
	stPhase3
	stDone
	stFailed
)

// Machine is the exchange of one side, without I/O. Start (initiator) and
// Consume turn frames into frames; a frame Consume rejects leaves the
// machine exactly as it was. A Machine is not safe for concurrent use.
type Machine struct {
	cfg    Config
	local  peer.ID
	role   Role
	state  state
	tr     transcript
	suite  Suite
	notice int // negotiated notice size; 0 before
	epoch  uint64

	nonce      [NonceSize]byte
	part       [PartSize]byte
	commit     [CommitmentSize]byte
	peerCommit [CommitmentSize]byte
	sentFP     bool // we sent a fingerprint of the peer's record in phase 1

	// held is Config.Known even if expired, for ordering a received
	// record against it (validateRecord); cfg.Known is nil once expired.
	held *PeerRecord
	// choose, when set (internal/hooks, for protocoltest only), replaces
	// the responder's choice of suite among the common ones.
	choose func(common []uint16) uint16

	sendKey, recvKey   bool // phase 2 plan
	keyAcked, keyGot   bool // phase 2 progress
	peerRecord         *PeerRecord
	received           bool
	keyAsm, partAsm    reassembly
	t2, t3             [32]byte
	secrets            *sessionSecrets
	initSent, respSent bool
	err                error

	// in is the notice being consumed (decode) and out the one being sent
	// (send), reused for every notice and reset after each: a *pb.Notice
	// escapes to the heap, since proto takes it as an interface.
	in, out pb.Notice
}

// NewMachine checks cfg and returns a machine in its initial state.
func NewMachine(cfg Config) (*Machine, error) {
	if cfg.Role != Initiator && cfg.Role != Responder {
		return nil, errors.New("protocol: invalid role")
	}
	if cfg.Identity == nil || cfg.Own == nil {
		return nil, errors.New("protocol: identity and exchange key are required")
	}
	// The exchange key knows the identity key it was made or loaded with:
	// the same key is Own.Peer's without deriving the peer ID again (a
	// marshalling and a multihash per exchange).
	var err error
	local := cfg.Own.Peer
	if cfg.Own.identity == nil || !cfg.Own.identity.Equals(cfg.Identity) {
		id, err := peer.IDFromPrivateKey(cfg.Identity)
		if err != nil {
			return nil, fmt.Errorf("protocol: identity: %w", err)
		}
		if cfg.Own.Peer != id {
			return nil, errors.New("protocol: exchange key belongs to another identity")
		}
	}
	if cfg.Remote == "" || cfg.Remote == local {
		return nil, errors.New("protocol: invalid remote peer")
	}
	if cfg.RemoteKey == nil {
		if cfg.RemoteKey, err = cfg.Remote.ExtractPublicKey(); err != nil {
			return nil, fmt.Errorf("protocol: remote identity key: %w", err)
		}
	} else if id, err := peer.IDFromPublicKey(cfg.RemoteKey); err != nil || id != cfg.Remote {
		return nil, fmt.Errorf("protocol: the remote identity key is not that of %s", cfg.Remote)
	}
	if cfg.Known != nil && cfg.Known.Peer != cfg.Remote {
		return nil, errors.New("protocol: known record belongs to another peer")
	}
	if len(cfg.Suites) == 0 {
		cfg.Suites = DefaultSuites()
	}
	// Offer only suites we hold a key for.
	var suites []Suite
	for _, s := range cfg.Suites {
		if _, ok := cfg.Own.private[s]; ok && s.Known() && !slices.Contains(suites, s) {
			suites = append(suites, s)
		}
	}
	if len(suites) == 0 {
		return nil, fmt.Errorf("protocol: %w: the exchange key covers none of %v", ErrMissingKey, cfg.Suites)
	}
	cfg.Suites = suites
	if cfg.NoticeSize == 0 {
		cfg.NoticeSize = DefaultNoticeSize
	}
	if cfg.NoticeSize < MinNoticeSize || cfg.NoticeSize > MaxNoticeSize {
		return nil, fmt.Errorf("protocol: notice size %d outside [%d, %d]", cfg.NoticeSize, MinNoticeSize, MaxNoticeSize)
	}
	if cfg.Epoch == 0 || cfg.Epoch > MaxEpoch {
		return nil, fmt.Errorf("protocol: epoch %d outside [1, %d]", cfg.Epoch, uint64(MaxEpoch))
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	now := cfg.Now()
	if !now.Before(cfg.Own.Expires) {
		return nil, fmt.Errorf("protocol: own exchange-key record expired at %s: rotate first", cfg.Own.Expires.UTC().Format(time.RFC3339))
	}
	held := cfg.Known
	if cfg.Known != nil && !now.Before(cfg.Known.Expires) {
		cfg.Known = nil // an expired record counts as missing: phase 2 fetches the current one
	}
	m := &Machine{cfg: cfg, local: local, role: cfg.Role, held: held}
	m.keyAsm.max = MaxRecordSize
	m.partAsm.max = MaxSealedPartSize
	if cfg.Role == Initiator {
		m.tr = newTranscript(local, cfg.Remote)
	} else {
		m.tr = newTranscript(cfg.Remote, local)
	}
	return m, nil
}

// Role returns the machine's role.
func (m *Machine) Role() Role { return m.role }

// Phase returns the phase the machine is in.
func (m *Machine) Phase() Phase {
	switch m.state {
	case stNew:
		if m.role == Responder {
			return Phase1
		}
		return PhaseNone
	case stAwaitContinue, stAwaitNext:
		return Phase1
	case stPhase2:
		return Phase2
	case stPhase3:
		return Phase3
	case stDone:
		return PhaseDone
	}
	return PhaseNone
}

// Done reports whether the exchange finished successfully.
func (m *Machine) Done() bool { return m.state == stDone }

// Err returns the error that ended the machine, if any.
func (m *Machine) Err() error { return m.err }

// MaxFrame is the largest frame the machine accepts next: the negotiated
// notice size, or before negotiation this side's own.
func (m *Machine) MaxFrame() int {
	if m.notice != 0 {
		return m.notice
	}
	return m.cfg.NoticeSize
}

// Result returns the finished exchange, or nil before it is done. The
// result holds the session key: call Wipe on the machine once the key is
// stored.
func (m *Machine) Result() *Result {
	if m.state != stDone {
		return nil
	}
	r := &Result{
		Remote:           m.cfg.Remote,
		Role:             m.role,
		Suite:            m.suite,
		Epoch:            m.epoch,
		KeyID:            m.secrets.id,
		NoticeSize:       m.notice,
		PeerRecord:       m.peerRecord,
		Received:         m.received,
		InitiatorKeySent: m.initSent,
		ResponderKeySent: m.respSent,
	}
	r.Key = m.secrets.key
	return r
}

// Fail ends the machine with err (a local failure, a timeout, a reset) and
// returns the ABORT frame to send, if one should be sent.
func (m *Machine) Fail(err error) *Frame {
	if m.state == stDone || m.state == stFailed {
		return nil
	}
	m.fail(err)
	var ae *AbortError
	if errors.As(err, &ae) {
		return nil // the peer already gave up
	}
	b, mErr := proto.Marshal(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: StatusOf(err)}})
	if mErr != nil {
		return nil
	}
	m.emit(Event{Kind: EventNoticeSent, Notice: pb.Notice_ABORT, Size: len(b)})
	return &Frame{Type: pb.Notice_ABORT, Bytes: b}
}

func (m *Machine) fail(err error) {
	m.state = stFailed
	m.err = err
	m.wipe()
	m.keyAsm.release()
	m.partAsm.release()
}

// Wipe zeroes the secrets the machine holds (key part, session key,
// confirmation keys). Result returns nil afterwards.
func (m *Machine) Wipe() {
	m.wipe()
	if m.state == stDone {
		m.state = stFailed
		m.err = ErrDone
	}
}

func (m *Machine) wipe() {
	clear(m.part[:])
	if m.secrets != nil {
		m.secrets.wipe()
	}
}

func (m *Machine) emit(e Event) {
	if m.cfg.Trace == nil {
		return
	}
	e.Role = m.role
	if e.Phase == PhaseNone {
		e.Phase = m.Phase()
	}
	m.cfg.Trace(e)
}

// Start begins the exchange as initiator: phase 1, step 1 (START).
func (m *Machine) Start() ([]Frame, error) {
	if m.role != Initiator || m.state != stNew {
		return nil, fmt.Errorf("%w: Start on a %v machine in state %d", ErrUnexpected, m.role, m.state)
	}
	if err := m.newSecrets(); err != nil {
		m.fail(err)
		return nil, err
	}
	start := &pb.Start{
		Version:    Version,
		Nonce:      m.nonce[:],
		Commitment: m.commit[:],
		NoticeSize: uint32(m.cfg.NoticeSize),
		Epoch:      m.cfg.Epoch,
	}
	for _, s := range m.cfg.Suites {
		start.Suites = append(start.Suites, uint32(s))
	}
	if k := m.cfg.Known; k != nil {
		start.KeyFingerprint = k.Fingerprint[:]
		m.sentFP = true
	}
	m.state = stAwaitContinue
	m.emit(Event{Kind: EventPhaseEntered, Phase: Phase1})
	m.out.Start = start
	f, err := m.send(pb.Notice_START)
	if err != nil {
		m.fail(err)
		return nil, err
	}
	return []Frame{f}, nil
}

// newSecrets draws the nonce and key part and commits to the part.
func (m *Machine) newSecrets() error {
	if _, err := io.ReadFull(m.cfg.Rand, m.nonce[:]); err != nil {
		return fmt.Errorf("random nonce: %w", err)
	}
	if _, err := io.ReadFull(m.cfg.Rand, m.part[:]); err != nil {
		return fmt.Errorf("random part: %w", err)
	}
	m.commit = commitment(m.role, &m.part)
	return nil
}

// send marshals m.out, whose body of type t the caller has set, absorbs it
// into the transcript as ours and reports it. m.out is reset.
func (m *Machine) send(t pb.Notice_Type) (Frame, error) {
	f, err := m.marshalOut(t)
	if err != nil {
		return Frame{}, err
	}
	if limit := m.MaxFrame(); len(f.Bytes) > limit {
		putBuf(f.buf)
		return Frame{}, fmt.Errorf("own %v notice is %d bytes, notice size %d", t, len(f.Bytes), limit)
	}
	m.tr.absorb(m.role, f.Bytes)
	m.emit(Event{Kind: EventNoticeSent, Notice: t, Size: len(f.Bytes)})
	return f, nil
}

// marshalOut marshals m.out as a notice of type t and resets it. The bytes
// are the frame: the caller keeps them. They live in a pooled buffer when
// they fit one (Frame.buf), which Run gives back once it wrote them: a
// notice is written and dropped at once, and the machine keeps nothing of
// it (the transcript hashed it).
func (m *Machine) marshalOut(t pb.Notice_Type) (Frame, error) {
	defer m.out.Reset()
	m.out.Type = t
	bp := getBuf()
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend((*bp)[:0], &m.out)
	if err != nil || cap(b) != pooledBuf {
		// Failed, or grown into an array of its own: the pooled one is
		// unused.
		putBuf(bp)
		bp = nil
	}
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: t, Bytes: b, buf: bp}, nil
}

// sendChunks sends item in notices of type t, cut as split cuts it, and
// appends their frames to out.
func (m *Machine) sendChunks(out []Frame, t pb.Notice_Type, item []byte) ([]Frame, error) {
	per, count := chunking(len(item), m.notice)
	out = slices.Grow(out, count)
	c := &pb.Chunk{Count: uint32(count)}
	for i := range count {
		c.Index = uint32(i)
		c.Data = item[i*per : min((i+1)*per, len(item))]
		m.out.Chunk = c
		f, err := m.send(t)
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
	return out, nil
}

// decode parses a frame into m.in and checks that exactly the body of its
// type is set. The caller resets m.in once done with the notice.
func (m *Machine) decode(frame []byte) (*pb.Notice, error) {
	if len(frame) > m.MaxFrame() {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(frame), m.MaxFrame())
	}
	n := &m.in
	if err := proto.Unmarshal(frame, n); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	bodies := 0
	for _, set := range []bool{n.Start != nil, n.Continue != nil, n.Next != nil, n.Chunk != nil,
		n.KeyReceived != nil, n.PartReceived != nil, n.Abort != nil} {
		if set {
			bodies++
		}
	}
	var ok bool
	switch n.Type {
	case pb.Notice_START:
		ok = n.Start != nil
	case pb.Notice_CONTINUE:
		ok = n.Continue != nil
	case pb.Notice_NEXT:
		ok = n.Next != nil
	case pb.Notice_KEY, pb.Notice_PART:
		ok = n.Chunk != nil
	case pb.Notice_KEY_RECEIVED:
		ok = n.KeyReceived != nil
	case pb.Notice_PART_RECEIVED:
		ok = n.PartReceived != nil
	case pb.Notice_ABORT:
		ok = n.Abort != nil
	default:
		return nil, fmt.Errorf("%w: unknown notice type %d", ErrMalformed, int32(n.Type))
	}
	if !ok || bodies != 1 {
		return nil, fmt.Errorf("%w: %v notice with the wrong body", ErrUnexpected, n.Type)
	}
	return n, nil
}

// Consume takes one frame from the peer and returns the frames to send in
// answer. On error the machine is unchanged (the caller aborts with Fail),
// except for ABORT from the peer, which ends it.
func (m *Machine) Consume(frame []byte) ([]Frame, error) {
	if m.state == stDone || m.state == stFailed {
		return nil, ErrDone
	}
	// Nothing of the notice is kept (what is, is copied), nor of frame.
	defer m.in.Reset()
	n, err := m.decode(frame)
	if err != nil {
		return nil, err
	}
	// The table (table.go) decides whether the notice is acceptable here.
	row := m.lookup(n.Type)
	if row == nil {
		return nil, fmt.Errorf("%w: %v in %v", ErrUnexpected, n.Type, m.Phase())
	}
	out, err := row.handle(m, frame, n)
	if err != nil {
		if out != nil {
			// Failed after the notice was accepted: a local error.
			m.fail(err)
		}
		return nil, err
	}
	if !row.leads(m.state) {
		err := fmt.Errorf("protocol: internal error: %v in %v led to %v", n.Type, row.from, m.state)
		m.fail(err)
		return nil, err
	}
	return out, nil
}

// consumeAbort ends the machine: the peer gave up.
func (m *Machine) consumeAbort(frame []byte, n *pb.Notice) ([]Frame, error) {
	err := &AbortError{Status: n.Abort.Status}
	m.emit(Event{Kind: EventNoticeReceived, Notice: n.Type, Size: len(frame)})
	m.fail(err)
	return nil, err
}

// received reports an accepted notice (the transcript already has it).
func (m *Machine) receivedEvent(t pb.Notice_Type, size int) {
	m.emit(Event{Kind: EventNoticeReceived, Notice: t, Size: size})
}

func checkLen(what string, b []byte, n int) error {
	if len(b) != n {
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrMalformed, what, len(b), n)
	}
	return nil
}

// optionalFingerprint parses b, which may be empty: ok says whether it was not.
func optionalFingerprint(b []byte) (f Fingerprint, ok bool, err error) {
	if len(b) == 0 {
		return f, false, nil
	}
	f, err = ParseFingerprint(b)
	return f, err == nil, err
}

// checkEpoch validates a peer's epoch proposal against our own. A proposal
// may run ahead of ours (the peer may have installed keys we missed), but
// not by more than MaxEpochAhead: otherwise one hostile exchange could push
// our epochs for that peer to the end of their range.
func checkEpoch(e, own uint64) error {
	if e == 0 || e > MaxEpoch {
		return fmt.Errorf("%w: epoch %d", ErrMalformed, e)
	}
	if e > own && e-own > MaxEpochAhead {
		return fmt.Errorf("%w: epoch %d is more than %d ahead of %d", ErrMalformed, e, MaxEpochAhead, own)
	}
	return nil
}

// consumeStart is phase 1, step 2 (responder): check the fingerprint of our
// record, choose suite and notice size, answer CONTINUE.
func (m *Machine) consumeStart(frame []byte, s *pb.Start) ([]Frame, error) {
	if s.Version != Version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, s.Version)
	}
	if err := checkLen("nonce", s.Nonce, NonceSize); err != nil {
		return nil, err
	}
	if err := checkLen("commitment", s.Commitment, CommitmentSize); err != nil {
		return nil, err
	}
	if err := checkEpoch(s.Epoch, m.cfg.Epoch); err != nil {
		return nil, err
	}
	if s.NoticeSize < MinNoticeSize || s.NoticeSize > MaxNoticeSize {
		return nil, fmt.Errorf("%w: %d", ErrNoticeSize, s.NoticeSize)
	}
	if len(s.Suites) == 0 || len(s.Suites) > 16 {
		return nil, fmt.Errorf("%w: %d suites offered", ErrMalformed, len(s.Suites))
	}
	fp, hasFP, err := optionalFingerprint(s.KeyFingerprint)
	if err != nil {
		return nil, err
	}
	suite, err := m.chooseSuite(s.Suites)
	if err != nil {
		return nil, err
	}
	// Accepted: from here on nothing the peer sent can fail.
	if err := m.newSecrets(); err != nil {
		m.fail(err)
		return nil, err
	}
	m.emit(Event{Kind: EventPhaseEntered, Phase: Phase1})
	m.tr.absorb(Initiator, frame)
	m.receivedEvent(pb.Notice_START, len(frame))
	m.suite = suite
	m.notice = min(int(s.NoticeSize), m.cfg.NoticeSize)
	m.epoch = max(s.Epoch, m.cfg.Epoch)
	copy(m.peerCommit[:], s.Commitment)
	matched := hasFP && fp.Equal(m.cfg.Own.Fingerprint)
	m.sendKey = !matched
	c := &pb.Continue{
		Nonce:      m.nonce[:],
		Suite:      uint32(suite),
		KeyMatched: matched,
		Commitment: m.commit[:],
		NoticeSize: uint32(m.notice),
		Epoch:      m.cfg.Epoch,
	}
	if k := m.cfg.Known; k != nil && k.Keys[suite] != nil {
		c.KeyFingerprint = k.Fingerprint[:]
		m.sentFP = true
	}
	m.state = stAwaitNext
	m.out.Continue = c
	f, err := m.send(pb.Notice_CONTINUE)
	if err != nil {
		return []Frame{}, err
	}
	return []Frame{f}, nil
}

// chooseSuite is the responder's choice of suite (section 6): the first
// offered suite its record has a key for, which is what the initiator
// expects (checkSuiteChoice). If this side no longer accepts that suite
// (Config.Suites excludes it), choosing a later one would look like a
// downgrade to the initiator: it refuses instead.
func (m *Machine) chooseSuite(offered []uint32) (Suite, error) {
	var common []uint16
	for _, o := range offered {
		if o > 0xffff || m.cfg.Own.Keys[Suite(o)] == nil || slices.Contains(common, uint16(o)) {
			continue
		}
		if !slices.Contains(m.cfg.Suites, Suite(o)) {
			if len(common) == 0 && m.choose == nil {
				return 0, fmt.Errorf("%w: the initiator prefers %v, which our record has but this side does not accept (rotate the exchange key)", ErrNoCommonSuite, Suite(o))
			}
			continue
		}
		common = append(common, uint16(o))
	}
	if len(common) == 0 {
		return 0, fmt.Errorf("%w: offered %v", ErrNoCommonSuite, offered)
	}
	if m.choose != nil {
		c := m.choose(common)
		if !slices.Contains(common, c) {
			return 0, fmt.Errorf("protocol: suite chooser returned %d, not one of %v", c, common)
		}
		return Suite(c), nil
	}
	return Suite(common[0]), nil
}

// checkSuiteChoice is the initiator's check of the responder's choice
// against the responder's record rec (section 6, rule V52): the suite must
// be the first offered one that rec has a key for. Anything else is a
// downgrade, by the responder or by whoever changed the offer it saw.
func (m *Machine) checkSuiteChoice(rec *PeerRecord, chosen Suite) error {
	for _, s := range m.cfg.Suites {
		if rec.Keys[s] != nil {
			if s == chosen {
				return nil
			}
			return fmt.Errorf("%w: responder chose %v, but its record (sequence %d) has %v, which we prefer", ErrDowngrade, chosen, rec.Seq, s)
		}
	}
	return fmt.Errorf("%w: responder chose %v, which its record (sequence %d) has no key for", ErrDowngrade, chosen, rec.Seq)
}

// consumeContinue is phase 1, step 3 (initiator): check the fingerprint of
// our record, answer NEXT and enter phase 2 or 3.
func (m *Machine) consumeContinue(frame []byte, c *pb.Continue) ([]Frame, error) {
	if err := checkLen("nonce", c.Nonce, NonceSize); err != nil {
		return nil, err
	}
	if err := checkLen("commitment", c.Commitment, CommitmentSize); err != nil {
		return nil, err
	}
	if err := checkEpoch(c.Epoch, m.cfg.Epoch); err != nil {
		return nil, err
	}
	if c.NoticeSize < MinNoticeSize || int(c.NoticeSize) > m.cfg.NoticeSize {
		return nil, fmt.Errorf("%w: %d, offered %d", ErrNoticeSize, c.NoticeSize, m.cfg.NoticeSize)
	}
	if c.Suite > 0xffff || !slices.Contains(m.cfg.Suites, Suite(c.Suite)) {
		return nil, fmt.Errorf("%w: responder chose %d, not offered", ErrNoCommonSuite, c.Suite)
	}
	suite := Suite(c.Suite)
	if c.KeyMatched && (!m.sentFP || m.cfg.Known.Keys[suite] == nil) {
		return nil, fmt.Errorf("%w: responder claims a fingerprint match for a record we do not hold", ErrFingerprint)
	}
	// The held record is the responder's current one: its choice can be
	// checked now. Otherwise its current record arrives in phase 2 and is
	// checked there (validateRecord), before anything uses it; a held
	// record the responder has rotated away from says nothing about the
	// suites it has now.
	if c.KeyMatched {
		if err := m.checkSuiteChoice(m.cfg.Known, suite); err != nil {
			return nil, err
		}
	}
	if subtle.ConstantTimeCompare(c.Commitment, m.commit[:]) == 1 {
		return nil, fmt.Errorf("%w: responder echoed our commitment", ErrCommitment)
	}
	fp, hasFP, err := optionalFingerprint(c.KeyFingerprint)
	if err != nil {
		return nil, err
	}
	// Accepted.
	m.tr.absorb(Responder, frame)
	m.receivedEvent(pb.Notice_CONTINUE, len(frame))
	m.suite = suite
	m.notice = int(c.NoticeSize)
	m.epoch = max(c.Epoch, m.cfg.Epoch)
	copy(m.peerCommit[:], c.Commitment)
	matched := hasFP && fp.Equal(m.cfg.Own.Fingerprint)
	m.sendKey = !matched
	m.recvKey = !c.KeyMatched
	if !m.recvKey {
		m.peerRecord = m.cfg.Known
	}
	m.out.Next = &pb.Next{KeyMatched: matched}
	f, err := m.send(pb.Notice_NEXT)
	if err != nil {
		return []Frame{}, err
	}
	return m.enterPhase2([]Frame{f})
}

// consumeNext is phase 1, step 4 (responder): learn whether our record must
// travel and enter phase 2 or 3.
func (m *Machine) consumeNext(frame []byte, n *pb.Next) ([]Frame, error) {
	if n.KeyMatched && !m.sentFP {
		return nil, fmt.Errorf("%w: initiator claims a fingerprint match for a record we do not hold", ErrFingerprint)
	}
	m.tr.absorb(Initiator, frame)
	m.receivedEvent(pb.Notice_NEXT, len(frame))
	m.recvKey = !n.KeyMatched
	if !m.recvKey {
		m.peerRecord = m.cfg.Known
	}
	return m.enterPhase2([]Frame{})
}

// enterPhase2 closes phase 1 and runs phase 2, step 1: send our record if it
// is missing or stale at the peer. It appends the frames to send to out.
func (m *Machine) enterPhase2(out []Frame) ([]Frame, error) {
	m.emit(Event{Kind: EventPhaseLeft, Phase: Phase1})
	m.tr.checkpoint(stagePhase1)
	if m.role == Initiator {
		m.initSent, m.respSent = m.sendKey, m.recvKey
	} else {
		m.initSent, m.respSent = m.recvKey, m.sendKey
	}
	m.state = stPhase2
	m.emit(Event{Kind: EventPhaseEntered, Phase: Phase2, SendOwn: m.sendKey, ReceivePeer: m.recvKey})
	if m.sendKey {
		var err error
		if out, err = m.sendChunks(out, pb.Notice_KEY, m.cfg.Own.Envelope); err != nil {
			return out, err
		}
	}
	return m.maybePhase3(out)
}

// consumeKey is phase 2, step 2: collect the peer's record; when complete,
// validate and import it and confirm receipt with KEY_RECEIVED.
func (m *Machine) consumeKey(frame []byte, c *pb.Chunk) ([]Frame, error) {
	item, err := m.keyAsm.check(c)
	if err != nil {
		return nil, err
	}
	if item == nil {
		m.acceptChunk(&m.keyAsm, pb.Notice_KEY, c, frame)
		return []Frame{}, nil
	}
	rec, err := m.validateRecord(item)
	if err != nil {
		return nil, err
	}
	m.acceptChunk(&m.keyAsm, pb.Notice_KEY, c, frame)
	m.keyAsm.release() // item is not used below: rec holds copies
	m.keyGot = true
	m.peerRecord = rec
	m.received = true
	m.out.KeyReceived = &pb.KeyReceived{Fingerprint: rec.Fingerprint[:]}
	f, err := m.send(pb.Notice_KEY_RECEIVED)
	if err != nil {
		return []Frame{}, err
	}
	return m.maybePhase3([]Frame{f})
}

// validateRecord checks a received record (section 8): size, signature,
// signer, lifetime and validity (ParsePeerRecord), the negotiated suite,
// the responder's choice of it (initiator), its order against the held
// record, and the trust policy.
func (m *Machine) validateRecord(envelope []byte) (*PeerRecord, error) {
	rec, err := ParsePeerRecord(envelope, m.cfg.Remote, m.cfg.Now())
	if err != nil {
		return nil, err
	}
	if rec.Keys[m.suite] == nil {
		return nil, fmt.Errorf("%w: record has no %v key", ErrBadRecord, m.suite)
	}
	if m.role == Initiator {
		if err := m.checkSuiteChoice(rec, m.suite); err != nil {
			return nil, err
		}
	}
	// Against the held record even if it expired: an old record replayed
	// after the held one's expiry is still older than it.
	switch rel, reason := RelateRecords(m.held, rec); rel {
	case RecordRollback:
		// Refused whatever the policy would say: only a replay (or a copy
		// of the peer's key store) goes back in the order.
		return nil, fmt.Errorf("%w: %s", ErrRollback, reason)
	case RecordFirst, RecordSame, RecordRotation, RecordReset:
		// A reset (the peer lost its store) is the policy's to judge.
	default:
		return nil, fmt.Errorf("protocol: internal error: record relation %v", rel)
	}
	if m.cfg.Accept != nil {
		if err := m.cfg.Accept(m.cfg.Remote, m.held, rec); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeyRejected, err)
		}
	}
	return rec, nil
}

// acceptChunk takes a chunk that check accepted: into the reassembly, the
// transcript (as the peer's) and the events.
func (m *Machine) acceptChunk(asm *reassembly, t pb.Notice_Type, c *pb.Chunk, frame []byte) {
	asm.add(c)
	m.tr.absorb(m.role.other(), frame)
	m.receivedEvent(t, len(frame))
}

// consumeKeyReceived is phase 2, step 3: the peer has our record.
func (m *Machine) consumeKeyReceived(frame []byte, k *pb.KeyReceived) ([]Frame, error) {
	if subtle.ConstantTimeCompare(k.Fingerprint, m.cfg.Own.Fingerprint[:]) != 1 {
		return nil, fmt.Errorf("%w: receipt names another record", ErrFingerprint)
	}
	m.tr.absorb(m.role.other(), frame)
	m.receivedEvent(pb.Notice_KEY_RECEIVED, len(frame))
	m.keyAcked = true
	out, err := m.maybePhase3(nil)
	if err != nil && out == nil {
		out = []Frame{}
	}
	return out, err
}

// maybePhase3 is phase 2, step 4: once both sides hold each other's record,
// close phase 2 and run phase 3, step 1: send our sealed, signed part. It
// appends the frames to send to out.
func (m *Machine) maybePhase3(out []Frame) ([]Frame, error) {
	if (m.sendKey && !m.keyAcked) || (m.recvKey && !m.keyGot) {
		return out, nil
	}
	m.emit(Event{Kind: EventPhaseLeft, Phase: Phase2})
	m.t2 = m.tr.checkpoint(stagePhase2)
	m.state = stPhase3
	m.emit(Event{Kind: EventPhaseEntered, Phase: Phase3})
	pk := m.peerRecord.Keys[m.suite]
	if pk == nil {
		return out, fmt.Errorf("%w: peer record has no %v key", ErrMissingKey, m.suite)
	}
	ct, err := m.suite.sealPart(pk, m.role, &m.t2, m.part[:])
	if err != nil {
		return out, fmt.Errorf("seal key part: %w", err)
	}
	sig, err := signPart(m.cfg.Identity, m.role, &m.t2, ct)
	if err != nil {
		return out, fmt.Errorf("sign key part: %w", err)
	}
	// The marshalled part is copied into the notices and dropped: it is
	// built in a pooled buffer.
	buf := getBuf()
	defer putBuf(buf)
	item, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], &pb.SealedPart{Ciphertext: ct, Signature: sig})
	if err != nil {
		return out, err
	}
	if len(item) > MaxSealedPartSize {
		return out, fmt.Errorf("sealed part is %d bytes, limit %d", len(item), MaxSealedPartSize)
	}
	return m.sendChunks(out, pb.Notice_PART, item)
}

// consumePart is phase 3, step 2 and 3: collect the peer's part; when
// complete, verify, open and check it, derive the session key and confirm
// it with PART_RECEIVED.
func (m *Machine) consumePart(frame []byte, c *pb.Chunk) ([]Frame, error) {
	item, err := m.partAsm.check(c)
	if err != nil {
		return nil, err
	}
	if item == nil {
		m.acceptChunk(&m.partAsm, pb.Notice_PART, c, frame)
		return []Frame{}, nil
	}
	var sp pb.SealedPart
	if err := proto.Unmarshal(item, &sp); err != nil {
		return nil, fmt.Errorf("%w: sealed part: %v", ErrMalformed, err)
	}
	peerRole := m.role.other()
	if !verifyPart(m.cfg.RemoteKey, peerRole, &m.t2, sp.Ciphertext, sp.Signature) {
		return nil, ErrBadSignature
	}
	pt, err := m.suite.openPart(m.cfg.Own.private[m.suite], peerRole, &m.t2, sp.Ciphertext)
	if err != nil || len(pt) != PartSize {
		return nil, ErrDecrypt
	}
	var peerPart [PartSize]byte
	copy(peerPart[:], pt)
	clear(pt)
	defer clear(peerPart[:])
	if c := commitment(peerRole, &peerPart); subtle.ConstantTimeCompare(c[:], m.peerCommit[:]) != 1 {
		return nil, ErrCommitment
	}
	// Accepted: from here on nothing the peer sent can fail.
	m.acceptChunk(&m.partAsm, pb.Notice_PART, c, frame)
	m.partAsm.release() // item is not used below
	m.t3 = m.tr.checkpoint(stagePhase3)
	var secrets *sessionSecrets
	if m.role == Initiator {
		secrets, err = deriveSession(&m.part, &peerPart, &m.t3)
	} else {
		secrets, err = deriveSession(&peerPart, &m.part, &m.t3)
	}
	if err != nil {
		m.fail(err)
		return nil, err
	}
	m.secrets = secrets
	clear(m.part[:])
	mac := confirmationMAC(secrets, m.role, &m.t3)
	m.out.PartReceived = &pb.PartReceived{Mac: mac[:]}
	f, err := m.sendUnhashed(pb.Notice_PART_RECEIVED)
	if err != nil {
		return []Frame{}, err
	}
	return []Frame{f}, nil
}

// sendUnhashed is send for PART_RECEIVED, which is not in the transcript
// (it authenticates the transcript).
func (m *Machine) sendUnhashed(t pb.Notice_Type) (Frame, error) {
	f, err := m.marshalOut(t)
	if err != nil {
		return Frame{}, err
	}
	m.emit(Event{Kind: EventNoticeSent, Notice: t, Size: len(f.Bytes)})
	return f, nil
}

// consumePartReceived is phase 3, steps 4 and 5: the peer proves it holds the
// same key; the exchange is done and the key may be installed.
func (m *Machine) consumePartReceived(frame []byte, p *pb.PartReceived) ([]Frame, error) {
	want := confirmationMAC(m.secrets, m.role.other(), &m.t3)
	if !hmac.Equal(p.Mac, want[:]) {
		return nil, ErrConfirmation
	}
	m.receivedEvent(pb.Notice_PART_RECEIVED, len(frame))
	m.emit(Event{Kind: EventPhaseLeft, Phase: Phase3})
	m.state = stDone
	m.emit(Event{Kind: EventPhaseEntered, Phase: PhaseDone})
	return []Frame{}, nil
}
