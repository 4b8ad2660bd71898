package api

import "time"

// The request and response bodies, endpoint by endpoint (docs/API.md).
// Field names are stable within the version (package doc).

// ID is the answer of GET /v0/id: who the daemon is and where it listens.
type ID struct {
	PeerID      string   `json:"peer_id"`
	Fingerprint string   `json:"fingerprint"` // the exchange-key record's fingerprint
	Addrs       []string `json:"addrs"`       // full multiaddrs, ending in /p2p/<peer ID>
	Running     bool     `json:"running"`     // always true from a daemon
}

// Status is the answer of GET /v0/status.
type Status struct {
	PeerID          string    `json:"peer_id"`
	Fingerprint     string    `json:"fingerprint"`
	Addrs           []string  `json:"addrs"`
	Started         time.Time `json:"started"`
	Uptime          string    `json:"uptime"` // a Go duration, whole seconds ("1h2m3s")
	ConnectedPeers  int       `json:"connected_peers"`
	ExchangesDone   uint64    `json:"exchanges_done"`
	ExchangesFailed uint64    `json:"exchanges_failed"`
	Reachability    string    `json:"reachability"` // unknown, public or private
	// Relays: the relays holding a reservation for this node.
	Relays []string `json:"relays,omitempty"`
	// Metrics: the URL of the daemon's Prometheus metrics, if served.
	Metrics string `json:"metrics,omitempty"`
}

// Peer is one element of the answer of GET /v0/peers: a peer the daemon
// is connected to, discovered, or holds a record of.
type Peer struct {
	Peer      string `json:"peer"`
	Connected bool   `json:"connected"`
	// Connection: "direct" or "relayed" (only limited, relayed
	// connections) when connected.
	Connection string   `json:"connection,omitempty"`
	Addrs      []string `json:"addrs"`
	Discovered []string `json:"discovered"` // how: mdns, dht
	Known      bool     `json:"known"`      // the store holds its exchange-key record
	Trust      string   `json:"trust"`      // unknown, first-use, verified, changed
	// The last exchange: the active epoch and when it was installed.
	Epoch        uint64     `json:"epoch,omitempty"`
	KeyID        string     `json:"key_id,omitempty"`
	Suite        string     `json:"suite,omitempty"`
	LastExchange *time.Time `json:"last_exchange,omitempty"`
}

// ExchangeRequest is the body of POST /v0/exchange.
type ExchangeRequest struct {
	// Addr: the peer's full multiaddr ending in /p2p/<peer ID>, or a peer
	// ID the daemon knows an address for.
	Addr string `json:"addr"`
}

// ExchangeLine is one line of POST /v0/exchange's NDJSON stream: a
// progress line, and last a result or an error, with the exchange's trust
// events.
type ExchangeLine struct {
	Progress    string          `json:"progress,omitempty"`
	Result      *ExchangeResult `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
	Code        string          `json:"code,omitempty"` // with error: a Code constant
	TrustEvents []TrustEvent    `json:"trust_events,omitempty"`
}

// ExchangeResult is a finished exchange: the new session key's epoch and
// ID (never the key).
type ExchangeResult struct {
	Peer            string `json:"peer"`
	Epoch           uint64 `json:"epoch"`
	KeyID           string `json:"key_id"`
	Suite           string `json:"suite"`
	PostQuantum     bool   `json:"post_quantum"`
	SentOwnKey      bool   `json:"sent_own_key"`      // phase 2 sent our exchange key
	ReceivedPeerKey bool   `json:"received_peer_key"` // phase 2 brought the peer's
	SafetyNumber    string `json:"safety_number,omitempty"`
	// TrustEvents: the exchange's trust events. On the wire they are the
	// trust_events of the result's line, not a field of the result.
	TrustEvents []TrustEvent `json:"-"`
}

// RotateReply is the answer of POST /v0/rotate.
type RotateReply struct {
	Fingerprint string `json:"fingerprint"` // the new exchange key's
	Previous    string `json:"previous"`
}

// ConnectRequest is the body of POST /v0/connect.
type ConnectRequest struct {
	Addr string `json:"addr"` // a full multiaddr ending in /p2p/<peer ID>
}

// ConnectReply is the answer of POST /v0/connect.
type ConnectReply struct {
	Peer         string       `json:"peer"`
	Addr         string       `json:"addr"`   // the connection's remote address
	SpeaksP2PKEX bool         `json:"p2pkex"` // the peer speaks /p2pkex/1.0.0 (as far as identify told)
	TrustEvents  []TrustEvent `json:"trust_events,omitempty"`
}

// Keys is the answer of GET /v0/keys[?peer=ID]: metadata of the node's
// exchange keys and of the session keys it keeps, never a key.
type Keys struct {
	Own      OwnKey     `json:"own"`
	Previous *OwnKey    `json:"previous,omitempty"` // during its grace period
	Peers    []PeerKeys `json:"peers"`
}

// OwnKey is one of the node's own exchange keys.
type OwnKey struct {
	Seq         uint64     `json:"seq"`
	Fingerprint string     `json:"fingerprint"`
	Created     time.Time  `json:"created"`
	Retire      *time.Time `json:"destroyed_after,omitempty"`
}

// PeerKeys is a peer's exchange-key record and session keys.
type PeerKeys struct {
	Peer        string    `json:"peer"`
	Trust       string    `json:"trust"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Sessions    []Session `json:"sessions"`
}

// Session is one kept session key's metadata.
type Session struct {
	Epoch   uint64    `json:"epoch"`
	KeyID   string    `json:"key_id"`
	Suite   string    `json:"suite"`
	Created time.Time `json:"created"`
}

// SendRequest is the body of POST /v0/send.
type SendRequest struct {
	Addr    string `json:"addr"`    // as ExchangeRequest.Addr
	Message string `json:"message"` // at most 64 KiB
}

// SendReply is the answer of POST /v0/send: the peer has the message.
type SendReply struct {
	Peer        string       `json:"peer"`
	TrustEvents []TrustEvent `json:"trust_events,omitempty"`
}

// ChatRequest is the body of POST /v0/chat.
type ChatRequest struct {
	Addr string `json:"addr"` // as ExchangeRequest.Addr
}

// ChatReady is the answer of POST /v0/chat: whether the daemon can send to
// the peer at all, so that a chat refuses to start instead of failing on
// every line.
type ChatReady struct {
	Peer string `json:"peer"`
	Key  bool   `json:"session_key"` // a session key with the peer
	Addr bool   `json:"address"`     // an address for it (given, connected, or known)
}

// ChatMessage is one line of GET /v0/messages[?peer=ID]'s NDJSON stream:
// a message as it arrives.
type ChatMessage struct {
	From  string `json:"from"`
	Epoch uint64 `json:"epoch"`
	Text  string `json:"text"`
}

// InboxMessage is one line of GET /v0/inbox's NDJSON stream: a kept
// message.
type InboxMessage struct {
	Seq   uint64    `json:"seq"` // its number in the inbox, in order of arrival
	From  string    `json:"from"`
	Time  time.Time `json:"time"`
	Epoch uint64    `json:"epoch"`
	KeyID string    `json:"key_id"`
	Size  int       `json:"size"`
	// Text is the message as UTF-8; where it is not valid UTF-8 the bad
	// bytes read U+FFFD and Data holds the exact bytes.
	Text string `json:"text"`
	Data []byte `json:"data,omitempty"`
}

// ForgetRequest is the body of POST /v0/forget.
type ForgetRequest struct {
	Peer string `json:"peer"` // a peer ID or a multiaddr ending in /p2p/<peer ID>
}

// ForgetReply says what forget removes (GET /v0/forget?peer=ID) or removed
// (POST /v0/forget).
type ForgetReply struct {
	Peer     string `json:"peer"`
	Record   bool   `json:"record"`   // the peer's exchange-key record
	Trust    string `json:"trust"`    // its trust state (unknown: none)
	Sessions int    `json:"sessions"` // session keys
	Removed  bool   `json:"removed"`  // POST: they are gone
}

// VerifyRequest is the body of POST /v0/verify (GET /v0/verify?peer=ID
// only reads).
type VerifyRequest struct {
	Peer   string `json:"peer"`
	Number string `json:"number,omitempty"` // the safety number the peer's owner read out
	Yes    bool   `json:"yes,omitempty"`    // the user compared the numbers: they match
	Revoke bool   `json:"revoke,omitempty"` // withdraw the verification
}

// Changes reports whether the request changes the peer's trust (else it
// only reads it).
func (r VerifyRequest) Changes() bool { return r.Number != "" || r.Yes || r.Revoke }

// VerifyReply is the answer of /v0/verify.
type VerifyReply struct {
	Self        string `json:"self"`
	Peer        string `json:"peer"`
	Trust       string `json:"trust"`         // the trust state (after a change)
	Previous    string `json:"previous"`      // before
	Fingerprint string `json:"fingerprint"`   // the peer's exchange-key record, if known
	Digits      string `json:"safety_number"` // 12 groups of 5 digits
	Words       string `json:"safety_words"`  // 12 words
	Confirmed   bool   `json:"confirmed"`     // the peer was confirmed (number or yes)
	Revoked     bool   `json:"revoked"`       // the verification was withdrawn
	Known       bool   `json:"known"`         // an exchange took place
}

// ExportKeyRequest is the body of POST /v0/export-key.
type ExportKeyRequest struct {
	Peer    string `json:"peer"`    // a peer ID
	Label   string `json:"label"`   // 1 to 239 bytes
	Context []byte `json:"context"` // base64 in JSON
	Length  int    `json:"length"`  // 1 to 8160
}

// ExportKeyReply is the answer of POST /v0/export-key: the key (base64 in
// JSON) and the session it came from.
type ExportKeyReply struct {
	Peer  string `json:"peer"`
	Epoch uint64 `json:"epoch"`
	KeyID string `json:"key_id"`
	Key   []byte `json:"key"`
}

// ShutdownReply is the answer of POST /v0/shutdown: the daemon that is
// stopping.
type ShutdownReply struct {
	PeerID string `json:"peer_id"`
}

// TrustEvent is one trust event of an operation, as responses and errors
// carry it.
type TrustEvent struct {
	// Peer: the peer the event is about (the peer named).
	Peer string `json:"peer"`
	// Event: first-use, key-changed, store-reset, rollback, rotation,
	// identity-changed or suite-downgrade.
	Event string `json:"event"`
	// Refused: the record, identity or suite was refused; the operation
	// failed.
	Refused bool `json:"refused"`
	// TrustBefore, TrustAfter: the peer's trust state before and after
	// (unknown, first-use, verified, changed).
	TrustBefore string `json:"trust_before"`
	TrustAfter  string `json:"trust_after"`
	// Reason: how the records differ, or why it was refused.
	Reason string `json:"reason,omitempty"`
	// Presented, Addr: for identity-changed, the identity that answered
	// at the peer's address, and that address.
	Presented string `json:"presented,omitempty"`
	Addr      string `json:"addr,omitempty"`
	// Suite: the suite concerned (suite-downgrade: the one the responder
	// chose).
	Suite string `json:"suite,omitempty"`
	// Message: the event in one line, for people.
	Message string `json:"message"`
	// Next: what to do about it. The daemon leaves it empty; the command
	// line fills it in with the user's own --repo.
	Next string `json:"next,omitempty"`
}
