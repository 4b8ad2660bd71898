package protocol

import (
	"bytes"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

const (
	// RecordDomain is the signing domain of exchange-key record envelopes.
	RecordDomain = "p2pkex-exchange-key"
	// FingerprintSize is the size of a fingerprint: a SHA2-256 multihash.
	FingerprintSize = 34
)

// RecordCodec is the payload type of exchange-key record envelopes.
var RecordCodec = []byte("/p2pkex/exchange-key/1")

// Fingerprint names one signed exchange-key record: the SHA2-256 multihash
// (0x12 0x20 followed by the digest) of the record's envelope bytes.
type Fingerprint [FingerprintSize]byte

// FingerprintOf returns the fingerprint of an envelope.
func FingerprintOf(envelope []byte) Fingerprint {
	var f Fingerprint
	f[0], f[1] = 0x12, 0x20
	sum := sha256.Sum256(envelope)
	copy(f[2:], sum[:])
	return f
}

// ParseFingerprint checks that b is a SHA2-256 multihash.
func ParseFingerprint(b []byte) (Fingerprint, error) {
	var f Fingerprint
	if len(b) != FingerprintSize || b[0] != 0x12 || b[1] != 0x20 {
		return f, fmt.Errorf("%w: not a SHA2-256 multihash", ErrFingerprint)
	}
	copy(f[:], b)
	return f, nil
}

// Equal compares two fingerprints in constant time.
func (f Fingerprint) Equal(o Fingerprint) bool { return subtle.ConstantTimeCompare(f[:], o[:]) == 1 }

func (f Fingerprint) String() string { return hex.EncodeToString(f[2:]) }

// KeyRecord is the payload of a signed exchange-key record: a peer's
// exchange keys, one per suite.
type KeyRecord struct {
	Peer    peer.ID
	Seq     uint64
	Created time.Time
	Expires time.Time
	Keys    map[Suite]hpke.PublicKey
}

var _ record.Record = (*KeyRecord)(nil)

// Domain implements record.Record.
func (r *KeyRecord) Domain() string { return RecordDomain }

// Codec implements record.Record.
func (r *KeyRecord) Codec() []byte { return RecordCodec }

// MarshalRecord implements record.Record. Keys are written in suite order,
// so that equal records marshal to equal bytes.
func (r *KeyRecord) MarshalRecord() ([]byte, error) {
	m := &pb.ExchangeKeyRecord{
		PeerId:  []byte(r.Peer),
		Seq:     r.Seq,
		Created: r.Created.Unix(),
		Expires: r.Expires.Unix(),
	}
	for _, s := range slices.Sorted(maps.Keys(r.Keys)) {
		m.Keys = append(m.Keys, &pb.ExchangeKeyRecord_SuiteKey{Suite: uint32(s), PublicKey: r.Keys[s].Bytes()})
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// UnmarshalRecord implements record.Record. Suites this implementation does
// not know are skipped; a record without a known suite is an error.
func (r *KeyRecord) UnmarshalRecord(b []byte) error {
	var m pb.ExchangeKeyRecord
	if err := proto.Unmarshal(b, &m); err != nil {
		return err
	}
	id, err := peer.IDFromBytes(m.PeerId)
	if err != nil {
		return fmt.Errorf("peer id: %w", err)
	}
	keys := make(map[Suite]hpke.PublicKey, len(m.Keys))
	for _, k := range m.Keys {
		if k.Suite > 0xffff {
			continue
		}
		s := Suite(k.Suite)
		if !s.Known() {
			continue
		}
		if _, dup := keys[s]; dup {
			return fmt.Errorf("suite %v listed twice", s)
		}
		kem, _ := s.KEM()
		pk, err := kem.NewPublicKey(k.PublicKey)
		if err != nil {
			return fmt.Errorf("%v public key: %w", s, err)
		}
		keys[s] = pk
	}
	if len(keys) == 0 {
		return errors.New("no key of a known suite")
	}
	*r = KeyRecord{Peer: id, Seq: m.Seq, Created: time.Unix(m.Created, 0), Expires: time.Unix(m.Expires, 0), Keys: keys}
	return nil
}

// openEnvelope checks an envelope's signature, domain and payload type and
// decodes its record.
func openEnvelope(envelope []byte) (*record.Envelope, KeyRecord, error) {
	var rec KeyRecord
	env, err := record.ConsumeTypedEnvelope(envelope, &rec)
	if err != nil {
		return nil, rec, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	// ConsumeTypedEnvelope checks the domain but not the payload type.
	if !bytes.Equal(env.PayloadType, RecordCodec) {
		return nil, rec, fmt.Errorf("%w: payload type %q", ErrBadRecord, env.PayloadType)
	}
	return env, rec, nil
}

// PeerRecord is a validated exchange-key record of a peer.
type PeerRecord struct {
	KeyRecord
	Envelope    []byte // exactly as signed and sent
	Fingerprint Fingerprint
}

// ParsePeerRecord validates the envelope of a record that must belong to
// remote, at time now: size before parsing, envelope signature, signer and
// named peer equal to remote, a lifetime that is bounded (CheckLifetime),
// created no later than now+MaxClockSkew, not expired (docs/PROTOCOL.md
// section 8, rules V32-V38).
func ParsePeerRecord(envelope []byte, remote peer.ID, now time.Time) (*PeerRecord, error) {
	if len(envelope) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadRecord, len(envelope), MaxRecordSize)
	}
	env, rec, err := openEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: signer: %v", ErrBadRecord, err)
	}
	if signer != remote || rec.Peer != remote {
		return nil, fmt.Errorf("%w: signed by %s for %s, expected %s", ErrWrongSigner, signer, rec.Peer, remote)
	}
	// Before the clock checks: a record valid for years would otherwise
	// pass them, and once held it would make every honest record of the
	// peer a rollback until its expiry.
	if err := checkLifetime(rec.Created, rec.Expires); err != nil {
		return nil, err
	}
	if rec.Created.After(now.Add(MaxClockSkew)) {
		return nil, fmt.Errorf("%w: created in the future (%s)", ErrBadRecord, stamp(rec.Created))
	}
	if !now.Before(rec.Expires) {
		return nil, fmt.Errorf("%w: expired at %s", ErrBadRecord, stamp(rec.Expires))
	}
	return &PeerRecord{KeyRecord: rec, Envelope: bytes.Clone(envelope), Fingerprint: FingerprintOf(envelope)}, nil
}

// checkLifetime checks that a record's validity is not empty and at most
// MaxRecordLifetime long (rules V50, V51). time.Time.Sub saturates, so
// extreme values on the wire are refused too.
func checkLifetime(created, expires time.Time) error {
	if !expires.After(created) {
		return fmt.Errorf("%w: expires at %s, not after its creation at %s", ErrBadRecord, stamp(expires), stamp(created))
	}
	if d := expires.Sub(created); d > MaxRecordLifetime {
		return fmt.Errorf("%w: valid for %v, more than the %v allowed", ErrBadRecord, d, MaxRecordLifetime)
	}
	return nil
}

// ExchangeKey is the node's own exchange key: the signed record it publishes
// and the private keys behind it.
type ExchangeKey struct {
	PeerRecord
	private map[Suite]hpke.PrivateKey
	// identity is the identity key the record was signed with (checked to
	// be Peer's), so that NewMachine can check Config.Identity against it
	// without deriving a peer ID on every exchange; nil if unknown.
	identity crypto.PrivKey
}

// NewExchangeKey generates a key pair for each suite and signs a record for
// them with the identity key, valid for lifetime from now (whole seconds).
// lifetime must be positive and at most MaxRecordLifetime: peers refuse a
// record valid for longer (docs/PROTOCOL.md section 8).
func NewExchangeKey(identity crypto.PrivKey, suites []Suite, seq uint64, now time.Time, lifetime time.Duration) (*ExchangeKey, error) {
	if len(suites) == 0 {
		return nil, errors.New("no suites")
	}
	if err := checkOwnLifetime(lifetime); err != nil {
		return nil, err
	}
	priv := make(map[Suite]hpke.PrivateKey, len(suites))
	for _, s := range suites {
		kem, err := s.KEM()
		if err != nil {
			return nil, err
		}
		sk, err := kem.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("generate %v key: %w", s, err)
		}
		priv[s] = sk
	}
	return sealExchangeKey(identity, priv, seq, now, lifetime)
}

// checkOwnLifetime refuses a lifetime for a new record of our own that
// peers would refuse (checkLifetime).
func checkOwnLifetime(lifetime time.Duration) error {
	if lifetime <= 0 || lifetime > MaxRecordLifetime {
		return fmt.Errorf("exchange-key record lifetime %v outside (0, %v]", lifetime, MaxRecordLifetime)
	}
	return nil
}

func sealExchangeKey(identity crypto.PrivKey, priv map[Suite]hpke.PrivateKey, seq uint64, now time.Time, lifetime time.Duration) (*ExchangeKey, error) {
	if err := checkOwnLifetime(lifetime); err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(identity)
	if err != nil {
		return nil, err
	}
	rec := KeyRecord{Peer: id, Seq: seq, Created: now.Truncate(time.Second), Expires: now.Add(lifetime).Truncate(time.Second)}
	// A lifetime under a second may vanish in the truncation.
	if err := checkLifetime(rec.Created, rec.Expires); err != nil {
		return nil, fmt.Errorf("exchange-key record lifetime %v: %w", lifetime, err)
	}
	return sealRecord(identity, rec, priv)
}

// sealRecord signs rec, with the public keys of priv, as id's record. It
// checks no bound: NewExchangeKey does, and package protocoltest forges
// out-of-bounds records through it (internal/hooks).
func sealRecord(identity crypto.PrivKey, rec KeyRecord, priv map[Suite]hpke.PrivateKey) (*ExchangeKey, error) {
	rec.Keys = make(map[Suite]hpke.PublicKey, len(priv))
	for s, sk := range priv {
		rec.Keys[s] = sk.PublicKey()
	}
	env, err := record.Seal(&rec, identity)
	if err != nil {
		return nil, fmt.Errorf("sign exchange-key record: %w", err)
	}
	b, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("exchange-key record is %d bytes, limit %d (identity key too large?)", len(b), MaxRecordSize)
	}
	return &ExchangeKey{PeerRecord: PeerRecord{KeyRecord: rec, Envelope: b, Fingerprint: FingerprintOf(b)}, private: priv, identity: identity}, nil
}

// LoadExchangeKey rebuilds an exchange key from its envelope and serialized
// private keys (as returned by PrivateKeys), checking that they belong
// together and to the identity. Expiry is not checked: the caller rotates.
func LoadExchangeKey(identity crypto.PrivKey, envelope []byte, private map[Suite][]byte) (*ExchangeKey, error) {
	id, err := peer.IDFromPrivateKey(identity)
	if err != nil {
		return nil, err
	}
	env, rec, err := openEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	if !env.PublicKey.Equals(identity.GetPublic()) || rec.Peer != id {
		return nil, fmt.Errorf("%w: exchange key belongs to another identity", ErrBadRecord)
	}
	priv := make(map[Suite]hpke.PrivateKey, len(private))
	for s, b := range private {
		kem, err := s.KEM()
		if err != nil {
			return nil, err
		}
		sk, err := kem.NewPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%v private key: %w", s, err)
		}
		pk, ok := rec.Keys[s]
		if !ok || !bytes.Equal(pk.Bytes(), sk.PublicKey().Bytes()) {
			return nil, fmt.Errorf("%w: %v private key does not match the record", ErrBadRecord, s)
		}
		priv[s] = sk
	}
	if len(priv) != len(rec.Keys) {
		return nil, fmt.Errorf("%w: record lists a key without its private key", ErrBadRecord)
	}
	return &ExchangeKey{PeerRecord: PeerRecord{KeyRecord: rec, Envelope: bytes.Clone(envelope), Fingerprint: FingerprintOf(envelope)}, private: priv, identity: identity}, nil
}

// PrivateKeys serializes the private keys, for storage. The caller must keep
// the result secret.
func (k *ExchangeKey) PrivateKeys() (map[Suite][]byte, error) {
	out := make(map[Suite][]byte, len(k.private))
	for s, sk := range k.private {
		b, err := sk.Bytes()
		if err != nil {
			return nil, err
		}
		out[s] = b
	}
	return out, nil
}

// Suites lists the suites the key covers, in ascending order.
func (k *ExchangeKey) Suites() []Suite { return slices.Sorted(maps.Keys(k.private)) }
