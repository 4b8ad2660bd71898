// Package peerstore keeps what a p2pkex node must remember between runs: its
// libp2p identity key, its own exchange keys, the signed exchange-key records
// of the peers it has met (with their trust state), and the session keys it
// agreed with each peer, by epoch.
//
// # Implementations
//
// [OpenBolt] is the default: one bbolt file, fsync on every commit, an
// exclusive file lock, the file 0600 inside a 0700 directory. [NewMemory]
// keeps everything in memory, for tests and for embedding apps that keep
// nothing on disk. Both pass the same conformance suite
// (peerstore/storetest).
//
// # Atomicity
//
// A session key is written only by [Store.CommitExchange], which installs the
// new epoch together with the peer's (possibly new) exchange-key record in one
// transaction: after a crash a peer's state is wholly the old or wholly the
// new. An exchange that never reaches CommitExchange leaves the previous epoch
// active.
//
// # Destruction
//
// A secret the store drops — an exchange private key replaced by a rotation
// or pruned, a session epoch beyond KeepEpochs — is destroyed, not only
// unlinked: the memory store overwrites it; the bbolt store makes it
// unrecoverable from its files (even from the pages bbolt frees) by
// crypto-shredding, see shred.go and docs/SECURITY.md, "Destroyed keys". Each
// implementation deletes secrets through one internal path (bolt.go:
// writeTx.deleteEpoch, which deleteSession and deletePeerSessions use, and
// deleteExchangeKey; memory.go: wipeSessions, deletePeerSessions), which any
// new way of dropping them (forgetting a peer) must use.
//
// The store treats records and keys as opaque bytes: it never parses a signed
// record. Callers (package node) validate before they store, and re-validate
// what they read back.
package peerstore

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Errors returned by every Store.
var (
	// ErrNotFound: no such identity, exchange key, peer or session.
	ErrNotFound = errors.New("peerstore: not found")
	// ErrExists: SetIdentity on a store that already has one.
	ErrExists = errors.New("peerstore: already exists")
	// ErrStaleEpoch: CommitExchange with an epoch not above the active one.
	ErrStaleEpoch = errors.New("peerstore: epoch not newer than the active one")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("peerstore: closed")
	// ErrLocked: another process holds the store's file lock.
	ErrLocked = errors.New("peerstore: store is locked by another process")
	// ErrCorrupt: a value read back from disk does not decode.
	ErrCorrupt = errors.New("peerstore: corrupt value")
)

// KeySize is the size of a session key.
const KeySize = 32

// KeyIDSize is the size of a session key's identifier.
const KeyIDSize = 8

// Key is a session key. It is a fixed-size array so that it can be compared
// in constant time with [Key.Equal] and zeroed in place.
type Key [KeySize]byte

// Equal reports in constant time whether k and o are the same key.
func (k *Key) Equal(o *Key) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// String never prints the key.
func (k Key) String() string { return "Key(redacted)" }

// GoString never prints the key.
func (k Key) GoString() string { return "Key(redacted)" }

// KeyID names a session key without revealing it. It is derived from the key
// by the protocol (see docs/PROTOCOL.md).
type KeyID [KeyIDSize]byte

// String is the ID in lowercase hex (without fmt: a listing of 100,000
// peers prints one per peer).
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// TrustState is how far the node trusts a peer's exchange key.
type TrustState uint8

const (
	// TrustUnknown is the zero value; it is never stored.
	TrustUnknown TrustState = iota
	// TrustFirstUse: the key was accepted on first contact (TOFU).
	TrustFirstUse
	// TrustVerified: the user compared safety numbers and confirmed the peer.
	TrustVerified
	// TrustChanged: the peer's key changed in a way the node did not expect;
	// the user should look.
	TrustChanged
)

func (t TrustState) String() string {
	switch t {
	case TrustFirstUse:
		return "first-use"
	case TrustVerified:
		return "verified"
	case TrustChanged:
		return "changed"
	default:
		return "unknown"
	}
}

// SuiteKey is one serialized HPKE private key of an exchange key, for one suite.
type SuiteKey struct {
	Suite   uint16 // protocol suite identifier
	Private []byte // output of hpke.PrivateKey.Bytes
}

// ExchangeKey is one of the node's own exchange keys.
type ExchangeKey struct {
	Seq     uint64     // the record's sequence number; grows with every rotation
	Record  []byte     // the signed exchange-key record (a marshalled record envelope)
	Keys    []SuiteKey // the private keys the record publishes, one per suite
	Created time.Time
	// Retire is zero for the current key. For the previous key it is the end
	// of its grace period, after which PruneExchangeKeys destroys it.
	Retire time.Time
}

// PeerKey is what the node knows of a peer's exchange key.
type PeerKey struct {
	Peer        peer.ID
	Seq         uint64 // the record's sequence number
	Record      []byte // the signed exchange-key record, exactly as received
	Fingerprint []byte // multihash of Record
	Trust       TrustState
	FirstSeen   time.Time
	// LastSeen is the Commit.Seen of the last exchange with the peer, to
	// within SeenGranularity: see Commit.Seen.
	LastSeen time.Time
}

// PeerState is what the store holds of a peer, less the record's bytes and
// any secret: enough to tell whether the peer is known, which record is
// stored and which epoch an exchange proposes next. Store.Lookup answers
// it without copying the record or opening a session key, which the node
// would otherwise do on every exchange only to learn these few values
// (docs/performance/cpu.md).
type PeerState struct {
	// Record says whether the store holds the peer's exchange-key record.
	// Seq, Fingerprint and Trust are the record's (zero without one).
	Record      bool
	Seq         uint64
	Fingerprint []byte
	Trust       TrustState
	// Epoch is the active session's epoch (the highest kept), 0 if the
	// store holds no session with the peer.
	Epoch uint64
}

// PeerSummary is what a listing of peers shows of one: what Lookup returns
// and the active session's key ID, suite and creation time, never its key.
// Store.ListPeers answers it from what the store holds in the clear,
// without copying the record or opening a session key: listing 100,000
// peers through Peers and ActiveSession copied 140 MB of records and ran
// an AES-GCM open per peer (docs/performance/store.md, "Listing the known
// peers").
type PeerSummary struct {
	Peer  peer.ID
	State PeerState
	// The active session's (epoch State.Epoch) key ID, suite and creation
	// time; zero when State.Epoch is 0.
	KeyID   KeyID
	Suite   uint16
	Created time.Time
}

// SessionKey is a symmetric key agreed with a peer.
type SessionKey struct {
	Peer    peer.ID
	Epoch   uint64 // 1 for the first exchange with the peer; grows by at least one
	Key     Key
	ID      KeyID
	Suite   uint16
	Created time.Time
}

// Commit is everything one completed exchange writes, in one transaction.
type Commit struct {
	// Session is the new session key; its Epoch must be above the peer's
	// active epoch.
	Session SessionKey
	// PeerKey, when not nil, replaces the stored record of Session.Peer (phase
	// 2 received a new one). FirstSeen is kept from the stored record when
	// one exists.
	PeerKey *PeerKey
	// Seen is written as the peer's LastSeen, unless the commit leaves the
	// record as it is (PeerKey nil, or equal to the stored record in Seq,
	// Record, Fingerprint and Trust) and the stored LastSeen is at most
	// SeenGranularity before Seen: then the record is not rewritten.
	Seen time.Time
}

// SeenGranularity is how far a stored LastSeen may lag behind the last
// commit with the peer. Without it every exchange with a known peer would
// rewrite the peer's whole record (about 1.4 KB) only to move LastSeen: in
// the bbolt store a decode, an encode and a dirty page per commit, the
// largest part of a commit's own CPU under load (docs/performance/store.md,
// "The record rewritten at every commit"). A minute is far finer than
// what LastSeen is for (showing the user when a peer was last met).
const SeenGranularity = time.Minute

// ForgetResult says what Store.Forget removed.
type ForgetResult struct {
	Record   bool       // the peer's exchange-key record was held
	Trust    TrustState // the trust state it had (TrustUnknown if none)
	Sessions int        // the session keys destroyed
}

// Store is the node's persistent state. All methods are safe for concurrent
// use. Values returned are copies: changing them does not change the store.
type Store interface {
	// Identity returns the node's libp2p identity key, or ErrNotFound.
	Identity() (crypto.PrivKey, error)
	// SetIdentity stores the identity key; ErrExists if there is one.
	SetIdentity(crypto.PrivKey) error

	// ExchangeKeys returns the current exchange key (ErrNotFound if none) and
	// the previous one, still in its grace period (nil if none).
	ExchangeKeys() (current *ExchangeKey, previous *ExchangeKey, err error)
	// RotateExchangeKey makes next the current key. With grace > 0 the
	// current one becomes the previous one, retired at now+grace; with grace
	// 0 it is destroyed at once (package node rotates so: nothing uses an
	// old key). A previous key is destroyed. next.Seq must be above the
	// current key's Seq.
	RotateExchangeKey(next ExchangeKey, now time.Time, grace time.Duration) error
	// PruneExchangeKeys destroys the previous exchange key if its grace
	// period has ended at now. It reports whether one was destroyed.
	PruneExchangeKeys(now time.Time) (bool, error)

	// Peer returns the stored record of a peer, or ErrNotFound.
	Peer(peer.ID) (*PeerKey, error)
	// Lookup returns what the store holds of a peer without the record's
	// bytes or any session key: whether it holds the record (with its
	// Seq, Fingerprint and Trust) and the active session's epoch.
	// ErrNotFound if it holds neither a record nor a session.
	Lookup(peer.ID) (PeerState, error)
	// Peers returns every known peer, sorted by peer ID.
	Peers() ([]PeerKey, error)
	// ListPeers returns, sorted by peer ID (the order of its bytes), up to
	// limit (> 0) of the peers the store holds a record or a session of
	// whose IDs sort after after ("" for the first): each one's state, as
	// Lookup returns it, and its active session's metadata. It copies no
	// record and opens no session key. Each call reads one snapshot; a
	// listing in pages (after: the last peer of the page before) may see
	// the writes made between its calls. Fewer than limit peers: the end.
	ListPeers(after peer.ID, limit int) ([]PeerSummary, error)
	// SetTrust changes the trust state of a known peer (ErrNotFound if unknown).
	SetTrust(peer.ID, TrustState) error

	// CommitExchange atomically installs a new session epoch (and the peer's
	// record if given). ErrStaleEpoch if the epoch is not above the active one.
	CommitExchange(Commit) error
	// ActiveSession returns the session key with the highest epoch for the
	// peer, or ErrNotFound.
	ActiveSession(peer.ID) (*SessionKey, error)
	// Session returns the session key of one epoch, or ErrNotFound.
	Session(p peer.ID, epoch uint64) (*SessionKey, error)
	// Sessions returns the kept session keys of a peer, oldest first. A store
	// keeps at least the active epoch and the one before it (KeepEpochs).
	Sessions(peer.ID) ([]SessionKey, error)

	// Forget removes everything the store holds of a peer, in one
	// transaction: its exchange-key record, its trust state and all its
	// session keys (destroyed as the store destroys an old epoch). It is
	// the way back from a refused record (like ssh-keygen -R): the peer's
	// next record is a first contact again. A peer the store does not know
	// gives a zero ForgetResult and no error.
	Forget(peer.ID) (ForgetResult, error)

	// Close releases the store. It is idempotent; every other method returns
	// ErrClosed afterwards.
	Close() error
}

// KeepEpochs is how many session epochs per peer a store keeps: the active
// one and the ones before it, for messages still in flight under an old key.
const KeepEpochs = 3

// checkListLimit refuses a ListPeers page size below 1.
func checkListLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("peerstore: ListPeers limit %d, want at least 1", limit)
	}
	return nil
}
