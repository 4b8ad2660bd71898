package main

// Warnings reach the person who asked. Every trust event of an operation
// (a first key pinned, a key change accepted or refused, a store reset, a
// rollback, another identity at a peer's address, a suite downgrade) is
// printed on the stderr of the command that ran it, as
// "p2pkex: WARNING: ..." lines, whether the work ran in the repo's daemon
// or in the command's own node, and is the trust_events field of its
// --json output. The daemon's control API returns them in its responses
// (trust_events), so that the command can print them: the daemon's own log
// is not where the user is.

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
)

// trustEvent is one trust event, as the control API and --json carry it.
// The field names are documented in "p2pkex exchange --help".
type trustEvent struct {
	// Peer: the peer the event is about (the peer named).
	Peer string `json:"peer"`
	// Event: first-use, key-changed, store-reset, rollback,
	// identity-changed or suite-downgrade.
	Event string `json:"event"`
	// Refused: the record, identity or suite was refused; the operation
	// failed.
	Refused bool `json:"refused"`
	// TrustBefore, TrustAfter: the peer's trust state before and after
	// (unknown, first-use, verified, changed).
	TrustBefore string `json:"trust_before"`
	TrustAfter  string `json:"trust_after"`
	// Reason: how the records differ, or why it was refused.
	Reason string `json:"reason,omitempty"`
	// Presented, Addr: for identity-changed, the identity that answered
	// at the peer's address, and that address.
	Presented string `json:"presented,omitempty"`
	Addr      string `json:"addr,omitempty"`
	// Suite: the suite concerned (suite-downgrade: the one the responder
	// chose).
	Suite string `json:"suite,omitempty"`
	// Message: the event in one line, for people.
	Message string `json:"message"`
	// Next: what to do about it, as a command line with the user's own
	// --repo (set by the command, not the daemon).
	Next string `json:"next,omitempty"`
}

// trustEventOf describes one of a node's trust events.
func trustEventOf(tc node.TrustChange) trustEvent {
	p := tc.Peer
	e := trustEvent{Peer: p.String(), Refused: tc.Refused, TrustBefore: tc.Previous.String(),
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
func trustEventsOf(info *node.KeyInfo, err error) []trustEvent {
	var tcs []node.TrustChange
	if info != nil {
		tcs = append(tcs, info.Trust...)
	}
	tcs = append(tcs, node.TrustEvents(err)...)
	var out []trustEvent
	for _, tc := range tcs {
		out = append(out, trustEventOf(tc))
	}
	return out
}

// repoArg is " --repo DIR" when the user named the repo (flag or
// P2PKEX_PATH), for the commands the warnings suggest.
func repoArg(c *cli.Command) string {
	if !c.IsSet("repo") {
		return ""
	}
	return " --repo " + shellWord(c.String("repo")) // repo.go
}

// withNext fills in each event's next step, with the user's --repo.
func withNext(c *cli.Command, events []trustEvent) []trustEvent {
	repo := repoArg(c)
	for i := range events {
		e := &events[i]
		switch {
		case e.Event == "first-use":
			e.Next = fmt.Sprintf("compare safety numbers with the peer's owner: p2pkex verify%s %s", repo, e.Peer)
		case e.Event == "identity-changed":
			e.Next = fmt.Sprintf("ask the owner of %s; to reach %s instead, name it", e.Peer, e.Presented)
		case e.Event == "rollback":
			e.Next = "ask the peer's owner: no honest rotation makes this record (an old record replayed, an old copy of its repo, or a forged one)"
		case e.Event == "suite-downgrade":
			e.Next = "something between you and the peer, or the peer itself, chose a weaker suite: ask the peer's owner"
		case e.Refused:
			e.Next = fmt.Sprintf("ask the peer's owner; if they confirm it (a reinstall, a lost store): p2pkex forget%s %s, then exchange again and verify", repo, e.Peer)
		default:
			e.Next = fmt.Sprintf("compare safety numbers with the peer's owner, then confirm: p2pkex verify%s %s", repo, e.Peer)
		}
	}
	return events
}

// printTrust prints the events on w (the command's stderr), one line each.
func printTrust(w io.Writer, events []trustEvent) {
	for _, e := range events {
		line := "p2pkex: WARNING: " + e.Message
		if e.Next != "" {
			line += "; " + e.Next
		}
		fmt.Fprintln(w, strings.ReplaceAll(line, "\n", " "))
	}
}
