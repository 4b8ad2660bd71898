package protocol

import (
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Suite names an HPKE ciphersuite for sealing key parts. Its number is the
// one carried on the wire.
type Suite uint16

const (
	// SuiteMLKEM768X25519 is HPKE with the hybrid post-quantum KEM
	// MLKEM768-X25519 (X-Wing), HKDF-SHA256 and ChaCha20-Poly1305. It is the
	// default.
	SuiteMLKEM768X25519 Suite = 1
	// SuiteX25519 is HPKE with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
	// ChaCha20-Poly1305: compact, but not post-quantum.
	SuiteX25519 Suite = 2
)

// DefaultSuites are the suites a node offers and accepts, most preferred first.
func DefaultSuites() []Suite { return []Suite{SuiteMLKEM768X25519, SuiteX25519} }

func (s Suite) String() string {
	switch s {
	case SuiteMLKEM768X25519:
		return "MLKEM768X25519"
	case SuiteX25519:
		return "DHKEM(X25519)"
	}
	return fmt.Sprintf("Suite(%d)", uint16(s))
}

// ParseSuite returns the suite named by s (as printed by String, or
// "X25519").
func ParseSuite(s string) (Suite, error) {
	switch s {
	case "MLKEM768X25519", "mlkem768x25519":
		return SuiteMLKEM768X25519, nil
	case "DHKEM(X25519)", "X25519", "x25519":
		return SuiteX25519, nil
	}
	return 0, fmt.Errorf("unknown suite %q (want MLKEM768X25519 or X25519)", s)
}

// Known reports whether s is a suite this implementation supports.
func (s Suite) Known() bool { return s == SuiteMLKEM768X25519 || s == SuiteX25519 }

// PostQuantum reports whether the suite's KEM resists a quantum computer
// (the hybrid ML-KEM-768 + X25519); the others are classical.
func (s Suite) PostQuantum() bool { return s == SuiteMLKEM768X25519 }

// KEM returns the suite's HPKE KEM.
func (s Suite) KEM() (hpke.KEM, error) {
	switch s {
	case SuiteMLKEM768X25519:
		return hpke.MLKEM768X25519(), nil
	case SuiteX25519:
		return hpke.DHKEM(ecdh.X25519()), nil
	}
	return nil, fmt.Errorf("%w: %v", ErrNoCommonSuite, s)
}

func (s Suite) kdf() hpke.KDF   { return hpke.HKDFSHA256() }
func (s Suite) aead() hpke.AEAD { return hpke.ChaCha20Poly1305() }

// seal encrypts plaintext to pk under the suite.
func (s Suite) seal(pk hpke.PublicKey, info, plaintext []byte) ([]byte, error) {
	return hpke.Seal(pk, s.kdf(), s.aead(), info, plaintext)
}

// open decrypts ciphertext with sk under the suite.
func (s Suite) open(sk hpke.PrivateKey, info, ciphertext []byte) ([]byte, error) {
	return hpke.Open(sk, s.kdf(), s.aead(), info, ciphertext)
}

// The four operations of phase 3 on a key part, as the machine and the
// crypto floor (floor.go) both run them. Their inputs, partInfo and
// partSigInput, are built in pooled buffers (pool.go): HPKE, signing and
// verifying only read them.

// sealPart seals role r's part to the peer's key pk.
func (s Suite) sealPart(pk hpke.PublicKey, r Role, t2 *[32]byte, part []byte) ([]byte, error) {
	info := getBuf()
	defer putBuf(info)
	return s.seal(pk, appendPartInfo((*info)[:0], r, t2), part)
}

// openPart opens role r's sealed part with the receiver's key sk.
func (s Suite) openPart(sk hpke.PrivateKey, r Role, t2 *[32]byte, ciphertext []byte) ([]byte, error) {
	info := getBuf()
	defer putBuf(info)
	return s.open(sk, appendPartInfo((*info)[:0], r, t2), ciphertext)
}

// signPart signs role r's sealed part with r's identity key.
func signPart(identity crypto.PrivKey, r Role, t2 *[32]byte, ciphertext []byte) ([]byte, error) {
	in := getBuf()
	defer putBuf(in)
	return identity.Sign(appendPartSigInput((*in)[:0], r, t2, ciphertext))
}

// verifyPart reports whether sig is role r's signature of its sealed part
// under r's identity key.
func verifyPart(identity crypto.PubKey, r Role, t2 *[32]byte, ciphertext, sig []byte) bool {
	in := getBuf()
	defer putBuf(in)
	ok, err := identity.Verify(appendPartSigInput((*in)[:0], r, t2, ciphertext), sig)
	return err == nil && ok
}
