package peerstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
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

func encodeExchangeKey(k *ExchangeKey) ([]byte, error) {
	m := &pb.ExchangeKey{
		Seq:     k.Seq,
		Record:  k.Record,
		Created: encodeTime(k.Created),
		Retire:  encodeTime(k.Retire),
	}
	for _, sk := range k.Keys {
		m.Keys = append(m.Keys, &pb.SuiteKey{Suite: uint32(sk.Suite), Private: sk.Private})
	}
	return proto.Marshal(m)
}

// decodeExchangeKey decodes one of the node's exchange keys. The message's
// copies of the private keys are overwritten once they are copied out.
func decodeExchangeKey(v []byte) (*ExchangeKey, error) {
	var m pb.ExchangeKey
	if err := proto.Unmarshal(v, &m); err != nil {
		return nil, corrupt("exchange key: %v", err)
	}
	defer func() {
		for _, sk := range m.Keys {
			clear(sk.GetPrivate())
		}
	}()
	k := &ExchangeKey{Seq: m.Seq, Record: bytes.Clone(m.Record)}
	var err error
	if k.Created, err = decodeTime(m.Created, "exchange key created"); err != nil {
		return nil, err
	}
	if k.Retire, err = decodeTime(m.Retire, "exchange key retire"); err != nil {
		return nil, err
	}
	if len(m.Keys) > 0 {
		k.Keys = make([]SuiteKey, len(m.Keys))
	}
	for i, sk := range m.Keys {
		if k.Keys[i].Suite, err = decodeSuite(sk.GetSuite(), "exchange key"); err != nil {
			wipeExchangeKey(k)
			return nil, err
		}
		k.Keys[i].Private = bytes.Clone(sk.GetPrivate())
	}
	return k, nil
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

func encodeSession(s *SessionKey) ([]byte, error) {
	return proto.Marshal(&pb.SessionKey{
		Key:     s.Key[:],
		KeyId:   s.ID[:],
		Suite:   uint32(s.Suite),
		Created: encodeTime(s.Created),
	})
}

// decodeSession decodes one session epoch from the name of the peer's bucket,
// the epoch key and the value. The message's copy of the key is overwritten.
func decodeSession(peerKey, epochKey, v []byte) (*SessionKey, error) {
	p, err := decodePeerID(peerKey)
	if err != nil {
		return nil, err
	}
	epoch, err := decodeEpoch(epochKey)
	if err != nil {
		return nil, err
	}
	var m pb.SessionKey
	if err := proto.Unmarshal(v, &m); err != nil {
		return nil, corrupt("session %s/%d: %v", p, epoch, err)
	}
	defer clear(m.Key)
	if len(m.Key) != KeySize {
		return nil, corrupt("session %s/%d: key is %d bytes, want %d", p, epoch, len(m.Key), KeySize)
	}
	if len(m.KeyId) != KeyIDSize {
		return nil, corrupt("session %s/%d: key ID is %d bytes, want %d", p, epoch, len(m.KeyId), KeyIDSize)
	}
	s := &SessionKey{Peer: p, Epoch: epoch}
	if s.Suite, err = decodeSuite(m.Suite, "session"); err != nil {
		return nil, err
	}
	if s.Created, err = decodeTime(m.Created, "session created"); err != nil {
		return nil, err
	}
	copy(s.Key[:], m.Key)
	copy(s.ID[:], m.KeyId)
	return s, nil
}
