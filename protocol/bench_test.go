package protocol

import (
	"bytes"
	"fmt"
	"testing"
)

// Benchmarks of the exchange without a network. docs/PERFORMANCE.md lists
// the figures and how to reproduce them:
//
//	go test -run '^$' -bench . -benchmem ./protocol/
//
// BenchmarkFloor times the public-key operations one exchange cannot do
// without (floor.go); BenchmarkMachineExchange times a whole exchange, both
// sides, through the state machines and the framing. Their ratio is what
// the protocol adds to the cryptography, before any I/O.

// BenchmarkFloor is the crypto floor, per suite: each operation alone, then
// Exchange, all of them for both sides (what MeasureFloor times). Hash is
// the hashing the floor leaves out (commitment, HKDF session derivation,
// two confirmation MACs), per side, for comparison.
func BenchmarkFloor(b *testing.B) {
	for _, suite := range DefaultSuites() {
		b.Run(suite.String(), func(b *testing.B) {
			p, err := newFloorPair(suite)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.exchange(); err != nil {
				b.Fatal(err)
			}
			ops := []struct {
				name string
				op   func(Role) error
			}{
				{"Seal", p.seal},
				{"Sign", p.sign},
				{"Verify", p.verify},
				{"Open", p.open},
			}
			for _, o := range ops {
				b.Run(o.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if err := o.op(Initiator); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			b.Run("Exchange", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := p.exchange(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Hash", func(b *testing.B) {
				b.ReportAllocs()
				var t3 [32]byte
				for b.Loop() {
					_ = commitment(Initiator, &p.parts[0])
					s, err := deriveSession(&p.parts[0], &p.parts[1], &t3)
					if err != nil {
						b.Fatal(err)
					}
					_ = confirmationMAC(s, Initiator, &t3)
					_ = confirmationMAC(s, Responder, &t3)
				}
			})
		})
	}
}

// benchSide is one side of BenchmarkMachineExchange.
type benchSide struct {
	m     *Machine
	inbox bytes.Buffer // frames the side has yet to read
	fr    *FrameReader
}

// benchExchange runs a whole exchange between two fresh machines in memory:
// every frame is framed as Run frames it, written to the peer's inbox and
// read back with a FrameReader.
func benchExchange(a, b *party, knownB, knownA *PeerRecord, suite Suite) error {
	mk := func(role Role, self *party, remote *party, known *PeerRecord) (*benchSide, error) {
		m, err := NewMachine(Config{Role: role, Identity: self.sk, Remote: remote.id, Own: self.key,
			Known: known, Suites: []Suite{suite}, Epoch: 1})
		if err != nil {
			return nil, err
		}
		s := &benchSide{m: m}
		s.fr = NewFrameReader(&s.inbox)
		return s, nil
	}
	sa, err := mk(Initiator, a, b, knownB)
	if err != nil {
		return err
	}
	sb, err := mk(Responder, b, a, knownA)
	if err != nil {
		return err
	}
	send := func(to *benchSide, out []Frame) error {
		if len(out) == 0 {
			return nil
		}
		bufs := make([][]byte, len(out))
		for i, f := range out {
			bufs[i] = f.Bytes
		}
		return WriteFrames(&to.inbox, bufs)
	}
	out, err := sa.m.Start()
	if err != nil {
		return err
	}
	if err := send(sb, out); err != nil {
		return err
	}
	for !(sa.m.Done() && sb.m.Done()) {
		progressed := false
		for _, p := range [][2]*benchSide{{sb, sa}, {sa, sb}} {
			self, peer := p[0], p[1]
			for self.inbox.Len() > 0 {
				frame, err := self.fr.ReadFrame(self.m.MaxFrame())
				if err != nil {
					return err
				}
				out, err := self.m.Consume(frame)
				if err != nil {
					return fmt.Errorf("%v: %w", self.m.Role(), err)
				}
				if err := send(peer, out); err != nil {
					return err
				}
				progressed = true
			}
		}
		if !progressed {
			return fmt.Errorf("stalled in %v / %v", sa.m.Phase(), sb.m.Phase())
		}
	}
	ra, rb := sa.m.Result(), sb.m.Result()
	if ra == nil || rb == nil || ra.Key != rb.Key {
		return fmt.Errorf("keys differ")
	}
	sa.m.Wipe()
	sb.m.Wipe()
	return nil
}

// BenchmarkMachineExchange is a whole exchange, both sides, in memory:
// NewMachine, every notice marshalled, framed, read back and consumed,
// with both records known (phase 2 empty) and with both records sent.
func BenchmarkMachineExchange(b *testing.B) {
	for _, suite := range DefaultSuites() {
		for _, keys := range []string{"KeysKnown", "BothKeys"} {
			b.Run(suite.String()+"/"+keys, func(b *testing.B) {
				a, c := newParty(b, suite), newParty(b, suite)
				var knownC, knownA *PeerRecord
				if keys == "KeysKnown" {
					knownC, knownA = c.record(), a.record()
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := benchExchange(a, c, knownC, knownA, suite); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestMeasureFloor checks that MeasureFloor runs for both suites (never how
// long it takes).
func TestMeasureFloor(t *testing.T) {
	for _, suite := range DefaultSuites() {
		d, err := MeasureFloor(suite, 2)
		if err != nil {
			t.Fatalf("%v: %v", suite, err)
		}
		if d <= 0 {
			t.Fatalf("%v: non-positive duration %v", suite, d)
		}
	}
	if _, err := MeasureFloor(Suite(99), 1); err == nil {
		t.Fatal("unknown suite accepted")
	}
	// The in-memory exchange the benchmarks run must agree on a key.
	a, c := newParty(t), newParty(t)
	for _, known := range []bool{true, false} {
		var kc, ka *PeerRecord
		if known {
			kc, ka = c.record(), a.record()
		}
		if err := benchExchange(a, c, kc, ka, SuiteMLKEM768X25519); err != nil {
			t.Fatalf("known=%v: %v", known, err)
		}
	}
}
