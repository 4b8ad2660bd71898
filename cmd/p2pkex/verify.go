package main

// "p2pkex verify": the safety number of a peer, compared by a person. The
// peer becomes verified only when the user typed the number the peer's
// owner reads out (or, having compared them, typed "yes"); without a
// terminal, --confirm needs that number (--number) or an explicit --yes.
// Through the repo's daemon if it runs, else on a node of the command's
// own on the repo. The daemon's endpoints:
//
//	GET  /v0/verify?peer=ID                        -> verifyReply
//	POST /v0/verify {"peer": ID, "number": DIGITS} -> verifyReply (verified if the number matches)
//	POST /v0/verify {"peer": ID, "yes": true}      -> verifyReply (the user compared them: verified)
//	POST /v0/verify {"peer": ID, "revoke": true}   -> verifyReply (back to first-use)

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

type verifyRequest struct {
	Peer   string `json:"peer"`
	Number string `json:"number,omitempty"`
	Yes    bool   `json:"yes,omitempty"`
	Revoke bool   `json:"revoke,omitempty"`
}

// change reports whether the request changes the peer's trust.
func (r verifyRequest) change() bool { return r.Number != "" || r.Yes || r.Revoke }

type verifyReply struct {
	Self        string `json:"self"`
	Peer        string `json:"peer"`
	Trust       string `json:"trust"`         // the trust state (after a change)
	Previous    string `json:"previous"`      // before
	Fingerprint string `json:"fingerprint"`   // the peer's exchange-key record, if known
	Digits      string `json:"safety_number"` // 12 groups of 5 digits
	Words       string `json:"safety_words"`  // 12 words
	Confirmed   bool   `json:"confirmed"`     // the peer was confirmed (number or yes)
	Revoked     bool   `json:"revoked"`       // the verification was withdrawn
	Known       bool   `json:"known"`         // an exchange took place
}

// isTerminal reports whether r is a terminal a person types at
// (term_*.go); tests replace it.
var isTerminal = isTerminalFile

// verifyOn reads p's trust on n and, as req asks, confirms or revokes it.
func verifyOn(n *node.Node, req verifyRequest) (*verifyReply, error) {
	p, err := parsePeerIDArg(req.Peer)
	if err != nil {
		return nil, err
	}
	if p == n.ID() {
		return nil, usagef("verify: %s is this repo's own peer ID", p)
	}
	sn := n.SafetyNumber(p)
	r := &verifyReply{Self: n.ID().String(), Peer: p.String(), Digits: sn.Digits(), Words: sn.Words(),
		Trust: peerstore.TrustUnknown.String()}
	pk, err := n.Store().Peer(p)
	switch {
	case errors.Is(err, peerstore.ErrNotFound):
		if req.change() {
			return nil, fmt.Errorf("no key of %s known: run \"p2pkex exchange\" first", p)
		}
		r.Previous = r.Trust
		return r, nil
	case err != nil:
		return nil, err
	}
	r.Known = true
	r.Trust, r.Previous = pk.Trust.String(), pk.Trust.String()
	if fp, err := protocol.ParseFingerprint(pk.Fingerprint); err == nil {
		r.Fingerprint = fp.String()
	}
	switch {
	case req.Revoke:
		if err := n.RevokePeer(p); errors.Is(err, node.ErrNotVerified) {
			return nil, fmt.Errorf("%s is not verified (it is %s): nothing to revoke", p, pk.Trust)
		} else if err != nil {
			return nil, err
		}
		r.Trust, r.Revoked = peerstore.TrustFirstUse.String(), true
	case req.Number != "" || req.Yes:
		number := req.Number
		if req.Yes {
			number = sn.Digits() // the user compared them and says they match
		}
		if err := n.ConfirmPeer(p, number); errors.Is(err, node.ErrSafetyNumberMismatch) {
			return nil, fmt.Errorf("the number typed is not the safety number of this repo and %s: %s stays %s; compare again with the peer's owner", p, p, pk.Trust)
		} else if err != nil {
			return nil, err
		}
		r.Trust, r.Confirmed = peerstore.TrustVerified.String(), true
	}
	return r, nil
}

// handleVerifyAPI serves /v0/verify on the control API.
func handleVerifyAPI(mux *http.ServeMux, n *node.Node) {
	verify := func(w http.ResponseWriter, req verifyRequest) {
		rep, err := verifyOn(n, req)
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err, nil) // api.go
			return
		}
		writeJSON(w, rep)
	}
	mux.HandleFunc("GET /v0/verify", func(w http.ResponseWriter, r *http.Request) {
		verify(w, verifyRequest{Peer: r.URL.Query().Get("peer")})
	})
	mux.HandleFunc("POST /v0/verify", func(w http.ResponseWriter, r *http.Request) {
		var req verifyRequest
		if !decodeRequest(w, r, 4096, &req) {
			return
		}
		if !req.change() {
			// Marking a peer verified takes the number or the user's yes.
			writeAPIError(w, http.StatusBadRequest, errors.New("verify: give the peer's safety number (number) or the user's confirmation (yes)"), nil)
			return
		}
		verify(w, req)
	})
}

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
	if c.Args().Len() != 1 {
		return usagef("verify: want one PEER (peer ID or MULTIADDR), got %d arguments", c.Args().Len())
	}
	p, err := parsePeerIDArg(c.Args().First())
	if err != nil {
		return err
	}
	if err := notSelf(c, p); err != nil { // repo.go
		return err
	}
	req := verifyRequest{Peer: p.String(), Number: c.String("number"), Yes: c.Bool("yes"), Revoke: c.Bool("revoke")}
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
	call, done, err := verifyClient(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	rep, err := call(verifyRequest{Peer: p.String()})
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
	ask := terminal && !asJSON && !quiet && rep.Known && !req.change() &&
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
	if req.change() {
		if rep, err = call(req); err != nil {
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

// verifyClient returns how to ask the repo's daemon, or a node of the
// command's own on the repo, for verifyOn.
func verifyClient(ctx context.Context, c *cli.Command) (call func(verifyRequest) (*verifyReply, error), done func(), err error) {
	dir := c.String("repo")
	if api := dialAPI(dir); api != nil {
		return func(req verifyRequest) (*verifyReply, error) {
			var resp *http.Response
			var err error
			if req.change() {
				resp, err = api.do(ctx, http.MethodPost, "/v0/verify", req)
			} else {
				resp, err = api.do(ctx, http.MethodGet, "/v0/verify?peer="+url.QueryEscape(req.Peer), nil)
			}
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			var rep verifyReply
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
				return nil, fmt.Errorf("daemon reply: %w", err)
			}
			return &rep, nil
		}, func() {}, nil
	}
	r, err := openRepo(dir, false)
	if err != nil {
		return nil, nil, err
	}
	n, err := newRepoNode(ctx, c, r) // nodeconfig.go
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return func(req verifyRequest) (*verifyReply, error) { return verifyOn(n, req) },
		func() { n.Close(); r.Close() }, nil
}
