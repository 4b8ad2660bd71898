package protocol

import (
	"fmt"
	"slices"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// The transition table of the Machine. Consume accepts a notice only through
// a row of this table, and the Promela model in protocol/model/p2pkex.pml is
// checked against it (model_test.go), so the code, the model and the
// specification's state diagram cannot drift apart.

func (s state) String() string {
	switch s {
	case stNew:
		return "stNew"
	case stAwaitContinue:
		return "stAwaitContinue"
	case stAwaitNext:
		return "stAwaitNext"
	case stPhase2:
		return "stPhase2"
	case stPhase3:
		return "stPhase3"
	case stDone:
		return "stDone"
	case stFailed:
		return "stFailed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// allStates lists every state of the Machine, in order.
var allStates = []state{stNew, stAwaitContinue, stAwaitNext, stPhase2, stPhase3, stDone, stFailed}

// States names every state of the Machine, in order. The names are those the
// Promela model uses.
func States() []string {
	names := make([]string, len(allStates))
	for i, s := range allStates {
		names[i] = s.String()
	}
	return names
}

// Transition is one row of the Machine's table: in state From, a machine of
// role Role (0: either role) accepts a notice of type Notice if Guard holds,
// and afterwards is in one of the states To. A notice no row accepts is
// rejected with ErrUnexpected and leaves the machine unchanged; a notice a
// row accepts but whose content fails validation is rejected the same way.
// Any accepted notice may also end the machine in stFailed on a local error
// (a failed random source, a signature that cannot be made).
//
// The guards name the phase-2 and phase-3 progress of the machine:
//
//   - recvKey: phase 2 must bring the peer's record (its fingerprint did
//     not match); keyGot: the record is complete and imported.
//   - sendKey: phase 2 must send our record; keyAcked: the peer confirmed it
//     with KEY_RECEIVED.
//   - partGot: the peer's part is complete and the session key is derived.
//
// Two transitions happen without a notice: Start (initiator, stNew to
// stAwaitContinue, sending START) and Fail (any state but stDone to
// stFailed).
type Transition struct {
	From   string
	Role   Role // 0: both roles
	Notice pb.Notice_Type
	Guard  string // empty: none
	To     []string
}

// transition is a row of the table as Consume uses it.
type transition struct {
	from   state
	role   Role
	notice pb.Notice_Type
	guard  string
	holds  func(m *Machine) bool // nil: no guard
	to     []state
	handle func(m *Machine, frame []byte, n *pb.Notice) ([]Frame, error)
}

// table is the Machine's transition table; see Transition.
var table = []transition{
	// Phase 1.
	{from: stNew, role: Responder, notice: pb.Notice_START, to: []state{stAwaitNext}, handle: (*Machine).onStart},
	{from: stNew, role: Responder, notice: pb.Notice_ABORT, to: []state{stFailed}, handle: (*Machine).consumeAbort},
	{from: stAwaitContinue, role: Initiator, notice: pb.Notice_CONTINUE, to: []state{stPhase2, stPhase3}, handle: (*Machine).onContinue},
	{from: stAwaitContinue, role: Initiator, notice: pb.Notice_ABORT, to: []state{stFailed}, handle: (*Machine).consumeAbort},
	{from: stAwaitNext, role: Responder, notice: pb.Notice_NEXT, to: []state{stPhase2, stPhase3}, handle: (*Machine).onNext},
	{from: stAwaitNext, role: Responder, notice: pb.Notice_ABORT, to: []state{stFailed}, handle: (*Machine).consumeAbort},
	// Phase 2, both roles.
	{from: stPhase2, notice: pb.Notice_KEY, guard: "recvKey && !keyGot", holds: awaitKey,
		to: []state{stPhase2, stPhase3}, handle: (*Machine).onKey},
	{from: stPhase2, notice: pb.Notice_KEY_RECEIVED, guard: "sendKey && !keyAcked", holds: awaitKeyReceived,
		to: []state{stPhase2, stPhase3}, handle: (*Machine).onKeyReceived},
	{from: stPhase2, notice: pb.Notice_ABORT, to: []state{stFailed}, handle: (*Machine).consumeAbort},
	// Phase 3, both roles.
	{from: stPhase3, notice: pb.Notice_PART, guard: "!partGot", holds: awaitPart,
		to: []state{stPhase3}, handle: (*Machine).onPart},
	{from: stPhase3, notice: pb.Notice_PART_RECEIVED, guard: "partGot", holds: awaitPartReceived,
		to: []state{stDone}, handle: (*Machine).onPartReceived},
	{from: stPhase3, notice: pb.Notice_ABORT, to: []state{stFailed}, handle: (*Machine).consumeAbort},
}

// Guards of the table.
func awaitKey(m *Machine) bool          { return m.recvKey && !m.keyGot }
func awaitKeyReceived(m *Machine) bool  { return m.sendKey && !m.keyAcked }
func awaitPart(m *Machine) bool         { return m.secrets == nil }
func awaitPartReceived(m *Machine) bool { return m.secrets != nil }

// Handlers of the table: each passes the notice's body to its consume method.
func (m *Machine) onStart(f []byte, n *pb.Notice) ([]Frame, error) { return m.consumeStart(f, n.Start) }
func (m *Machine) onContinue(f []byte, n *pb.Notice) ([]Frame, error) {
	return m.consumeContinue(f, n.Continue)
}
func (m *Machine) onNext(f []byte, n *pb.Notice) ([]Frame, error) { return m.consumeNext(f, n.Next) }
func (m *Machine) onKey(f []byte, n *pb.Notice) ([]Frame, error)  { return m.consumeKey(f, n.Chunk) }
func (m *Machine) onKeyReceived(f []byte, n *pb.Notice) ([]Frame, error) {
	return m.consumeKeyReceived(f, n.KeyReceived)
}
func (m *Machine) onPart(f []byte, n *pb.Notice) ([]Frame, error) { return m.consumePart(f, n.Chunk) }
func (m *Machine) onPartReceived(f []byte, n *pb.Notice) ([]Frame, error) {
	return m.consumePartReceived(f, n.PartReceived)
}

// Transitions returns the Machine's transition table, one row per accepted
// (state, role, notice, guard).
func Transitions() []Transition {
	out := make([]Transition, len(table))
	for i, t := range table {
		to := make([]string, len(t.to))
		for j, s := range t.to {
			to[j] = s.String()
		}
		out[i] = Transition{From: t.from.String(), Role: t.role, Notice: t.notice, Guard: t.guard, To: to}
	}
	return out
}

// lookup returns the row that accepts a notice of type t in the machine's
// current state, or nil.
func (m *Machine) lookup(t pb.Notice_Type) *transition {
	for i := range table {
		r := &table[i]
		if r.from == m.state && r.notice == t && (r.role == 0 || r.role == m.role) &&
			(r.holds == nil || r.holds(m)) {
			return r
		}
	}
	return nil
}

// leads reports whether s is one of the row's target states.
func (r *transition) leads(s state) bool { return slices.Contains(r.to, s) }
