package main

// "p2pkex verify": the safety number of a peer, compared by a person. The
// peer becomes verified only when the user typed the number the peer's
// owner reads out (or, having compared them, typed "yes"); without a
// terminal, --confirm needs that number (--number) or an explicit --yes.
// Through the repo's daemon if it runs (GET and POST /v0/verify), else on
// a node of the command's own on the repo.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/peerstore"
)

// isTerminal reports whether r is a terminal a person types at
// (term_*.go); tests replace it.
var isTerminal = isTerminalFile

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "compare a peer's safety number and mark the peer verified; --revoke withdraws that",
		ArgsUsage: "PEER",
		Description: `PEER is a peer ID or a multiaddr ending in /p2p/<peer ID>. The safety
number is derived from both peers' identities (docs/PROTOCOL.md, section
11.6): the peer's "p2pkex verify" shows the same one, as digits and as
words (--qr: as a QR code too). Compare it over a channel you trust (in
person, a call). On a terminal, verify asks you to type the number the
peer's owner reads out, or "yes" once you compared them; the peer is
verified only if they match. Without a terminal, --confirm needs
--number "<the peer's digits>" (which must match) or an explicit --yes.
A wrong number is refused (exit 1) and changes nothing.

A verified peer whose exchange key then changes without a rotation that
accounts for it is refused (trust policy "tofu", the default; see
docs/SECURITY.md). --revoke withdraws the verification (back to
first-use). Through the repo's daemon if it runs, else on the repo.

--json prints self, peer, trust, previous, fingerprint, safety_number,
safety_words, confirmed, revoked and known.

Examples:
  p2pkex verify --repo /tmp/alice 12D3KooW...
  p2pkex verify --repo /tmp/alice --confirm --number "12345 67890 ..." 12D3KooW...
  p2pkex verify --repo /tmp/alice --confirm --yes 12D3KooW...
  p2pkex verify --repo /tmp/alice --revoke 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(), jsonFlag(),
			&cli.BoolFlag{Name: "confirm", Usage: "mark the peer verified once the numbers match (asks on a terminal)"},
			&cli.StringFlag{Name: "number", Usage: "the safety number the peer's owner read out, for --confirm without a terminal"},
			&cli.BoolFlag{Name: "yes", Usage: "with --confirm: you compared the numbers and they match"},
			&cli.BoolFlag{Name: "revoke", Usage: "withdraw the peer's verification (back to first-use)"},
			&cli.BoolFlag{Name: "qr", Usage: "also show the safety number as a QR code"},
			&cli.BoolFlag{Name: "quiet", Usage: "print only the safety number: digits, then words"},
		},
		Action: verifyAction,
	}
}

func verifyAction(ctx context.Context, c *cli.Command) error {
	p, err := peerIDArg(c) // repo.go
	if err != nil {
		return err
	}
	req := api.VerifyRequest{Peer: p.String(), Number: c.String("number"), Yes: c.Bool("yes"), Revoke: c.Bool("revoke")}
	confirm := c.Bool("confirm")
	switch {
	case req.Revoke && (confirm || req.Number != "" || req.Yes):
		return usagef("verify: --confirm and --revoke exclude each other")
	case (req.Number != "" || req.Yes) && !confirm:
		return usagef("verify: --number and --yes go with --confirm")
	case req.Number != "" && req.Yes:
		return usagef("verify: --number and --yes exclude each other")
	case c.Bool("json") && c.Bool("qr"):
		return usagef("verify: --json and --qr do not go together")
	case c.IsSet("number") && strings.TrimSpace(req.Number) == "":
		return usagef("verify: --number is empty")
	}
	return onBackend(ctx, c, nil, func(b backend) error { // backend.go
		return verify(ctx, c, b, p, req)
	})
}

// verify shows the peer's safety number and, as req asks or the user
// answers, confirms or revokes its verification.
func verify(ctx context.Context, c *cli.Command, b backend, p peer.ID, req api.VerifyRequest) error {
	confirm := c.Bool("confirm")
	rep, err := b.Verify(ctx, api.VerifyRequest{Peer: p.String()})
	if err != nil {
		return err
	}
	terminal := isTerminal(c.Root().Reader)
	switch {
	case (confirm || req.Revoke) && !rep.Known:
		return fmt.Errorf("no key of %s known: run \"p2pkex exchange\" first", p)
	case confirm && req.Number == "" && !req.Yes && !terminal:
		return usagef("verify --confirm: no terminal to ask on: give --number \"<the digits the peer's owner reads out>\", or --yes once you compared them")
	}
	w := c.Root().Writer
	quiet, asJSON := c.Bool("quiet"), c.Bool("json")
	switch {
	case quiet:
		fmt.Fprintf(w, "%s\n%s\n", rep.Digits, rep.Words)
	case !asJSON:
		fmt.Fprintf(w, "peer           %s\n", rep.Peer)
		fmt.Fprintf(w, "trust          %s\n", rep.Trust)
		if rep.Fingerprint != "" {
			fmt.Fprintf(w, "exchange key   %s\n", rep.Fingerprint)
		}
		fmt.Fprintf(w, "safety number  %s\n", rep.Digits)
		fmt.Fprintf(w, "words          %s\n", rep.Words)
	}
	if c.Bool("qr") {
		printQRText(w, strings.ReplaceAll(rep.Digits, " ", "")) // qr.go
	}
	// On a terminal, ask for the peer's number: the user compares rather
	// than confirms what they were shown.
	ask := terminal && !asJSON && !quiet && rep.Known && !req.Changes() &&
		(confirm || rep.Trust != peerstore.TrustVerified.String())
	if ask {
		fmt.Fprintf(w, "Type the safety number the peer's owner reads out (or \"yes\" if you compared them and they match; Enter to stop): ")
		line, _ := bufio.NewReader(c.Root().Reader).ReadString('\n')
		switch answer := strings.TrimSpace(line); {
		case answer == "" && confirm:
			return errors.New("nothing typed: not verified")
		case answer == "":
			fmt.Fprintf(w, "not verified\n")
			return nil
		case strings.EqualFold(answer, "yes"):
			req.Yes = true
		default:
			req.Number = answer
		}
	}
	if req.Changes() {
		if rep, err = b.Verify(ctx, req); err != nil {
			return err
		}
	}
	if asJSON {
		return printJSON(w, rep)
	}
	if quiet {
		return nil
	}
	switch {
	case rep.Confirmed:
		fmt.Fprintf(w, "%s is now verified (was %s)\n", rep.Peer, rep.Previous)
	case rep.Revoked:
		fmt.Fprintf(w, "%s is no longer verified (now %s)\n", rep.Peer, rep.Trust)
	case !rep.Known:
		fmt.Fprintf(w, "no exchange with this peer yet\n")
	case rep.Trust != peerstore.TrustVerified.String():
		fmt.Fprintf(w, "compare with the peer's \"p2pkex verify\"; if they match: p2pkex verify%s --confirm %s\n", repoArg(c), rep.Peer)
	}
	return nil
}
