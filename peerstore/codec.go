package peerstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/peerstore/pb"
)

// The encoding of the bbolt store's keys and values (see bolt.go for the
// layout). Every decoder validates what it reads and fails with an error
// wrapping ErrCorrupt; none panics on any input (fuzz_test.go). Decoders copy
// what they keep, so their input may be memory that bbolt reuses after the
// transaction.

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func encodeEpoch(epoch uint64) []byte { return binary.BigEndian.AppendUint64(nil, epoch) }

func decodeEpoch(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, corrupt("epoch key is %d bytes, want 8", len(k))
	}
	e := binary.BigEndian.Uint64(k)
	if e == 0 {
		return 0, corrupt("epoch 0")
	}
	return e, nil
}

func decodePeerID(k []byte) (peer.ID, error) {
	p, err := peer.IDFromBytes(k) // copies k
	if err != nil {
		return "", corrupt("peer ID: %v", err)
	}
	return p, nil
}

func encodeTime(t time.Time) *pb.Time {
	if t.IsZero() {
		return nil
	}
	return &pb.Time{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
}

func decodeTime(m *pb.Time, what string) (time.Time, error) {
	if m == nil {
		return time.Time{}, nil
	}
	if m.Nanos < 0 || m.Nanos >= 1e9 {
		return time.Time{}, corrupt("%s: nanoseconds %d out of range", what, m.Nanos)
	}
	return time.Unix(m.Seconds, int64(m.Nanos)), nil
}

func decodeSuite(v uint32, what string) (uint16, error) {
	if v > math.MaxUint16 {
		return 0, corrupt("%s: suite %d out of range", what, v)
	}
	return uint16(v), nil
}

// decodeIdentity decodes the identity key (crypto.MarshalPrivateKey output).
func decodeIdentity(v []byte) (crypto.PrivKey, error) {
	k, err := crypto.UnmarshalPrivateKey(v)
	if err != nil {
		return nil, corrupt("identity key: %v", err)
	}
	return k, nil
}

// encodeExchangeKey encodes one of the node's exchange keys with its
// private keys sealed: sealed[i] is k.Keys[i].Private sealed (shred.go).
// k's plaintext private keys are not written.
func encodeExchangeKey(k *ExchangeKey, sealed [][]byte) ([]byte, error) {
	if len(sealed) != len(k.Keys) {
		return nil, fmt.Errorf("peerstore: %d sealed keys for %d suites", len(sealed), len(k.Keys))
	}
	m := &pb.ExchangeKey{
		Seq:     k.Seq,
		Record:  k.Record,
		Created: encodeTime(k.Created),
		Retire:  encodeTime(k.Retire),
	}
	for i, sk := range k.Keys {
		m.Keys = append(m.Keys, &pb.SuiteKey{Suite: uint32(sk.Suite), Sealed: sealed[i]})
	}
	return proto.Marshal(m)
}

// exchangeWhere is the place of an exchange private key, for sealAD.
func exchangeWhere(seq uint64, suite uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, seq), suite)
}

// decodeExchangeKey decodes one of the node's exchange keys. Each private
// key is either sealed (schema version 2: sealed[i] is set, Keys[i].Private
// nil) or, in a version-1 value, plaintext (Keys[i].Private set, sealed[i]
// nil); a value with both or neither is corrupt. The message's copies of
// plaintext private keys are overwritten once they are copied out.
func decodeExchangeKey(v []byte) (_ *ExchangeKey, sealed [][]byte, err error) {
	var m pb.ExchangeKey
	if err := proto.Unmarshal(v, &m); err != nil {
		return nil, nil, corrupt("exchange key: %v", err)
	}
	defer func() {
		for _, sk := range m.Keys {
			clear(sk.GetPrivate())
		}
	}()
	k := &ExchangeKey{Seq: m.Seq, Record: bytes.Clone(m.Record)}
	if k.Created, err = decodeTime(m.Created, "exchange key created"); err != nil {
		return nil, nil, err
	}
	if k.Retire, err = decodeTime(m.Retire, "exchange key retire"); err != nil {
		return nil, nil, err
	}
	if len(m.Keys) > 0 {
		k.Keys = make([]SuiteKey, len(m.Keys))
		sealed = make([][]byte, len(m.Keys))
	}
	for i, sk := range m.Keys {
		if k.Keys[i].Suite, err = decodeSuite(sk.GetSuite(), "exchange key"); err != nil {
			wipeExchangeKey(k)
			return nil, nil, err
		}
		switch priv, seal := sk.GetPrivate(), sk.GetSealed(); {
		case len(priv) > 0 && len(seal) == 0:
			k.Keys[i].Private = bytes.Clone(priv)
		case len(priv) == 0 && len(seal) > 0:
			if _, err := sealedSlot(seal, -1); err != nil {
				wipeExchangeKey(k)
				return nil, nil, err
			}
			sealed[i] = seal // proto.Unmarshal copied it
		default:
			wipeExchangeKey(k)
			return nil, nil, corrupt("exchange key suite %#x: want exactly one of private and sealed", k.Keys[i].Suite)
		}
	}
	return k, sealed, nil
}

func encodePeerKey(k *PeerKey) ([]byte, error) {
	return proto.Marshal(&pb.PeerKey{
		Seq:         k.Seq,
		Record:      k.Record,
		Fingerprint: k.Fingerprint,
		Trust:       uint32(k.Trust),
		FirstSeen:   encodeTime(k.FirstSeen),
		LastSeen:    encodeTime(k.LastSeen),
	})
}

// decodePeerKey decodes a peer's record from its key (the peer ID's bytes)
// and value.
func decodePeerKey(k, v []byte) (*PeerKey, error) {
	p, err := decodePeerID(k)
	if err != nil {
		return nil, err
	}
	var m pb.PeerKey
	if err := proto.Unmarshal(v, &m); err != nil {
		return nil, corrupt("peer %s: %v", p, err)
	}
	if m.Trust < uint32(TrustFirstUse) || m.Trust > uint32(TrustChanged) {
		return nil, corrupt("peer %s: trust state %d out of range", p, m.Trust)
	}
	pk := &PeerKey{
		Peer:        p,
		Seq:         m.Seq,
		Record:      m.Record, // proto.Unmarshal copied it
		Fingerprint: m.Fingerprint,
		Trust:       TrustState(m.Trust),
	}
	if pk.FirstSeen, err = decodeTime(m.FirstSeen, "peer first seen"); err != nil {
		return nil, err
	}
	if pk.LastSeen, err = decodeTime(m.LastSeen, "peer last seen"); err != nil {
		return nil, err
	}
	return pk, nil
}

// peekPeerKey reads a stored peer record as decodePeerKey does, without
// copying it: Record and Fingerprint alias v (so the result is valid only
// while v is: within the transaction that read it), Peer is left empty,
// and nothing is allocated. It exists for commitTx, which at every commit
// needs only to compare the stored record with the commit's and read its
// LastSeen (seenRecently); decoding it there copied its 1.4 KB (a fifth of
// a commit's allocation) for nothing in the common case.
//
// ok is false where decodePeerKey would fail (the caller then decodes,
// which says why); where ok is true, the fields are decodePeerKey's
// (FuzzPeekPeerKey).
func peekPeerKey(v []byte) (pk PeerKey, ok bool) {
	var trust uint32
	var first, last peekedTime
	for len(v) > 0 {
		f, n := nextField(v)
		if n < 0 {
			return PeerKey{}, false
		}
		v = v[n:]
		ok = true
		switch {
		case f.is(1, protowire.VarintType):
			pk.Seq = f.x
		case f.is(2, protowire.BytesType):
			pk.Record = f.b
		case f.is(3, protowire.BytesType):
			pk.Fingerprint = f.b
		case f.is(4, protowire.VarintType):
			trust = uint32(f.x)
		case f.is(5, protowire.BytesType):
			ok = first.merge(f.b)
		case f.is(6, protowire.BytesType):
			ok = last.merge(f.b)
		}
		if !ok {
			return PeerKey{}, false
		}
	}
	if trust < uint32(TrustFirstUse) || trust > uint32(TrustChanged) {
		return PeerKey{}, false
	}
	pk.Trust = TrustState(trust)
	var okFirst, okLast bool
	pk.FirstSeen, okFirst = first.time()
	pk.LastSeen, okLast = last.time()
	return pk, okFirst && okLast
}

// peekSessionSlot returns the shredding slot of a stored session epoch's
// key as sessionSlot does, without decoding the session: commitTx needs
// only that of the epoch it prunes. ok is false where sessionSlot would
// fail (for a valid peer ID and epoch key; the caller then calls it,
// which says why); where ok is true, the slot is sessionSlot's
// (FuzzPeekSessionSlot).
func peekSessionSlot(v []byte) (slot uint64, ok bool) {
	m, ok := peekSession(v)
	return m.slot, ok
}

// sessionMeta is what a stored session epoch holds in the clear: its key
// ID, suite and creation time, and the shredding slot of its sealed key.
type sessionMeta struct {
	id      KeyID
	suite   uint16
	created time.Time
	slot    uint64
}

// peekSession reads a stored session epoch as decodeSession does, without
// copying it or opening its key: ListPeers needs of the active epoch only
// what sessionMeta holds, and commitTx of the epoch it prunes only the
// slot. ok is false where decodeSession or sessionSlot would fail (for a
// valid peer ID and epoch key; the caller then calls one, which says
// why); where ok is true, the fields are theirs (FuzzPeekSessionSlot).
func peekSession(v []byte) (m sessionMeta, ok bool) {
	var key, sealed, id []byte
	var suite uint32
	var created peekedTime
	for len(v) > 0 {
		f, n := nextField(v)
		if n < 0 {
			return sessionMeta{}, false
		}
		v = v[n:]
		ok = true
		switch {
		case f.is(1, protowire.BytesType):
			key = f.b
		case f.is(2, protowire.BytesType):
			id = f.b
		case f.is(3, protowire.VarintType):
			suite = uint32(f.x)
		case f.is(4, protowire.BytesType):
			ok = created.merge(f.b)
		case f.is(5, protowire.BytesType):
			sealed = f.b
		}
		if !ok {
			return sessionMeta{}, false
		}
	}
	if len(key) != 0 || len(id) != KeyIDSize || suite > math.MaxUint16 {
		return sessionMeta{}, false
	}
	if m.created, ok = created.time(); !ok {
		return sessionMeta{}, false
	}
	slot, err := sealedSlot(sealed, KeySize)
	if err != nil {
		return sessionMeta{}, false
	}
	m.slot, m.suite = slot, uint16(suite)
	copy(m.id[:], id)
	return m, true
}

// field is one field of a protobuf message, read by nextField: x is the
// value of a varint, b that of a length-delimited field (aliasing the
// input).
type field struct {
	num protowire.Number
	typ protowire.Type
	x   uint64
	b   []byte
}

func (f *field) is(num protowire.Number, typ protowire.Type) bool {
	return f.num == num && f.typ == typ
}

// nextField reads the field at the start of b, as proto.Unmarshal does,
// and returns its length (negative if it is malformed). What the peeks
// above read is what proto.Unmarshal reads, because they follow its rules
// (google.golang.org/protobuf/internal/impl, unmarshalPointerEager): a
// field number outside 1 to protowire.MaxValidNumber or an end of group
// that no group opened is malformed; the last value of a scalar or bytes
// field wins; the occurrences of a message field merge (peekedTime.merge);
// a known field of another wire type is an unknown field, and unknown
// fields are skipped by protowire.ConsumeFieldValue, as there.
func nextField(b []byte) (f field, n int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num > protowire.MaxValidNumber {
		return field{}, -1
	}
	f.num, f.typ = num, typ
	var m int
	switch typ {
	case protowire.VarintType:
		f.x, m = protowire.ConsumeVarint(b[n:])
	case protowire.BytesType:
		f.b, m = protowire.ConsumeBytes(b[n:])
	default:
		m = protowire.ConsumeFieldValue(num, typ, b[n:])
	}
	if m < 0 {
		return field{}, -1
	}
	return f, n + m
}

// peekedTime is a pb.Time read by the peeks: set once the field occurs.
type peekedTime struct {
	set     bool
	seconds int64
	nanos   int32
}

// merge reads one occurrence of the field (the bytes of a pb.Time) into
// t, as proto.Unmarshal merges it into the message.
func (t *peekedTime) merge(b []byte) bool {
	t.set = true
	for len(b) > 0 {
		f, n := nextField(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case f.is(1, protowire.VarintType):
			t.seconds = int64(f.x)
		case f.is(2, protowire.VarintType):
			t.nanos = int32(f.x)
		}
	}
	return true
}

// time is decodeTime's answer for t.
func (t *peekedTime) time() (time.Time, bool) {
	if !t.set {
		return time.Time{}, true
	}
	if t.nanos < 0 || t.nanos >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(t.seconds, int64(t.nanos)), true
}

// encodeSession encodes a session epoch whose key is sealed (shred.go); s's
// plaintext key is not written.
func encodeSession(s *SessionKey, sealed []byte) ([]byte, error) {
	return proto.Marshal(&pb.SessionKey{
		Sealed:  sealed,
		KeyId:   s.ID[:],
		Suite:   uint32(s.Suite),
		Created: encodeTime(s.Created),
	})
}

// sessionWhere is the place of a session key, for sealAD.
func sessionWhere(peerKey, epochKey []byte) []byte {
	return append(append([]byte(nil), peerKey...), epochKey...)
}

// decodeSession decodes one session epoch from the name of the peer's bucket,
// the epoch key and the value. The key is either sealed (schema version 2:
// sealed is returned and s.Key is zero) or, in a version-1 value, plaintext
// (s.Key is set, sealed nil); a value with both or neither is corrupt. The
// message's copy of a plaintext key is overwritten.
func decodeSession(peerKey, epochKey, v []byte) (s *SessionKey, sealed []byte, err error) {
	p, err := decodePeerID(peerKey)
	if err != nil {
		return nil, nil, err
	}
	epoch, err := decodeEpoch(epochKey)
	if err != nil {
		return nil, nil, err
	}
	var m pb.SessionKey
	if err := proto.Unmarshal(v, &m); err != nil {
		return nil, nil, corrupt("session %s/%d: %v", p, epoch, err)
	}
	defer clear(m.Key)
	switch {
	case len(m.Key) == 0 && len(m.Sealed) > 0:
		if _, err := sealedSlot(m.Sealed, KeySize); err != nil {
			return nil, nil, corrupt("session %s/%d: %v", p, epoch, err)
		}
		sealed = m.Sealed
	case len(m.Key) == KeySize && len(m.Sealed) == 0:
	case len(m.Sealed) == 0:
		return nil, nil, corrupt("session %s/%d: key is %d bytes, want %d", p, epoch, len(m.Key), KeySize)
	default:
		return nil, nil, corrupt("session %s/%d: both a plaintext and a sealed key", p, epoch)
	}
	if len(m.KeyId) != KeyIDSize {
		return nil, nil, corrupt("session %s/%d: key ID is %d bytes, want %d", p, epoch, len(m.KeyId), KeyIDSize)
	}
	s = &SessionKey{Peer: p, Epoch: epoch}
	if s.Suite, err = decodeSuite(m.Suite, "session"); err != nil {
		return nil, nil, err
	}
	if s.Created, err = decodeTime(m.Created, "session created"); err != nil {
		return nil, nil, err
	}
	copy(s.Key[:], m.Key)
	copy(s.ID[:], m.KeyId)
	return s, sealed, nil
}

// stateSize is the fixed part of a peer's state value (bolt.go, bucket
// state): flags, trust, seq, epoch; the record's fingerprint follows.
const stateSize = 1 + 1 + 8 + 8

// stateRecord is the flag of a state value whose peer has a record.
const stateRecord = 1

// encodeState encodes what Lookup returns of a peer: the fields of
// PeerState, in a fixed layout, so that Lookup neither decodes a protobuf
// nor reads the record's page.
func encodeState(st *PeerState) []byte {
	v := make([]byte, stateSize, stateSize+len(st.Fingerprint))
	if st.Record {
		v[0] = stateRecord
	}
	v[1] = byte(st.Trust)
	binary.BigEndian.PutUint64(v[2:], st.Seq)
	binary.BigEndian.PutUint64(v[10:], st.Epoch)
	return append(v, st.Fingerprint...)
}

// decodeState decodes a state value. A peer without a record has no
// trust, sequence number or fingerprint; one with neither a record nor a
// session has no value at all.
func decodeState(v []byte) (PeerState, error) {
	if len(v) < stateSize {
		return PeerState{}, corrupt("peer state is %d bytes, want at least %d", len(v), stateSize)
	}
	if v[0]&^stateRecord != 0 {
		return PeerState{}, corrupt("peer state flags %#x", v[0])
	}
	st := PeerState{
		Record: v[0] == stateRecord,
		Trust:  TrustState(v[1]),
		Seq:    binary.BigEndian.Uint64(v[2:]),
		Epoch:  binary.BigEndian.Uint64(v[10:]),
	}
	if fp := v[stateSize:]; len(fp) > 0 {
		st.Fingerprint = bytes.Clone(fp)
	}
	switch {
	case st.Record && checkTrust(st.Trust) != nil:
		return PeerState{}, corrupt("peer state: trust state %d out of range", st.Trust)
	case !st.Record && (st.Trust != 0 || st.Seq != 0 || st.Fingerprint != nil):
		return PeerState{}, corrupt("peer state: record fields without a record")
	case !st.Record && st.Epoch == 0:
		return PeerState{}, corrupt("peer state: neither record nor session")
	}
	return st, nil
}
