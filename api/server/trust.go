package server

import (
	"fmt"
	"strings"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// TrustEvent describes one of a node's trust events as the API carries it
// (without Next, which the caller fills in).
func TrustEvent(tc node.TrustChange) api.TrustEvent {
	p := tc.Peer
	e := api.TrustEvent{Peer: p.String(), Refused: tc.Refused, TrustBefore: tc.Previous.String(),
		TrustAfter: tc.State.String(), Reason: tc.Reason}
	if tc.Presented != "" {
		e.Presented = tc.Presented.String()
	}
	if tc.Addr != nil {
		e.Addr = tc.Addr.String()
	}
	if tc.Suite != 0 {
		e.Suite = tc.Suite.String()
	}
	verdict := "accepted by the trust policy, peer marked " + tc.State.String()
	if tc.Refused {
		verdict = "REFUSED"
	}
	switch tc.Change {
	case node.KeyFirstContact:
		e.Event = "first-use"
		e.Message = fmt.Sprintf("first contact with %s: its exchange key is pinned (trust %s)", p, tc.State)
	case node.KeyNewIdentity:
		e.Event = "identity-changed"
		at := "an address"
		if e.Addr != "" {
			at = e.Addr
		}
		e.Message = fmt.Sprintf("IDENTITY CHANGED: %s of %s peer %s answered as %s; REFUSED, nothing stored for %s",
			at, tc.Previous, p, tc.Presented, tc.Presented)
	case node.KeyReset:
		e.Event = "store-reset"
		e.Message = fmt.Sprintf("KEY CHANGED: %s peer %s started over with a new exchange key (%s); %s",
			tc.Previous, p, tc.Reason, verdict)
	case node.KeySuiteDowngrade:
		e.Event = "suite-downgrade"
		e.Message = fmt.Sprintf("SUITE DOWNGRADE: %s answered with a weaker suite than both sides support (%s); REFUSED", p, tc.Reason)
	case node.KeyRotated:
		e.Event = "rotation"
		e.Message = fmt.Sprintf("%s rotated its exchange key", p)
	default:
		if tc.Rollback { // refused under every policy
			e.Event = "rollback"
			e.Message = fmt.Sprintf("KEY ROLLED BACK: %s peer %s presented an exchange key that cannot follow the one held (%s); REFUSED under every policy",
				tc.Previous, p, tc.Reason)
			break
		}
		e.Event = "key-changed"
		e.Message = fmt.Sprintf("KEY CHANGED: the exchange key of %s peer %s changed without a rotation that accounts for it (%s); %s",
			tc.Previous, p, tc.Reason, verdict)
	}
	return e
}

// trustEventsOf describes the trust events of an operation: those of its
// result (KeyInfo.Trust) and those its error carries (node.TrustEvents).
func trustEventsOf(info *node.KeyInfo, err error) []api.TrustEvent {
	var tcs []node.TrustChange
	if info != nil {
		tcs = append(tcs, info.Trust...)
	}
	tcs = append(tcs, node.TrustEvents(err)...)
	var out []api.TrustEvent
	for _, tc := range tcs {
		out = append(out, TrustEvent(tc))
	}
	return out
}

// ProgressLine is the line that describes an exchange's event e, or ""
// for an event not worth a line; notices: a line for every notice sent
// and received, not only for the phases.
func ProgressLine(e node.Event, notices bool) string {
	if e.Kind != node.EventStep {
		return ""
	}
	s := e.Step
	switch s.Kind {
	case protocol.EventPhaseEntered:
		switch s.Phase {
		case protocol.Phase1:
			return fmt.Sprintf("phase 1: start as %v, compare fingerprints", s.Role)
		case protocol.Phase2:
			if !s.SendOwn && !s.ReceivePeer {
				return "phase 2: skipped, both public keys are current"
			}
			var parts []string
			if s.SendOwn {
				parts = append(parts, "send own public key")
			}
			if s.ReceivePeer {
				parts = append(parts, "receive peer's public key")
			}
			return "phase 2: " + strings.Join(parts, ", ")
		case protocol.Phase3:
			return "phase 3: send sealed, signed key part"
		case protocol.PhaseDone:
			return "done: both confirmations verified"
		}
	case protocol.EventNoticeSent:
		if notices {
			return fmt.Sprintf("  -> %-13v %4d B", s.Notice, s.Size)
		}
	case protocol.EventNoticeReceived:
		if notices {
			return fmt.Sprintf("  <- %-13v %4d B", s.Notice, s.Size)
		}
	}
	return ""
}
