// Package hooks reaches behaviour of package protocol that its public API
// deliberately does not offer: forging records outside the bounds every
// peer checks, and a responder that downgrades the suite. Only package
// protocoltest uses it, to build misbehaving peers for tests; being
// internal, no program outside protocol/ can.
//
// Package protocol sets the variables in its init (this package cannot
// import protocol, which imports it), so they are typed with any where a
// protocol type belongs; the documentation of each says which.
package hooks

import (
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

var (
	// ForgeExchangeKey returns a *protocol.ExchangeKey of identity with
	// fresh keys for suites (protocol.Suite numbers), sequence seq and
	// exactly the given creation and expiry times, correctly signed, with
	// no bound checked.
	ForgeExchangeKey func(identity crypto.PrivKey, suites []uint16, seq uint64, created, expires time.Time) (any, error)

	// SetSuiteChoice makes m, a *protocol.Machine of the responder role that
	// has not yet consumed START, answer with choose(common) instead of
	// the first common suite; common lists the offered suites it supports,
	// in the initiator's order. It returns an error for anything else.
	SetSuiteChoice func(m any, choose func(common []uint16) uint16) error
)
