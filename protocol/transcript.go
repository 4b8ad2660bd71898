package protocol

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Role is a side of the exchange.
type Role uint8

const (
	// Initiator ("Alice") opens the stream and sends START.
	Initiator Role = 1
	// Responder ("Bob") answers with CONTINUE.
	Responder Role = 2
)

func (r Role) String() string {
	switch r {
	case Initiator:
		return "initiator"
	case Responder:
		return "responder"
	}
	return "invalid-role"
}

func (r Role) other() Role { return 3 - r }

// Labels of every derivation; see docs/PROTOCOL.md, "Derivations".
const (
	labelTranscript = "p2pkex/1.0.0 transcript"
	labelCommitment = "p2pkex/1.0.0 commitment"
	labelPartInfo   = "p2pkex/1.0.0 part"
	labelPartSig    = "p2pkex/1.0.0 part signature"
	labelSessionKey = "p2pkex/1.0.0 session key"
	labelKeyID      = "p2pkex/1.0.0 key id"
	labelConfirm    = "p2pkex/1.0.0 confirm "
	labelSafety     = "p2pkex/1.0.0 safety number"
)

// Stage labels of the transcript checkpoints.
const (
	stagePhase1 = "phase 1"
	stagePhase2 = "phase 2"
	stagePhase3 = "phase 3"
)

// lp appends x with a 4-byte big-endian length prefix.
func lp(dst, x []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(x)))
	return append(dst, x...)
}

// transcript hashes everything both sides said. Within a stage (a phase)
// each direction's frames are hashed in the order they travel, so the result
// does not depend on how the two directions interleave; at the end of a
// stage both directions are folded into the running value:
//
//	T0 = SHA-256(lp(label) || lp(protocol ID) || lp(initiator ID) || lp(responder ID))
//	Tn = SHA-256(lp(label) || lp(stage) || T(n-1) || H(initiator's frames) || H(responder's frames))
//
// where H is SHA-256 over lp(frame) for each frame of the stage.
type transcript struct {
	value [32]byte
	dir   [2]hash.Hash // by Role-1
	// Scratch space for what goes through hash.Hash (and so would escape to
	// the heap on every call): absorb's length prefix, checkpoint's H values.
	pre  [4]byte
	sums [2][sha256.Size]byte
}

func newTranscript(initiator, responder peer.ID) transcript {
	// On the stack for the usual peer IDs (38 bytes for Ed25519 keys); append
	// moves it to the heap if they are longer.
	var buf [16 + len(labelTranscript) + len(ID) + 2*64]byte
	b := buf[:0]
	b = lp(b, []byte(labelTranscript))
	b = lp(b, []byte(ID))
	b = lp(b, []byte(initiator))
	b = lp(b, []byte(responder))
	t := transcript{value: sha256.Sum256(b)}
	t.dir = [2]hash.Hash{sha256.New(), sha256.New()}
	return t
}

// absorb adds a frame sent by role from.
func (t *transcript) absorb(from Role, frame []byte) {
	binary.BigEndian.PutUint32(t.pre[:], uint32(len(frame)))
	t.dir[from-1].Write(t.pre[:])
	t.dir[from-1].Write(frame)
}

// checkpoint ends a stage and returns the new running value.
func (t *transcript) checkpoint(stage string) [32]byte {
	// On the stack for the stages there are ("phase n").
	var buf [8 + len(labelTranscript) + len(stagePhase1) + 3*sha256.Size]byte
	b := buf[:0]
	b = lp(b, []byte(labelTranscript))
	b = lp(b, []byte(stage))
	b = append(b, t.value[:]...)
	b = append(b, t.dir[0].Sum(t.sums[0][:0])...)
	b = append(b, t.dir[1].Sum(t.sums[1][:0])...)
	t.value = sha256.Sum256(b)
	t.dir[0].Reset()
	t.dir[1].Reset()
	return t.value
}

// commitment is the phase-1 commitment of a role to its key part:
// SHA-256(lp(label) || lp(role) || part).
func commitment(r Role, part *[PartSize]byte) [CommitmentSize]byte {
	// Large enough for both roles, so that b stays on the stack.
	var buf [8 + len(labelCommitment) + len("responder") + PartSize]byte
	b := buf[:0]
	b = lp(b, []byte(labelCommitment))
	b = lp(b, []byte(r.String()))
	b = append(b, part[:]...)
	return sha256.Sum256(b)
}

// partInfo is the HPKE info for the part sealed by role r:
// lp(label) || lp(role) || T2.
func partInfo(r Role, t2 *[32]byte) []byte {
	return appendPartInfo(make([]byte, 0, 8+len(labelPartInfo)+len(r.String())+len(t2)), r, t2)
}

// appendPartInfo appends partInfo(r, t2) to dst: sealPart and openPart
// (suite.go) build it in a pooled buffer.
func appendPartInfo(dst []byte, r Role, t2 *[32]byte) []byte {
	dst = lp(dst, []byte(labelPartInfo))
	dst = lp(dst, []byte(r.String()))
	return append(dst, t2[:]...)
}

// partSigInput is what role r signs over its sealed part:
// lp(label) || lp(role) || T2 || lp(ciphertext).
func partSigInput(r Role, t2 *[32]byte, ciphertext []byte) []byte {
	b := make([]byte, 0, 12+len(labelPartSig)+len(r.String())+len(t2)+len(ciphertext))
	return appendPartSigInput(b, r, t2, ciphertext)
}

// appendPartSigInput appends partSigInput(r, t2, ciphertext) to dst:
// signPart and verifyPart (suite.go) build it in a pooled buffer.
func appendPartSigInput(dst []byte, r Role, t2 *[32]byte, ciphertext []byte) []byte {
	dst = lp(dst, []byte(labelPartSig))
	dst = lp(dst, []byte(r.String()))
	dst = append(dst, t2[:]...)
	return lp(dst, ciphertext)
}

// sessionSecrets holds everything derived from the XOR of the parts.
type sessionSecrets struct {
	key     [KeySize]byte
	id      [KeyIDSize]byte
	confirm [2][32]byte // by Role-1
}

// deriveSession derives the session key, its ID and both confirmation keys:
//
//	PRK     = HKDF-Extract(SHA-256, salt = T3, IKM = part_I XOR part_R)
//	key     = HKDF-Expand(PRK, "p2pkex/1.0.0 session key", 32)
//	key ID  = HKDF-Expand(PRK, "p2pkex/1.0.0 key id", 8)
//	confirm = HKDF-Expand(PRK, "p2pkex/1.0.0 confirm " || role, 32)
func deriveSession(partI, partR *[PartSize]byte, t3 *[32]byte) (*sessionSecrets, error) {
	var ikm [PartSize]byte
	for i := range ikm {
		ikm[i] = partI[i] ^ partR[i]
	}
	defer clear(ikm[:])
	prk, err := hkdf.Extract(sha256.New, ikm[:], t3[:])
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	s := new(sessionSecrets)
	if err := expandInto(s.key[:], prk, labelSessionKey); err != nil {
		return nil, err
	}
	if err := expandInto(s.id[:], prk, labelKeyID); err != nil {
		return nil, err
	}
	for _, r := range []Role{Initiator, Responder} {
		if err := expandInto(s.confirm[r-1][:], prk, labelConfirm+r.String()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// expandInto fills dst with HKDF-Expand(prk, label) and wipes the copy
// crypto/hkdf returned.
func expandInto(dst, prk []byte, label string) error {
	out, err := hkdf.Expand(sha256.New, prk, label, len(dst))
	if err != nil {
		return err
	}
	copy(dst, out)
	clear(out)
	return nil
}

// confirmationMAC is role r's PART_RECEIVED MAC: HMAC-SHA256(confirm_r, T3).
func confirmationMAC(s *sessionSecrets, r Role, t3 *[32]byte) [MACSize]byte {
	m := hmac.New(sha256.New, s.confirm[r-1][:])
	m.Write(t3[:])
	var out [MACSize]byte
	m.Sum(out[:0])
	return out
}

func (s *sessionSecrets) wipe() {
	clear(s.key[:])
	clear(s.confirm[0][:])
	clear(s.confirm[1][:])
}
