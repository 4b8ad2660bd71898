// Package protocol implements /p2pkex/1.0.0, the three-phase key exchange of
// p2pkex, as a libp2p stream protocol.
//
// # Overview
//
// Two peers, the initiator ("Alice") and the responder ("Bob"), run three
// phases over one stream. Every notice is one length-prefixed protobuf frame
// (package pb); docs/PROTOCOL.md is the normative specification.
//
//  1. START, CONTINUE, NEXT: nonces, suite and notice size are negotiated,
//     both sides commit to their key part, and each learns from the other's
//     fingerprint whether its exchange-key record must be sent.
//  2. KEY, KEY_RECEIVED: only the records that are missing or stale travel,
//     chunked, and are acknowledged.
//  3. PART, PART_RECEIVED: each side's 32-byte part, HPKE-sealed to the
//     peer's exchange key and signed with the identity key; the parts are
//     XORed and bound to the transcript by HKDF, and each side proves it
//     holds the key with a confirmation MAC.
//
// # Layout
//
// [Machine] is the I/O-free state machine for both roles: [Machine.Start]
// and [Machine.Consume] turn one incoming frame into the frames to send, and a
// rejected frame never advances the state. [Run] drives a Machine over a
// stream. Records, suites, the transcript and every derivation live in their
// own files; errors are in errors.go.
package protocol

import (
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
)

const (
	// ID is the libp2p protocol ID of the exchange.
	ID protocol.ID = "/p2pkex/1.0.0"

	// ServiceName is the resource-manager service of inbound exchanges.
	ServiceName = "p2pkex.exchange"

	// Version is the protocol version carried in START.
	Version = 1

	// DefaultNoticeSize is the notice size a node asks for by default.
	DefaultNoticeSize = 1024
	// MinNoticeSize is the smallest notice size the protocol works with;
	// START, CONTINUE and NEXT always fit in it.
	MinNoticeSize = 128
	// MaxNoticeSize is the largest notice size a node may negotiate.
	MaxNoticeSize = 64 << 10

	// MaxRecordSize bounds a signed exchange-key record (KEY).
	MaxRecordSize = 8 << 10
	// MaxSealedPartSize bounds a sealed, signed key part (PART).
	MaxSealedPartSize = 4 << 10
	// MaxChunks bounds the number of chunks of one item.
	MaxChunks = 128

	// NonceSize, PartSize and CommitmentSize are fixed by the protocol.
	NonceSize      = 32
	PartSize       = 32
	CommitmentSize = 32
	// KeySize is the size of a session key; KeyIDSize of its identifier.
	KeySize   = 32
	KeyIDSize = 8
	// MACSize is the size of a confirmation MAC.
	MACSize = 32

	// DefaultPhaseTimeout bounds each phase of an exchange.
	DefaultPhaseTimeout = 10 * time.Second
	// DefaultRecordLifetime is how long a new exchange-key record is valid.
	DefaultRecordLifetime = 30 * 24 * time.Hour
	// MaxClockSkew is how far in the future a record's creation time may lie.
	MaxClockSkew = 10 * time.Minute
	// MaxRecordLifetime bounds expires - created of a record: twice the
	// default lifetime.
	MaxRecordLifetime = 2 * DefaultRecordLifetime
	// MaxSeqJump bounds how far a rotation may move a record's sequence
	// number past the held one (RelateRecords).
	MaxSeqJump = 1 << 20

	// chunkOverhead bounds the bytes a KEY or PART notice adds around its
	// chunk data (type, chunk tag and length, index, count, data tag and
	// length).
	chunkOverhead = 24
)
