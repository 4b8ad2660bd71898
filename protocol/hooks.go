package protocol

import (
	"crypto/hpke"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/protocol/internal/hooks"
)

// The test-support hooks of package protocoltest (see internal/hooks): not
// part of the API, so that no program builds an out-of-bounds record or a
// downgrading responder by mistake.
func init() {
	hooks.ForgeExchangeKey = func(identity crypto.PrivKey, suites []uint16, seq uint64, created, expires time.Time) (any, error) {
		if len(suites) == 0 {
			return nil, errors.New("no suites")
		}
		id, err := peer.IDFromPrivateKey(identity)
		if err != nil {
			return nil, err
		}
		priv := make(map[Suite]hpke.PrivateKey, len(suites))
		for _, n := range suites {
			s := Suite(n)
			kem, err := s.KEM()
			if err != nil {
				return nil, err
			}
			if priv[s], err = kem.GenerateKey(); err != nil {
				return nil, fmt.Errorf("generate %v key: %w", s, err)
			}
		}
		// Whole seconds, as on the wire.
		return sealRecord(identity, KeyRecord{Peer: id, Seq: seq, Created: time.Unix(created.Unix(), 0), Expires: time.Unix(expires.Unix(), 0)}, priv)
	}
	hooks.SetSuiteChoice = func(v any, choose func(common []uint16) uint16) error {
		m, ok := v.(*Machine)
		if !ok || m.role != Responder || m.state != stNew || choose == nil {
			return errors.New("protocol: SetSuiteChoice needs a new responder machine and a chooser")
		}
		m.choose = choose
		return nil
	}
}
