// Package api is the contract of the p2pkex daemon's control API: the
// version, the socket's name, every request and response body with its
// JSON field names, and the error body with its stable codes. The daemon
// serves it (package [github.com/p2pkex/p2pkex/api/server]); programs drive
// a daemon through package [github.com/p2pkex/p2pkex/client], or with any
// HTTP client over the unix socket. docs/API.md lists every endpoint.
//
// # Why the contract is a package of its own
//
// This package imports only the standard library: no node, no libp2p. A
// program that drives a daemon links the client and these types, not the
// node it does not run; the server, which needs the node, lives in
// api/server (the layout of Docker's api/types, api/server and client).
// The arrows point one way: cmd → client → api, and cmd → api/server →
// {api, node}.
//
// # Transport
//
// HTTP/1.1 over the unix socket DIR/api.sock of the daemon's repo DIR (mode
// 0600: only the repo's owner may connect; there is no other
// authentication). While the daemon runs, the file DIR/api holds the
// socket's absolute path. Request and response bodies are JSON (UTF-8);
// byte strings ([]byte fields) are base64, as encoding/json writes them;
// times are RFC 3339 with their zone. Streamed responses (exchange,
// messages, inbox) are NDJSON: one JSON object per line.
//
// # Versioning
//
// Every path starts with /v0/ ([Version]). Within v0, the daemon may add
// endpoints, add optional request fields and add response fields; clients
// must ignore fields they do not know. Removing or renaming an endpoint or
// a field, changing a field's type or meaning, or giving an error
// condition another code makes a new version (/v1/), served beside v0 for
// at least one release.
//
// # Errors
//
// A failed request is answered with an HTTP status other than 200 and a
// JSON body, [Error]: {"code", "error", "trust_events"}. The code is one of
// the Code constants and is stable; the message is one line for a person,
// and may be reworded. A streamed exchange reports its failure in its last
// line instead (status 200 was sent before the exchange ran).
package api

import "fmt"

// Version is the API version: the first element of every path.
const Version = "v0"

// SocketName is the control socket's file name in the daemon's repo.
const SocketName = "api.sock"

// AddrFile is the name of the file, in the daemon's repo, that holds the
// socket's absolute path while the daemon runs (as kubo's ~/.ipfs/api).
const AddrFile = "api"

// Error codes: what kind of failure a request met. A program branches on
// these, never on the message.
const (
	// CodeBadRequest: the request itself is wrong (a malformed body, a
	// string that is not a peer ID or a full multiaddr, the daemon's own
	// peer ID, a value out of bounds). HTTP 400. The command line treats
	// it as a usage mistake (exit status 2).
	CodeBadRequest = "bad-request"
	// CodeNotFound: the daemon holds nothing of what the request names (no
	// exchange with the peer yet, no address for it). HTTP 404.
	CodeNotFound = "not-found"
	// CodeNoSession: there is no session key with the peer: run an
	// exchange first. HTTP 404.
	CodeNoSession = "no-session"
	// CodeRefused: the request was understood but refused (a safety number
	// that does not match, nothing to revoke). HTTP 409.
	CodeRefused = "refused"
	// CodePeer: the peer could not be reached, or the exchange or message
	// with it failed or was refused by the trust policy; trust_events says
	// why where trust was involved. HTTP 502.
	CodePeer = "peer-failed"
	// CodeUnavailable: the endpoint is not served by this daemon (for
	// instance no inbox). HTTP 503.
	CodeUnavailable = "unavailable"
	// CodeInternal: the daemon failed (its store, say). HTTP 500.
	CodeInternal = "internal"
)

// Error is the body of a failed request, and the error the client and the
// server's in-process operations return.
type Error struct {
	// Code: one of the Code constants.
	Code string `json:"code"`
	// Message: what happened, in one line for a person.
	Message string `json:"error"`
	// TrustEvents: the operation's trust events (a key change refused,
	// another identity at the peer's address, ...), if any.
	TrustEvents []TrustEvent `json:"trust_events,omitempty"`

	// Status is the HTTP status the error came with (0 in process).
	Status int `json:"-"`
	err    error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the cause of an error made in process (nil for one that
// came over the socket).
func (e *Error) Unwrap() error { return e.err }

// Errorf returns an *Error with the code and a message made as fmt.Errorf
// would make it (%w wraps the cause, for the in-process caller).
func Errorf(code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), err: errUnwrap(err)}
}

// Wrap returns an *Error with the code, the message msg and the cause err.
func Wrap(code, msg string, err error, events []TrustEvent) *Error {
	return &Error{Code: code, Message: msg, TrustEvents: events, err: err}
}

func errUnwrap(err error) error {
	if u, ok := err.(interface{ Unwrap() error }); ok {
		return u.Unwrap()
	}
	return nil
}
