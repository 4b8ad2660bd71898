package node

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
	recordpb "github.com/libp2p/go-libp2p/core/record/pb"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Length and size attacks (issue 3, item 5), against a node: a length
// prefix one above the notice size and one near 2^63, too many chunks and
// too large an item (KEY and PART), and exchange-key records whose
// envelope carries an RSA key above libp2p's limit (8192 bits). Each is
// refused at the first check that can refuse it, before anything it
// announces is allocated or parsed:
//
//   - a length prefix is refused on its value (ErrFrameTooLarge): the peer
//     sends no frame body, and the node, whose phase timeout is the default
//     10 s, answers at once instead of waiting for one;
//   - a chunk count above protocol.MaxChunks is refused on the first chunk,
//     before any chunk is accepted (ErrChunk);
//   - an item above its bound is refused on the chunk that crosses it
//     (ErrChunk), before the record or part parser sees any of it;
//   - a record whose envelope holds a 16384-bit RSA key (2 KiB, under
//     MaxRecordSize) is refused while the envelope's key is decoded
//     (ErrBadRecord, carrying crypto.ErrRsaKeyTooBig): before its signature
//     is checked, which is where an oversized RSA key would cost; a 65536-bit
//     one (over 8 KiB) is refused by the reassembly bound first (ErrChunk).
//
// In every case the node resets the stream, installs nothing, frees its
// resource scopes, counts and goroutines, and completes the next exchange
// with the same peer.

// rsaOverLimit returns the DER (PKIX) of an RSA public key with a modulus
// of the given size. The modulus is random, not a product of two primes:
// nothing gets far enough to notice.
func rsaOverLimit(t testing.TB, bits int) []byte {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	require.NoError(t, err)
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
	require.NoError(t, err)
	return der
}

// rsaEnvelope builds, by hand, a record envelope that carries payload and
// claims to be signed by an RSA key of the given size. The signature is
// random bytes of the key's size.
func rsaEnvelope(t testing.TB, bits int, payload []byte) []byte {
	t.Helper()
	sig := make([]byte, bits/8)
	_, err := rand.Read(sig)
	require.NoError(t, err)
	b, err := proto.Marshal(&recordpb.Envelope{
		PublicKey:   &cryptopb.PublicKey{Type: cryptopb.KeyType_RSA.Enum(), Data: rsaOverLimit(t, bits)},
		PayloadType: protocol.RecordCodec,
		Payload:     payload,
		Signature:   sig,
	})
	require.NoError(t, err)
	return b
}

// recordPayload returns the payload of n's current exchange-key record.
func recordPayload(t testing.TB, n *Node) []byte {
	t.Helper()
	rec := n.ExchangeKey().KeyRecord
	b, err := rec.MarshalRecord()
	require.NoError(t, err)
	return b
}

func TestSizeRecordWithRSAKeyOverLimit(t *testing.T) {
	n := newNode(t)
	payload := recordPayload(t, n)

	env := rsaEnvelope(t, 16384, payload)
	require.Less(t, len(env), protocol.MaxRecordSize, "the size bound must not be what refuses it")
	_, err := protocol.ParsePeerRecord(env, n.ID(), time.Now())
	require.ErrorIs(t, err, protocol.ErrBadRecord)
	require.ErrorContains(t, err, crypto.ErrRsaKeyTooBig.Error())
	t.Logf("%d-byte envelope with a 16384-bit RSA key: %v", len(env), err)

	env = rsaEnvelope(t, 65536, payload)
	require.Greater(t, len(env), protocol.MaxRecordSize)
	_, err = protocol.ParsePeerRecord(env, n.ID(), time.Now())
	require.ErrorIs(t, err, protocol.ErrBadRecord)
	require.ErrorContains(t, err, fmt.Sprintf("limit %d", protocol.MaxRecordSize))
	t.Logf("%d-byte envelope with a 65536-bit RSA key: %v", len(env), err)
}

// TestSizeRSAIdentityOverLimitCannotConnect: a peer whose identity key is
// RSA above libp2p's limit never gets as far as the exchange. libp2p will
// not make such a key, and decoding one, which both secure channels (noise:
// handshake.go, TLS: crypto.go, via crypto.UnmarshalPublicKey) do with the
// remote identity key before the connection exists, fails with
// crypto.ErrRsaKeyTooBig.
func TestSizeRSAIdentityOverLimitCannotConnect(t *testing.T) {
	_, _, err := crypto.GenerateRSAKeyPair(16384, rand.Reader)
	require.ErrorIs(t, err, crypto.ErrRsaKeyTooBig)
	b, err := proto.Marshal(&cryptopb.PublicKey{Type: cryptopb.KeyType_RSA.Enum(), Data: rsaOverLimit(t, 16384)})
	require.NoError(t, err)
	_, err = crypto.UnmarshalPublicKey(b)
	require.ErrorIs(t, err, crypto.ErrRsaKeyTooBig)
}

// sizeAttack is one way of lying about sizes.
type sizeAttack struct {
	name string
	// edit changes the attacker's notices (see faultPlan.edit); attacker is
	// the attacking node.
	edit func(t *testing.T, attacker *Node) func(pb.Notice_Type, []byte) []byte
	want error
	// contains, when set, must be in the error's text.
	contains string
	// accepted is how many notices of type item the honest node accepts
	// before it refuses (-1: not checked).
	item     pb.Notice_Type
	accepted int
}

// replaceOpening replaces the attacker's first notice (START or CONTINUE)
// with raw bytes.
func replaceOpening(raw []byte) func(*testing.T, *Node) func(pb.Notice_Type, []byte) []byte {
	return func(*testing.T, *Node) func(pb.Notice_Type, []byte) []byte {
		return func(typ pb.Notice_Type, b []byte) []byte {
			if typ == pb.Notice_START || typ == pb.Notice_CONTINUE {
				return raw
			}
			return protocol.AppendFrame(nil, b)
		}
	}
}

// replaceItem replaces the attacker's KEY or PART notices with chunks.
func replaceItem(typ pb.Notice_Type, chunks func(t *testing.T, attacker *Node) []*pb.Chunk) func(*testing.T, *Node) func(pb.Notice_Type, []byte) []byte {
	return func(t *testing.T, attacker *Node) func(pb.Notice_Type, []byte) []byte {
		var with []byte
		for _, c := range chunks(t, attacker) {
			b, err := proto.Marshal(&pb.Notice{Type: typ, Chunk: c})
			require.NoError(t, err)
			require.LessOrEqual(t, len(b), protocol.DefaultNoticeSize)
			with = protocol.AppendFrame(with, b)
		}
		done := false
		return func(got pb.Notice_Type, b []byte) []byte {
			if got != typ {
				return protocol.AppendFrame(nil, b)
			}
			if done {
				return nil
			}
			done = true
			return with
		}
	}
}

// chunkedItem cuts item into chunks of notices of the default size.
func chunkedItem(item []byte) []*pb.Chunk {
	per := protocol.DefaultNoticeSize - 24
	count := (len(item) + per - 1) / per
	var cs []*pb.Chunk
	for i := range count {
		cs = append(cs, &pb.Chunk{Index: uint32(i), Count: uint32(count), Data: item[i*per : min((i+1)*per, len(item))]})
	}
	return cs
}

func sizeRandom(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func sizeAttacks() []sizeAttack {
	tooMany := func(t *testing.T, _ *Node) []*pb.Chunk {
		return []*pb.Chunk{{Index: 0, Count: protocol.MaxChunks + 1, Data: sizeRandom(t, 64)}}
	}
	return []sizeAttack{
		{name: "length-prefix-notice-size+1", want: protocol.ErrFrameTooLarge, accepted: -1,
			edit: replaceOpening(binary.AppendUvarint(nil, protocol.DefaultNoticeSize+1))},
		{name: "length-prefix-2^63-1", want: protocol.ErrFrameTooLarge, accepted: -1,
			edit: replaceOpening(binary.AppendUvarint(nil, 1<<63-1))},
		{name: "KEY-chunk-count-MaxChunks+1", want: protocol.ErrChunk, item: pb.Notice_KEY, accepted: 0,
			edit: replaceItem(pb.Notice_KEY, tooMany)},
		{name: "KEY-item-MaxRecordSize+1", want: protocol.ErrChunk, item: pb.Notice_KEY,
			accepted: protocol.MaxRecordSize / (protocol.DefaultNoticeSize - 24),
			edit: replaceItem(pb.Notice_KEY, func(t *testing.T, _ *Node) []*pb.Chunk {
				return chunkedItem(sizeRandom(t, protocol.MaxRecordSize+1))
			})},
		{name: "PART-chunk-count-MaxChunks+1", want: protocol.ErrChunk, item: pb.Notice_PART, accepted: 0,
			edit: replaceItem(pb.Notice_PART, tooMany)},
		{name: "PART-item-MaxSealedPartSize+1", want: protocol.ErrChunk, item: pb.Notice_PART,
			accepted: protocol.MaxSealedPartSize / (protocol.DefaultNoticeSize - 24),
			edit: replaceItem(pb.Notice_PART, func(t *testing.T, _ *Node) []*pb.Chunk {
				return chunkedItem(sizeRandom(t, protocol.MaxSealedPartSize+1))
			})},
		{name: "KEY-record-with-16384-bit-RSA-key", want: protocol.ErrBadRecord, contains: crypto.ErrRsaKeyTooBig.Error(),
			item: pb.Notice_KEY, accepted: -1,
			edit: replaceItem(pb.Notice_KEY, func(t *testing.T, attacker *Node) []*pb.Chunk {
				return chunkedItem(rsaEnvelope(t, 16384, recordPayload(t, attacker)))
			})},
		{name: "KEY-record-with-65536-bit-RSA-key", want: protocol.ErrChunk, item: pb.Notice_KEY,
			accepted: protocol.MaxRecordSize / (protocol.DefaultNoticeSize - 24),
			edit: replaceItem(pb.Notice_KEY, func(t *testing.T, attacker *Node) []*pb.Chunk {
				return chunkedItem(rsaEnvelope(t, 65536, recordPayload(t, attacker)))
			})},
	}
}

func TestSizeAttacksRefusedAndFreed(t *testing.T) {
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { requireNoLeak(t, running, "goroutines left after the test") })
	sp := newSlowPair(t) // default phase timeout: a refusal must not wait for it
	require.NoError(t, sp.run(t, true))
	for _, honestInitiates := range []bool{true, false} {
		role := "honest-responder"
		if honestInitiates {
			role = "honest-initiator"
		}
		for _, at := range sizeAttacks() {
			name := role + "/" + at.name
			// The attacker's record travels, and so does the honest node's.
			sp.rotate(t)
			baseline := goleak.IgnoreCurrent()
			was := activeOf(t, sp.honest, sp.slow.ID())
			wasRec, err := sp.honest.Store().Peer(sp.slow.ID())
			require.NoError(t, err)
			events, stop := sp.honest.Subscribe(0)
			sp.h.arm(faultPlan{edit: at.edit(t, sp.slow)})
			err = sp.run(t, honestInitiates)
			stop()
			require.ErrorIs(t, err, at.want, name)
			if at.contains != "" {
				require.ErrorContains(t, err, at.contains, name)
			}
			require.NotContains(t, strings.ToLower(err.Error()), "signature", name)
			accepted := 0
			for e := range events {
				if e.Peer == sp.slow.ID() && e.Kind == EventStep && e.Step.Kind == protocol.EventNoticeReceived && e.Step.Notice == at.item {
					accepted++
				}
			}
			if at.accepted >= 0 {
				require.Equal(t, at.accepted, accepted, "%s: %v notices accepted before the refusal", name, at.item)
			}
			if at.item != 0 {
				t.Logf("%s: %v (%d %v notices accepted first)", name, err, accepted, at.item)
			} else {
				t.Logf("%s: %v", name, err)
			}

			sp.requireFreed(t)
			sp.h.take()
			require.Equal(t, epochOf(was), epochOf(activeOf(t, sp.honest, sp.slow.ID())), "%s: a key was installed", name)
			rec, err := sp.honest.Store().Peer(sp.slow.ID())
			require.NoError(t, err)
			require.Equal(t, wasRec.Record, rec.Record, "%s: the stored record changed", name)
			requireNoLeak(t, baseline, "%s: goroutines left behind", name)

			require.NoError(t, sp.run(t, honestInitiates), "%s: next exchange", name)
			requireSameKey(t, sp.honest, sp.slow, activeOf(t, sp.honest, sp.slow.ID()).Epoch)
			sp.requireFreed(t)
			sp.h.take()
		}
	}
}
