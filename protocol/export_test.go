package protocol

import "github.com/p2pkex/p2pkex/protocol/pb"

// Test-only hooks for the external package protocol_test (hostile_test.go),
// whose misbehaving peers run an honest Machine and tamper with what it
// sends. They reach only what a peer could compute itself: its own key part,
// its own transcript, and the public derivations of the specification.

// SetPartForTest replaces the machine's key part after its commitment was
// computed (and sent), so that the PART it seals later no longer matches the
// commitment.
func (m *Machine) SetPartForTest(p [PartSize]byte) { m.part = p }

// TranscriptT2ForTest returns the phase-2 transcript checkpoint the
// machine's key part is bound to; zero before phase 3.
func (m *Machine) TranscriptT2ForTest() [32]byte { return m.t2 }

// PartSigInputForTest is what role r signs over its sealed part.
func PartSigInputForTest(r Role, t2 [32]byte, ciphertext []byte) []byte {
	return partSigInput(r, &t2, ciphertext)
}

// SplitForTest cuts item into the chunks of notices of noticeSize bytes.
func SplitForTest(item []byte, noticeSize int) []*pb.Chunk { return split(item, noticeSize) }
