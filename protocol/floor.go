package protocol

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// The crypto floor of an exchange is the public-key cryptography it cannot
// do without: for each of the two sides, sealing its key part to the peer's
// exchange key, signing the sealed part with its identity key, verifying the
// peer's signature and opening the peer's part. It is what an exchange with
// both records known would cost if framing, the transcript, the state
// machine, the stream and the store were free. Hashing (transcript,
// commitments, HKDF, confirmation MACs) is left out on purpose: it is a few
// microseconds, and counting it would flatter the ratio to the floor.
//
// The load tool (p2pkex bench) measures the floor with MeasureFloor in the
// same process and run as the exchanges it compares with it; the
// benchmarks in bench_test.go time the same operations one by one.

// floorSide is one side's long-term keys for the floor measurement.
type floorSide struct {
	identity crypto.PrivKey
	key      *ExchangeKey
}

// floorPair is an initiator and a responder holding each other's keys, with
// fixed key parts and a fixed phase-2 transcript value.
type floorPair struct {
	suite  Suite
	sides  [2]floorSide // by Role-1
	t2     [32]byte
	parts  [2][PartSize]byte
	sealed [2][]byte // the part each side sealed, by Role-1
	sigs   [2][]byte // the signature each side made, by Role-1
}

func newFloorPair(suite Suite) (*floorPair, error) {
	if !suite.Known() {
		return nil, fmt.Errorf("%w: %v", ErrNoCommonSuite, suite)
	}
	p := &floorPair{suite: suite}
	for i := range p.sides {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		k, err := NewExchangeKey(sk, []Suite{suite}, 1, time.Now(), DefaultRecordLifetime)
		if err != nil {
			return nil, err
		}
		p.sides[i] = floorSide{identity: sk, key: k}
		if _, err := rand.Read(p.parts[i][:]); err != nil {
			return nil, err
		}
	}
	if _, err := rand.Read(p.t2[:]); err != nil {
		return nil, err
	}
	return p, nil
}

// seal is phase 3, step 1 for role r: seal the part to the peer's key.
func (p *floorPair) seal(r Role) error {
	peerKey := p.sides[r.other()-1].key.Keys[p.suite]
	ct, err := p.suite.sealPart(peerKey, r, &p.t2, p.parts[r-1][:])
	if err != nil {
		return err
	}
	p.sealed[r-1] = ct
	return nil
}

// sign is phase 3, step 1 for role r: sign the sealed part.
func (p *floorPair) sign(r Role) error {
	sig, err := signPart(p.sides[r-1].identity, r, &p.t2, p.sealed[r-1])
	if err != nil {
		return err
	}
	p.sigs[r-1] = sig
	return nil
}

// verify is phase 3, step 2 for the receiver of role r's part: check r's
// signature.
func (p *floorPair) verify(r Role) error {
	if !verifyPart(p.sides[r-1].identity.GetPublic(), r, &p.t2, p.sealed[r-1], p.sigs[r-1]) {
		return ErrBadSignature
	}
	return nil
}

// open is phase 3, step 2 for the receiver of role r's part: open it.
func (p *floorPair) open(r Role) error {
	receiver := p.sides[r.other()-1].key
	pt, err := p.suite.openPart(receiver.private[p.suite], r, &p.t2, p.sealed[r-1])
	if err != nil || len(pt) != PartSize {
		return ErrDecrypt
	}
	clear(pt)
	return nil
}

// exchange runs the floor of one exchange: seal, sign, verify and open for
// both sides.
func (p *floorPair) exchange() error {
	for _, r := range []Role{Initiator, Responder} {
		if err := p.seal(r); err != nil {
			return err
		}
		if err := p.sign(r); err != nil {
			return err
		}
	}
	for _, r := range []Role{Initiator, Responder} {
		if err := p.verify(r); err != nil {
			return err
		}
		if err := p.open(r); err != nil {
			return err
		}
	}
	return nil
}

// Floor is the crypto floor of one exchange as a reusable workload: two
// sides' keys generated once, then Exchange as often as wanted. The load
// tool runs it beside the exchanges it measures.
type Floor struct{ p *floorPair }

// NewFloor generates the keys of both sides for suite.
func NewFloor(suite Suite) (*Floor, error) {
	p, err := newFloorPair(suite)
	if err != nil {
		return nil, err
	}
	return &Floor{p: p}, nil
}

// Exchange runs the floor of one exchange: seal, sign, verify and open,
// for both sides.
func (f *Floor) Exchange() error { return f.p.exchange() }

// MeasureFloor runs the crypto floor of n exchanges of suite on the calling
// goroutine and returns the mean wall time per exchange: the CPU time one
// exchange's unavoidable cryptography takes, for both sides together, when
// nothing else runs. Key generation is not counted.
func MeasureFloor(suite Suite, n int) (time.Duration, error) {
	if n <= 0 {
		return 0, errors.New("MeasureFloor: n must be positive")
	}
	f, err := NewFloor(suite)
	if err != nil {
		return 0, err
	}
	// One untimed round warms caches and lazily initialised tables.
	if err := f.Exchange(); err != nil {
		return 0, err
	}
	start := time.Now()
	for range n {
		if err := f.Exchange(); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(n), nil
}
