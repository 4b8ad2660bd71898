package main

// Warnings reach the person who asked. Every trust event of an operation
// (a first key pinned, a key change accepted or refused, a store reset, a
// rollback, another identity at a peer's address, a suite downgrade) is
// printed on the stderr of the command that ran it, as
// "p2pkex: WARNING: ..." lines, whether the work ran in the repo's daemon
// or in the command's own node, and is the trust_events field of its
// --json output. The daemon's control API returns them in its responses
// (trust_events; api.TrustEvent, made by server.TrustEvent), so that the
// command can print them: the daemon's own log is not where the user is.

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
)

// repoArg is " --repo DIR" when the user named the repo (flag or
// P2PKEX_PATH), for the commands the warnings suggest.
func repoArg(c *cli.Command) string {
	if !c.IsSet("repo") {
		return ""
	}
	return " --repo " + shellWord(c.String("repo")) // repo.go
}

// withNext fills in each event's next step, with the user's --repo.
func withNext(c *cli.Command, events []api.TrustEvent) []api.TrustEvent {
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
func printTrust(w io.Writer, events []api.TrustEvent) {
	for _, e := range events {
		line := "p2pkex: WARNING: " + e.Message
		if e.Next != "" {
			line += "; " + e.Next
		}
		fmt.Fprintln(w, strings.ReplaceAll(line, "\n", " "))
	}
}
