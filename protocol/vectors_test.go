package protocol

// Known-answer vectors (docs/PROTOCOL.md, "Test vectors").
//
// TestVectors runs complete exchanges between two machines in memory with
// fixed identity keys, fixed exchange keys, fixed clocks and a fixed global
// random source, records every input and every frame, and then recomputes
// every intermediate value — commitments, transcript checkpoints, the HPKE
// info and signature input of both parts, the opened parts, the session key,
// its ID and both confirmation MACs — from the recorded frames with a small,
// separate implementation of the formulas of docs/PROTOCOL.md (specDerive
// below, which uses only the standard library and the wire schema). The
// machines' results must equal the recomputed values, and the whole output
// must equal testdata/vectors.json byte for byte.
//
// Regenerate the file after an intended change of the wire format with
//
//	go test ./protocol/ -run TestVectors -update

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

const vectorsFile = "testdata/vectors.json"

// The -update flag may also be defined by another test file of the package;
// it is registered here only when it is not, and read at run time.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata/")
	}
}

func vecUpdate() bool {
	f := flag.Lookup("update")
	if f == nil {
		return false
	}
	v, _ := strconv.ParseBool(f.Value.String())
	return v
}

// vecTime is the clock of every vector: 2026-01-01T00:00:00Z.
var vecTime = time.Unix(1767225600, 0).UTC()

// hexBytes is a byte string written as lower-case hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *hexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

type vecFile struct {
	Comment []string `json:"comment"`
	// Identities and Records are the long-term keys the vectors use,
	// named by the vectors' sides.
	Identities []*vecIdentityJSON `json:"identities"`
	Records    []*vecRecord       `json:"records"`
	Vectors    []*vector          `json:"vectors"`
	// RecordChecks are received records judged against a held one
	// (docs/PROTOCOL.md sections 8 and 8.1).
	RecordChecks []*vecRecordCheck `json:"record_checks"`
	// Safety is the safety number of section 11.6: the word list and
	// known answers.
	Safety *vecSafety `json:"safety"`
	// Exporter are the exporter's known answers (section 11.7,
	// exporter_test.go).
	Exporter *vecExporter `json:"exporter"`
}

// vecRecordCheck is one record-validation case: a receiver that holds
// Held (if any) of the peer Peer receives Received at time Now.
type vecRecordCheck struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Now         int64  `json:"now"`
	// Peer names the identity the records belong to: the authenticated
	// remote peer.
	Peer string `json:"peer"`
	// Held is the envelope of the record the receiver holds (expired or
	// not), or empty; Received the envelope that arrives in KEY.
	Held     hexBytes `json:"held_envelope"`
	Received hexBytes `json:"received_envelope"`
	// Verdict is "bad-record" (refused by section 8 steps 1-7,
	// KEY_REJECTED), "rollback" (refused, KEY_REJECTED, whatever the trust
	// policy), or "first", "rotation", "reset": passed to the trust policy.
	Verdict string   `json:"verdict"`
	Rules   []string `json:"rules"`
}

type vecSafety struct {
	Words []string        `json:"words"`
	Cases []vecSafetyCase `json:"cases"`
}

type vecSafetyCase struct {
	PeerA     hexBytes `json:"peer_a"`
	PeerB     hexBytes `json:"peer_b"`
	PeerAText string   `json:"peer_a_text"`
	PeerBText string   `json:"peer_b_text"`
	Digest    hexBytes `json:"digest"`
	Digits    string   `json:"digits"`
	Words     string   `json:"words"`
}

type vecIdentityJSON struct {
	Name string `json:"name"`
	// Seed is the 32-byte Ed25519 seed of the libp2p identity key.
	Seed      hexBytes `json:"ed25519_seed"`
	PublicKey hexBytes `json:"ed25519_public_key"`
	// PrivateKey is the libp2p protobuf encoding of the private key
	// (crypto.MarshalPrivateKey).
	PrivateKey hexBytes `json:"libp2p_private_key"`
	PeerID     hexBytes `json:"peer_id"`
	PeerIDText string   `json:"peer_id_text"`
}

type vector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	ProtocolID  string `json:"protocol_id"`
	// Now is the clock (unix seconds) of both sides: Config.Now.
	Now int64 `json:"now"`
	// RandomSeed is the testing/cryptotest.SetGlobalRandom seed; it fixes
	// the HPKE encapsulation randomness.
	RandomSeed uint64    `json:"random_seed"`
	Initiator  vecSide   `json:"initiator"`
	Responder  vecSide   `json:"responder"`
	Frames     []vecWire `json:"frames"`
	// Everything below is recomputed from the inputs above by specDerive.
	Transcript vecTranscript `json:"transcript"`
	Parts      vecParts      `json:"parts"`
	Session    vecSession    `json:"session"`
	Result     vecResult     `json:"result"`
}

type vecSide struct {
	Identity string `json:"identity"`
	// Record names the side's current exchange-key record (Config.Own).
	Record string `json:"record"`
	// PreviousRecord names a record the side rotated away from, if any.
	PreviousRecord string `json:"previous_record,omitempty"`
	// KnownRecord names the peer's record this side holds (Config.Known),
	// if any; KnownFingerprint is its fingerprint, as sent in phase 1.
	KnownRecord      string   `json:"known_record,omitempty"`
	KnownFingerprint hexBytes `json:"known_fingerprint"`
	Suites           []uint32 `json:"suites"`
	NoticeSize       int      `json:"notice_size"`
	Epoch            uint64   `json:"epoch"`
	// Random is everything read from Config.Rand, in order: nonce || part.
	Random     hexBytes `json:"random"`
	Nonce      hexBytes `json:"nonce"`
	Part       hexBytes `json:"part"`
	Commitment hexBytes `json:"commitment"`
}

type vecRecord struct {
	ID      string        `json:"id"`
	Owner   string        `json:"owner"`
	Seq     uint64        `json:"seq"`
	Created int64         `json:"created"`
	Expires int64         `json:"expires"`
	Keys    []vecSuiteKey `json:"keys"`
	// Payload is the ExchangeKeyRecord protobuf; Envelope the signed
	// libp2p envelope around it, exactly as sent in KEY.
	Payload     hexBytes `json:"payload"`
	Envelope    hexBytes `json:"envelope"`
	Fingerprint hexBytes `json:"fingerprint"`
}

type vecSuiteKey struct {
	Suite uint32 `json:"suite"`
	// PrivateKey is SerializePrivateKey of the suite's KEM (the 32-byte
	// seed for MLKEM768-X25519, the clamped scalar for X25519).
	PrivateKey hexBytes `json:"private_key"`
	PublicKey  hexBytes `json:"public_key"`
}

type vecWire struct {
	From string `json:"from"`
	Type string `json:"type"`
	// Stage is the transcript stage the notice is hashed in, 0 if none.
	Stage int `json:"stage"`
	// Frame is the bytes on the stream: uvarint length || Notice.
	Frame hexBytes `json:"frame"`
}

type vecTranscript struct {
	T0 hexBytes `json:"t0"`
	T1 hexBytes `json:"t1"`
	T2 hexBytes `json:"t2"`
	T3 hexBytes `json:"t3"`
}

type vecParts struct {
	Initiator vecPart `json:"initiator"`
	Responder vecPart `json:"responder"`
}

// vecPart is one side's sealed part as the peer reassembles and opens it.
type vecPart struct {
	SealedPart     hexBytes `json:"sealed_part"`
	HPKEInfo       hexBytes `json:"hpke_info"`
	Enc            hexBytes `json:"hpke_enc"`
	AEADCiphertext hexBytes `json:"hpke_ciphertext"`
	SignatureInput hexBytes `json:"signature_input"`
	Signature      hexBytes `json:"signature"`
	Opened         hexBytes `json:"opened_part"`
	// EphemeralPrivateKey is the HPKE ephemeral private key skE of the
	// encapsulation (suite 2 only): with it the sealed part, and so every
	// frame of the vector, is a function of the stated inputs.
	EphemeralPrivateKey hexBytes `json:"hpke_ephemeral_private_key,omitempty"`
}

type vecSession struct {
	IKM              hexBytes `json:"ikm"`
	PRK              hexBytes `json:"prk"`
	Key              hexBytes `json:"session_key"`
	KeyID            hexBytes `json:"key_id"`
	ConfirmInitiator hexBytes `json:"confirm_key_initiator"`
	ConfirmResponder hexBytes `json:"confirm_key_responder"`
	MACInitiator     hexBytes `json:"mac_initiator"`
	MACResponder     hexBytes `json:"mac_responder"`
}

type vecResult struct {
	Suite            uint32 `json:"suite"`
	NoticeSize       int    `json:"notice_size"`
	Epoch            uint64 `json:"epoch"`
	InitiatorKeySent bool   `json:"initiator_key_sent"`
	ResponderKeySent bool   `json:"responder_key_sent"`
}

// vecCase is one exchange of the vector set.
type vecCase struct {
	suite Suite
	combo string // no-keys, only-alice-known, only-bob-known, both-known, rotation
	size  int    // negotiated notice size
}

func vecCases() []vecCase {
	var cs []vecCase
	for _, s := range []Suite{SuiteMLKEM768X25519, SuiteX25519} {
		for _, combo := range []string{"no-keys", "only-alice-known", "only-bob-known", "both-known", "rotation"} {
			for _, size := range []int{MinNoticeSize, DefaultNoticeSize} {
				cs = append(cs, vecCase{s, combo, size})
			}
		}
	}
	return cs
}

func (c vecCase) name() string {
	s := "MLKEM768X25519"
	if c.suite == SuiteX25519 {
		s = "X25519"
	}
	return fmt.Sprintf("%s/%s/%d", s, c.combo, c.size)
}

func (c vecCase) description() string {
	var who string
	switch c.combo {
	case "no-keys":
		who = "neither side holds the other's record: both records travel in phase 2"
	case "only-alice-known":
		who = "Bob holds Alice's current record, Alice holds none of Bob's: only Bob's record travels"
	case "only-bob-known":
		who = "Alice holds Bob's current record, Bob holds none of Alice's: only Alice's record travels"
	case "both-known":
		who = "both sides hold each other's current record: phase 2 is empty"
	case "rotation":
		who = "Bob rotated from seq 1 to seq 2; Alice holds the stale seq-1 record and names it in START; Bob holds Alice's current record: only Bob's new record travels"
	}
	var suites string
	if c.suite == SuiteX25519 {
		suites = "Alice offers [1, 2]; Bob holds only a DHKEM(X25519) key and picks 2"
	} else {
		suites = "both offer [1, 2]; Bob picks 1 (MLKEM768-X25519)"
	}
	var size string
	if c.size == MinNoticeSize {
		size = "Alice asks for 128-byte notices, Bob for 1024: 128 is used"
	} else {
		size = "Alice asks for 4096-byte notices, Bob for 1024: 1024 is used"
	}
	return who + "; " + suites + "; " + size + "; Alice proposes epoch 3, Bob 5."
}

// vecSeed returns a fixed 32-byte seed for a label.
func vecSeed(label string) []byte {
	s := sha256.Sum256([]byte("p2pkex test vector: " + label))
	return s[:]
}

// vecIdentity is the Ed25519 identity key of name ("alice" or "bob").
func vecIdentity(t testing.TB, name string) crypto.PrivKey {
	t.Helper()
	sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(vecSeed(name + " identity")))
	require.NoError(t, err)
	return sk
}

// vecExchangeKey builds the exchange key of generation gen of name for the
// suites, from fixed seeds, signed at created.
func vecExchangeKey(t testing.TB, sk crypto.PrivKey, name string, gen uint64, suites []Suite, created time.Time) *ExchangeKey {
	t.Helper()
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	rec := KeyRecord{Peer: id, Seq: gen, Created: created, Expires: created.Add(DefaultRecordLifetime), Keys: map[Suite]hpke.PublicKey{}}
	priv := map[Suite][]byte{}
	for _, s := range suites {
		kem, err := s.KEM()
		require.NoError(t, err)
		k, err := kem.NewPrivateKey(vecSeed(fmt.Sprintf("%s exchange key %d gen %d", name, s, gen)))
		require.NoError(t, err)
		rec.Keys[s] = k.PublicKey()
		priv[s], err = k.Bytes()
		require.NoError(t, err)
	}
	env, err := record.Seal(&rec, sk)
	require.NoError(t, err)
	b, err := env.Marshal()
	require.NoError(t, err)
	k, err := LoadExchangeKey(sk, b, priv)
	require.NoError(t, err)
	return k
}

// vecRecorder records what a machine reads from its random source.
type vecRecorder struct {
	r   io.Reader
	got []byte
}

func (v *vecRecorder) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.got = append(v.got, p[:n]...)
	return n, err
}

// vecBook collects the identities and records the vectors use, each once.
type vecBook struct {
	ids  []*vecIdentityJSON
	recs []*vecRecord
}

func (b *vecBook) identity(t testing.TB, name string, sk crypto.PrivKey) string {
	t.Helper()
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	raw, err := sk.GetPublic().Raw()
	require.NoError(t, err)
	enc, err := crypto.MarshalPrivateKey(sk)
	require.NoError(t, err)
	x := &vecIdentityJSON{Name: name, Seed: vecSeed(name + " identity"), PublicKey: raw,
		PrivateKey: enc, PeerID: []byte(id), PeerIDText: id.String()}
	for _, have := range b.ids {
		if have.Name == name {
			require.Equal(t, have, x)
			return name
		}
	}
	b.ids = append(b.ids, x)
	return name
}

func (b *vecBook) record(t testing.TB, owner string, k *ExchangeKey) string {
	t.Helper()
	if k == nil {
		return ""
	}
	var rec KeyRecord
	e, err := record.ConsumeTypedEnvelope(k.Envelope, &rec)
	require.NoError(t, err)
	priv, err := k.PrivateKeys()
	require.NoError(t, err)
	id := fmt.Sprintf("%s-%d", owner, k.Seq)
	if slices.Equal(k.Suites(), []Suite{SuiteX25519}) {
		id += "-x25519" // a record with only the DHKEM(X25519) key
	}
	x := &vecRecord{ID: id, Owner: owner, Seq: k.Seq, Created: k.Created.Unix(), Expires: k.Expires.Unix(),
		Payload: e.RawPayload, Envelope: k.Envelope, Fingerprint: k.Fingerprint[:]}
	for _, s := range k.Suites() {
		x.Keys = append(x.Keys, vecSuiteKey{Suite: uint32(s), PrivateKey: priv[s], PublicKey: k.Keys[s].Bytes()})
	}
	for _, have := range b.recs {
		if have.ID == id {
			require.Equal(t, have, x)
			return id
		}
	}
	b.recs = append(b.recs, x)
	return id
}

func vecSideOf(t testing.TB, cfg Config, random []byte) vecSide {
	t.Helper()
	s := vecSide{NoticeSize: cfg.NoticeSize, Epoch: cfg.Epoch, Random: random}
	if cfg.Known != nil {
		s.KnownFingerprint = cfg.Known.Fingerprint[:]
	}
	for _, su := range cfg.Suites {
		s.Suites = append(s.Suites, uint32(su))
	}
	require.Len(t, random, NonceSize+PartSize)
	s.Nonce, s.Part = random[:NonceSize], random[NonceSize:]
	return s
}

// runVector runs the exchange of c and returns the vector with its inputs
// and frames filled in, and both machines. Identities and records go to book.
func runVector(t *testing.T, book *vecBook, c vecCase) (*vector, *Machine, *Machine) {
	seedSum := sha256.Sum256([]byte(c.name()))
	seed := binary.BigEndian.Uint64(seedSum[:8])
	cryptotest.SetGlobalRandom(t, seed)

	aliceSK, bobSK := vecIdentity(t, "alice"), vecIdentity(t, "bob")
	aliceID, err := peer.IDFromPrivateKey(aliceSK)
	require.NoError(t, err)
	bobID, err := peer.IDFromPrivateKey(bobSK)
	require.NoError(t, err)

	created := vecTime.Add(-24 * time.Hour)
	aliceKey := vecExchangeKey(t, aliceSK, "alice", 1, DefaultSuites(), created)
	bobSuites := DefaultSuites()
	if c.suite == SuiteX25519 {
		bobSuites = []Suite{SuiteX25519}
	}
	bobKey := vecExchangeKey(t, bobSK, "bob", 1, bobSuites, created)
	var bobPrev *ExchangeKey

	var aliceKnows, bobKnows *ExchangeKey // the peer's key whose record the side holds
	switch c.combo {
	case "no-keys":
	case "only-alice-known":
		bobKnows = aliceKey
	case "only-bob-known":
		aliceKnows = bobKey
	case "both-known":
		aliceKnows, bobKnows = bobKey, aliceKey
	case "rotation":
		bobPrev = bobKey
		bobKey = vecExchangeKey(t, bobSK, "bob", 2, bobSuites, vecTime.Add(-time.Hour))
		aliceKnows, bobKnows = bobPrev, aliceKey
	default:
		t.Fatalf("unknown combination %q", c.combo)
	}
	known := func(k *ExchangeKey) *PeerRecord {
		if k == nil {
			return nil
		}
		r := k.PeerRecord
		return &r
	}

	aliceSize := 4096
	if c.size == MinNoticeSize {
		aliceSize = MinNoticeSize
	}
	now := func() time.Time { return vecTime }
	// rand.Reader is the deterministic reader of SetGlobalRandom here.
	ra, rb := &vecRecorder{r: rand.Reader}, &vecRecorder{r: rand.Reader}
	ca := Config{Role: Initiator, Identity: aliceSK, Remote: bobID, Own: aliceKey, Known: known(aliceKnows),
		Suites: DefaultSuites(), NoticeSize: aliceSize, Epoch: 3, Rand: ra, Now: now}
	cb := Config{Role: Responder, Identity: bobSK, Remote: aliceID, Own: bobKey, Known: known(bobKnows),
		Suites: bobSuites, NoticeSize: DefaultNoticeSize, Epoch: 5, Rand: rb, Now: now}
	ma, err := NewMachine(ca)
	require.NoError(t, err)
	mb, err := NewMachine(cb)
	require.NoError(t, err)

	log, errA, errB := pump(t, ma, mb, nil)
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.True(t, ma.Done() && mb.Done())

	v := &vector{
		Name:        c.name(),
		Description: c.description(),
		ProtocolID:  string(ID),
		Now:         vecTime.Unix(),
		RandomSeed:  seed,
		Initiator:   vecSideOf(t, ca, ra.got),
		Responder:   vecSideOf(t, cb, rb.got),
	}
	v.Initiator.Identity = book.identity(t, "alice", aliceSK)
	v.Responder.Identity = book.identity(t, "bob", bobSK)
	v.Initiator.Record = book.record(t, "alice", aliceKey)
	v.Responder.Record = book.record(t, "bob", bobKey)
	v.Responder.PreviousRecord = book.record(t, "bob", bobPrev)
	v.Initiator.KnownRecord = book.record(t, "bob", aliceKnows)
	v.Responder.KnownRecord = book.record(t, "alice", bobKnows)
	for _, w := range log {
		v.Frames = append(v.Frames, vecWire{
			From:  w.from.String(),
			Type:  w.frame.Type.String(),
			Stage: vecStage(w.frame.Type),
			Frame: AppendFrame(nil, w.frame.Bytes),
		})
	}
	return v, ma, mb
}

// vecStage is the transcript stage of a notice type (docs/PROTOCOL.md,
// "Transcript"); 0 for the notices that are not hashed.
func vecStage(t pb.Notice_Type) int {
	switch t {
	case pb.Notice_START, pb.Notice_CONTINUE, pb.Notice_NEXT:
		return 1
	case pb.Notice_KEY, pb.Notice_KEY_RECEIVED:
		return 2
	case pb.Notice_PART:
		return 3
	}
	return 0
}

func TestVectors(t *testing.T) {
	var fresh vecFile
	fresh.Comment = []string{
		"p2pkex /p2pkex/1.0.0 known-answer vectors; see docs/PROTOCOL.md, section \"Test vectors\".",
		"Generated by protocol/vectors_test.go (go test ./protocol/ -run TestVectors -update).",
		"All byte strings are hex. frames[].frame is exactly what travels on the stream: uvarint length || Notice.",
		"Everything under transcript, parts, session and result is recomputed from the inputs and frames by the test.",
		"record_checks[]: a record received in KEY judged against the held one (sections 8, 8.1); verdict is recomputed from the envelopes.",
		"random_seed is informative (the Go test's seed); the suite-2 vectors give hpke_ephemeral_private_key, so that every frame reproduces from the inputs.",
		"safety: the safety-number word list (index = byte value) and known answers (docs/PROTOCOL.md section 11.6).",
		"exporter: keys exported from the first vector's session key (docs/PROTOCOL.md section 11.7); label is a string, the rest hex.",
	}
	var book vecBook
	for _, c := range vecCases() {
		t.Run(c.name(), func(t *testing.T) {
			v, ma, mb := runVector(t, &book, c)
			fresh.Identities, fresh.Records = book.ids, book.recs
			d, err := specDerive(&fresh, v)
			require.NoError(t, err)
			v.Transcript, v.Parts, v.Session, v.Result = d.Transcript, d.Parts, d.Session, d.Result
			if c.suite == SuiteX25519 {
				vecRecoverEphemeral(t, v)
				d, err = specDerive(&fresh, v) // now also re-seals with skE
				require.NoError(t, err)
				require.Equal(t, v.Parts, d.Parts)
			}

			// The machines agree with the independent computation.
			for _, m := range []*Machine{ma, mb} {
				r := m.Result()
				require.Equal(t, []byte(v.Session.Key), r.Key[:], "%v session key", m.Role())
				require.Equal(t, []byte(v.Session.KeyID), r.KeyID[:], "%v key ID", m.Role())
				require.Equal(t, []byte(v.Transcript.T2), m.t2[:], "%v T2", m.Role())
				require.Equal(t, []byte(v.Transcript.T3), m.t3[:], "%v T3", m.Role())
				require.EqualValues(t, v.Result.Suite, r.Suite)
				require.Equal(t, v.Result.NoticeSize, r.NoticeSize)
				require.Equal(t, v.Result.Epoch, r.Epoch)
				require.Equal(t, v.Result.InitiatorKeySent, r.InitiatorKeySent)
				require.Equal(t, v.Result.ResponderKeySent, r.ResponderKeySent)
			}
			t0 := newTranscript(ma.local, mb.local)
			require.Equal(t, []byte(v.Transcript.T0), t0.value[:])
			require.Equal(t, []byte(v.Initiator.Commitment), ma.commit[:])
			require.Equal(t, []byte(v.Responder.Commitment), mb.commit[:])
			fresh.Vectors = append(fresh.Vectors, v)
		})
	}
	fresh.RecordChecks = vecRecordChecks(t, &book)
	fresh.Identities = book.ids
	for _, c := range fresh.RecordChecks {
		verdict, err := specRecordVerdict(&fresh, c)
		require.NoError(t, err, c.Name)
		require.Equal(t, c.Verdict, verdict, "%s: the independent implementation disagrees", c.Name)
	}
	if t.Failed() {
		return
	}
	fresh.Safety = vecSafetyVectors(t)
	fresh.Exporter = vecExporterVectors(t, fresh.Vectors[0]) // exporter_test.go
	got, err := json.MarshalIndent(&fresh, "", "  ")
	require.NoError(t, err)
	got = append(got, '\n')

	if vecUpdate() {
		require.NoError(t, os.MkdirAll(filepath.Dir(vectorsFile), 0o755))
		require.NoError(t, os.WriteFile(vectorsFile, got, 0o644))
		t.Logf("wrote %s (%d vectors, %d bytes)", vectorsFile, len(fresh.Vectors), len(got))
		return
	}
	want, err := os.ReadFile(vectorsFile)
	require.NoError(t, err, "run with -update to create it")
	if bytes.Equal(got, want) {
		return
	}
	// Say which field differs.
	var old vecFile
	require.NoError(t, json.Unmarshal(want, &old))
	require.Equal(t, old.Identities, fresh.Identities)
	require.Equal(t, old.Records, fresh.Records)
	require.Equal(t, len(old.Vectors), len(fresh.Vectors), "number of vectors")
	for i := range old.Vectors {
		require.Equal(t, old.Vectors[i], fresh.Vectors[i], "vector %d (%s)", i, old.Vectors[i].Name)
	}
	require.Equal(t, old.RecordChecks, fresh.RecordChecks)
	require.Equal(t, old.Exporter, fresh.Exporter)
	require.Equal(t, string(want), string(got), "%s differs from a fresh run", vectorsFile)
}

// TestVectorsFileSelfConsistent recomputes every derived value of the
// committed file from its inputs and frames alone, without running any
// machine, as an implementation in another language would.
func TestVectorsFileSelfConsistent(t *testing.T) {
	b, err := os.ReadFile(vectorsFile)
	require.NoError(t, err)
	var f vecFile
	require.NoError(t, json.Unmarshal(b, &f))
	require.NotEmpty(t, f.Vectors)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			d, err := specDerive(&f, v)
			require.NoError(t, err)
			require.Equal(t, v.Transcript, d.Transcript)
			require.Equal(t, v.Parts, d.Parts)
			require.Equal(t, v.Session, d.Session)
			require.Equal(t, v.Result, d.Result)
		})
	}
	require.NotEmpty(t, f.RecordChecks)
	for _, c := range f.RecordChecks {
		t.Run("record/"+c.Name, func(t *testing.T) {
			verdict, err := specRecordVerdict(&f, c)
			require.NoError(t, err)
			require.Equal(t, c.Verdict, verdict)
		})
	}
}

// vecRecordChecks builds the record-validation cases from fixed seeds,
// each record with one X25519 key, and judges them with the Go
// implementation (ParsePeerRecord, RelateRecords); the verdict must also
// be the one the case was designed for.
func vecRecordChecks(t *testing.T, book *vecBook) []*vecRecordCheck {
	t.Helper()
	sk := vecIdentity(t, "bob")
	name := book.identity(t, "bob", sk)
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	now := vecTime
	day := 24 * time.Hour
	type rec struct {
		seq              uint64
		created, expires time.Time
	}
	seal := func(label string, r rec) []byte {
		kem, err := SuiteX25519.KEM()
		require.NoError(t, err)
		k, err := kem.NewPrivateKey(vecSeed("record check " + label))
		require.NoError(t, err)
		x, err := sealRecord(sk, KeyRecord{Peer: id, Seq: r.seq, Created: r.created, Expires: r.expires},
			map[Suite]hpke.PrivateKey{SuiteX25519: k})
		require.NoError(t, err)
		return x.Envelope
	}
	month := func(seq uint64, created time.Time) *rec {
		return &rec{seq, created, created.Add(DefaultRecordLifetime)}
	}
	cases := []struct {
		name, description string
		held              *rec
		received          rec
		verdict           string
		rules             []string
	}{
		{"lifetime-61-days", "expires - created is one day over MaxRecordLifetime", nil,
			rec{1, now.Add(-day), now.Add(60 * day)}, "bad-record", []string{"V51"}},
		{"lifetime-10-years", "valid for ten years", nil,
			rec{1, now.Add(-day), now.Add(10 * 365 * day)}, "bad-record", []string{"V51"}},
		{"lifetime-60-days", "exactly MaxRecordLifetime", nil,
			rec{1, now.Add(-day), now.Add(59 * day)}, "first", []string{"V51"}},
		{"expires-before-created", "created within the clock skew, expires before it", nil,
			rec{1, now.Add(5 * time.Minute), now.Add(time.Minute)}, "bad-record", []string{"V50"}},
		{"rotation", "higher seq, created later", month(1, now.Add(-2*day)),
			*month(2, now.Add(-day)), "rotation", []string{"V40"}},
		{"rotation-max-seq-jump", "seq exactly MaxSeqJump above the held one", month(1, now.Add(-2*day)),
			*month(1+MaxSeqJump, now.Add(-day)), "rotation", []string{"V40"}},
		{"rollback-seq-jump", "seq one more than MaxSeqJump above the held one", month(1, now.Add(-2*day)),
			*month(2+MaxSeqJump, now.Add(-day)), "rollback", []string{"V40"}},
		{"reset", "lower seq, created later: the owner lost its store", month(5, now.Add(-2*day)),
			*month(1, now.Add(-day)), "reset", []string{"V40", "V41"}},
		{"rollback-created-earlier", "higher seq, but created before the held record", month(2, now.Add(-day)),
			*month(3, now.Add(-2*day)), "rollback", []string{"V40"}},
		{"rollback-same-second", "another record of the held seq, created in the same second", month(2, now.Add(-day)),
			*month(2, now.Add(-day)), "rollback", []string{"V40"}},
		{"rollback-against-expired-held", "older than the held record, which expired 10 days ago", month(3, now.Add(-40*day)),
			rec{2, now.Add(-50 * day), now.Add(10 * day)}, "rollback", []string{"V40"}},
	}
	var out []*vecRecordCheck
	for _, c := range cases {
		x := &vecRecordCheck{Name: c.name, Description: c.description, Now: now.Unix(), Peer: name,
			Received: seal(c.name+" received", c.received), Verdict: c.verdict, Rules: c.rules}
		var held *PeerRecord
		if c.held != nil {
			x.Held = seal(c.name+" held", *c.held)
			_, kr, err := openEnvelope(x.Held)
			require.NoError(t, err)
			held = &PeerRecord{KeyRecord: kr, Envelope: x.Held, Fingerprint: FingerprintOf(x.Held)}
		}
		got := "bad-record"
		if r, err := ParsePeerRecord(x.Received, id, now); err == nil {
			rel, _ := RelateRecords(held, r)
			got = map[RecordRelation]string{RecordFirst: "first", RecordSame: "same", RecordRotation: "rotation",
				RecordReset: "reset", RecordRollback: "rollback"}[rel]
		} else {
			require.ErrorIs(t, err, ErrBadRecord, c.name)
		}
		require.Equal(t, c.verdict, got, "%s: the Go implementation", c.name)
		out = append(out, x)
	}
	return out
}

// ---------------------------------------------------------------------------
// An independent implementation of the formulas of docs/PROTOCOL.md. It uses
// the standard library (sha256, hkdf, hmac, hpke, ed25519), protowire for the
// libp2p envelope and the generated wire types, and nothing else of this
// package.

// Labels, as written in docs/PROTOCOL.md, "Derivations".
const (
	specProtocolID      = "/p2pkex/1.0.0"
	specLabelTranscript = "p2pkex/1.0.0 transcript"
	specLabelCommitment = "p2pkex/1.0.0 commitment"
	specLabelPart       = "p2pkex/1.0.0 part"
	specLabelPartSig    = "p2pkex/1.0.0 part signature"
	specLabelSessionKey = "p2pkex/1.0.0 session key"
	specLabelKeyID      = "p2pkex/1.0.0 key id"
	specLabelConfirm    = "p2pkex/1.0.0 confirm "
	specRecordDomain    = "p2pkex-exchange-key"
	specRecordType      = "/p2pkex/exchange-key/1"
	specChunkOverhead   = 24
	specMinNoticeSize   = 128
	specMaxChunks       = 128
	specMaxClockSkew    = 600 // seconds
	// specMaxRecordLifetime bounds expires - created: 60 days, in seconds.
	specMaxRecordLifetime = 60 * 24 * 3600
)

var specRoles = [2]string{"initiator", "responder"}

// specLP is lp(x): a 4-byte big-endian length, then x.
func specLP(x []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(x))), x...)
}

func specCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func specSHA256(parts ...[]byte) []byte {
	s := sha256.Sum256(specCat(parts...))
	return s[:]
}

func specCommitment(role string, part []byte) []byte {
	return specSHA256(specLP([]byte(specLabelCommitment)), specLP([]byte(role)), part)
}

func specFingerprint(envelope []byte) []byte {
	return append([]byte{0x12, 0x20}, specSHA256(envelope)...)
}

// specPeerID is the peer ID of an Ed25519 key: the identity multihash of the
// protobuf PublicKey{Type: Ed25519, Data: pub}.
func specPeerID(pub []byte) []byte {
	key := specCat([]byte{0x08, 0x01, 0x12, byte(len(pub))}, pub)
	return specCat([]byte{0x00, byte(len(key))}, key)
}

func specKEM(suite uint32) (hpke.KEM, error) {
	switch suite {
	case 1:
		return hpke.MLKEM768X25519(), nil
	case 2:
		return hpke.DHKEM(ecdh.X25519()), nil
	}
	return nil, fmt.Errorf("unknown suite %d", suite)
}

// specEncSize is Nenc of the suite's KEM.
func specEncSize(suite uint32) int {
	if suite == 1 {
		return 1088 + 32
	}
	return 32
}

// specEnvelope checks a record envelope of the Ed25519 identity pub and
// returns its payload.
func specEnvelope(env, pub []byte) ([]byte, error) {
	var keyMsg, ptype, payload, sig []byte
	b := env
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return nil, errors.New("envelope: unexpected field")
		}
		b = b[n:]
		val, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, errors.New("envelope: truncated")
		}
		b = b[n:]
		switch num {
		case 1:
			keyMsg = val
		case 2:
			ptype = val
		case 3:
			payload = val
		case 5:
			sig = val
		default:
			return nil, fmt.Errorf("envelope: field %d", num)
		}
	}
	if !bytes.Equal(keyMsg, specCat([]byte{0x08, 0x01, 0x12, 0x20}, pub)) {
		return nil, errors.New("envelope: public key is not the identity key")
	}
	if string(ptype) != specRecordType {
		return nil, fmt.Errorf("envelope: payload type %q", ptype)
	}
	var unsigned []byte
	for _, f := range [][]byte{[]byte(specRecordDomain), ptype, payload} {
		unsigned = binary.AppendUvarint(unsigned, uint64(len(f)))
		unsigned = append(unsigned, f...)
	}
	if !ed25519.Verify(pub, unsigned, sig) {
		return nil, errors.New("envelope: bad signature")
	}
	return payload, nil
}

// specCheckRecord checks a recorded record against its owner's identity.
func specCheckRecord(r *vecRecord, pub, peerID []byte, now int64) error {
	payload, err := specEnvelope(r.Envelope, pub)
	if err != nil {
		return err
	}
	if !bytes.Equal(payload, r.Payload) {
		return errors.New("record payload differs from the envelope's")
	}
	if !bytes.Equal(r.Fingerprint, specFingerprint(r.Envelope)) {
		return errors.New("record fingerprint")
	}
	var m pb.ExchangeKeyRecord
	if err := proto.Unmarshal(payload, &m); err != nil {
		return err
	}
	if !bytes.Equal(m.PeerId, peerID) || m.Seq != r.Seq || m.Created != r.Created || m.Expires != r.Expires {
		return errors.New("record fields")
	}
	if m.Expires <= m.Created || uint64(m.Expires)-uint64(m.Created) > specMaxRecordLifetime {
		return errors.New("record lifetime out of bounds")
	}
	if m.Created > now+specMaxClockSkew || now >= m.Expires {
		return errors.New("record not valid now")
	}
	if len(m.Keys) != len(r.Keys) {
		return errors.New("record keys")
	}
	for i, k := range r.Keys {
		kem, err := specKEM(k.Suite)
		if err != nil {
			return err
		}
		sk, err := kem.NewPrivateKey(k.PrivateKey)
		if err != nil {
			return err
		}
		if m.Keys[i].Suite != k.Suite || !bytes.Equal(m.Keys[i].PublicKey, k.PublicKey) || !bytes.Equal(sk.PublicKey().Bytes(), k.PublicKey) {
			return fmt.Errorf("record key %d", k.Suite)
		}
	}
	return nil
}

// specRecordFields opens a record envelope of the identity named peer and
// returns its payload, with the signature checked.
func specRecordFields(f *vecFile, peer string, env []byte) (*pb.ExchangeKeyRecord, []byte, error) {
	var id *vecIdentityJSON
	for _, x := range f.Identities {
		if x.Name == peer {
			id = x
		}
	}
	if id == nil {
		return nil, nil, fmt.Errorf("unknown identity %q", peer)
	}
	payload, err := specEnvelope(env, id.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	var m pb.ExchangeKeyRecord
	if err := proto.Unmarshal(payload, &m); err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(m.PeerId, id.PeerID) {
		return nil, nil, errors.New("record of another peer")
	}
	return &m, specFingerprint(env), nil
}

// specRecordVerdict judges a record check as sections 8 and 8.1 say.
func specRecordVerdict(f *vecFile, c *vecRecordCheck) (string, error) {
	r, fp, err := specRecordFields(f, c.Peer, c.Received)
	if err != nil {
		return "", err
	}
	// Section 8, steps 6 and 7.
	if r.Expires <= r.Created || uint64(r.Expires)-uint64(r.Created) > specMaxRecordLifetime ||
		r.Created > c.Now+specMaxClockSkew || c.Now >= r.Expires {
		return "bad-record", nil
	}
	if len(c.Held) == 0 {
		return "first", nil
	}
	h, hfp, err := specRecordFields(f, c.Peer, c.Held)
	if err != nil {
		return "", err
	}
	// Section 8.1, the first row that applies.
	switch {
	case bytes.Equal(fp, hfp):
		return "same", nil
	case r.Created < h.Created:
		return "rollback", nil
	case r.Seq > h.Seq && r.Seq-h.Seq > 1<<20:
		return "rollback", nil
	case r.Seq > h.Seq:
		return "rotation", nil
	case r.Created == h.Created:
		return "rollback", nil
	}
	return "reset", nil
}

type specDerived struct {
	Transcript vecTranscript
	Parts      vecParts
	Session    vecSession
	Result     vecResult
}

// identity is the file's identity named name, or nil.
func (f *vecFile) identity(name string) *vecIdentityJSON {
	if i := slices.IndexFunc(f.Identities, func(x *vecIdentityJSON) bool { return x.Name == name }); i >= 0 {
		return f.Identities[i]
	}
	return nil
}

// recordOf is the file's record with ID id, or nil.
func (f *vecFile) recordOf(id string) *vecRecord {
	if i := slices.IndexFunc(f.Records, func(x *vecRecord) bool { return x.ID == id }); i >= 0 {
		return f.Records[i]
	}
	return nil
}

// specDerive recomputes everything a vector derives from its inputs and
// frames, checking every notice against the rules of docs/PROTOCOL.md on
// the way.
func specDerive(f *vecFile, v *vector) (*specDerived, error) {
	sides := [2]*vecSide{&v.Initiator, &v.Responder}
	var ids [2]*vecIdentityJSON
	var recs [2]*vecRecord // current records
	for i, s := range sides {
		id := f.identity(s.Identity)
		if id == nil {
			return nil, fmt.Errorf("%s: unknown identity %q", specRoles[i], s.Identity)
		}
		priv := ed25519.NewKeyFromSeed(id.Seed)
		pub := []byte(priv.Public().(ed25519.PublicKey))
		if !bytes.Equal(pub, id.PublicKey) || !bytes.Equal(specPeerID(pub), id.PeerID) {
			return nil, fmt.Errorf("%s: identity", specRoles[i])
		}
		ids[i] = id
		for _, rid := range []string{s.Record, s.PreviousRecord} {
			if rid == "" {
				continue
			}
			r := f.recordOf(rid)
			if r == nil || r.Owner != s.Identity {
				return nil, fmt.Errorf("%s: record %q", specRoles[i], rid)
			}
			if err := specCheckRecord(r, pub, id.PeerID, v.Now); err != nil {
				return nil, fmt.Errorf("%s record %s: %w", specRoles[i], rid, err)
			}
		}
		recs[i] = f.recordOf(s.Record)
		if recs[i] == nil {
			return nil, fmt.Errorf("%s: no current record", specRoles[i])
		}
		if len(s.Random) != 64 || !bytes.Equal(s.Nonce, s.Random[:32]) || !bytes.Equal(s.Part, s.Random[32:]) {
			return nil, fmt.Errorf("%s: nonce and part are the first 64 random bytes", specRoles[i])
		}
		if c := specCommitment(specRoles[i], s.Part); s.Commitment != nil && !bytes.Equal(c, s.Commitment) {
			return nil, fmt.Errorf("%s: commitment", specRoles[i])
		}
		s.Commitment = specCommitment(specRoles[i], s.Part)
	}
	for i, s := range sides {
		if s.KnownRecord == "" {
			if len(s.KnownFingerprint) != 0 {
				return nil, fmt.Errorf("%s: known fingerprint without a record", specRoles[i])
			}
			continue
		}
		r := f.recordOf(s.KnownRecord)
		if r == nil || r.Owner != sides[1-i].Identity || !bytes.Equal(r.Fingerprint, s.KnownFingerprint) {
			return nil, fmt.Errorf("%s: known record %q", specRoles[i], s.KnownRecord)
		}
	}

	// Frames: decode the framing, the notice, and collect per direction.
	type noticeRec struct {
		from  int
		raw   []byte
		n     *pb.Notice
		stage int
	}
	var ns []noticeRec
	for i, w := range v.Frames {
		l, k := binary.Uvarint(w.Frame)
		if k <= 0 || len(binary.AppendUvarint(nil, l)) != k || l != uint64(len(w.Frame)-k) || l == 0 {
			return nil, fmt.Errorf("frame %d: bad length prefix", i)
		}
		raw := w.Frame[k:]
		var n pb.Notice
		if err := proto.Unmarshal(raw, &n); err != nil {
			return nil, fmt.Errorf("frame %d: %w", i, err)
		}
		from := slices.Index(specRoles[:], w.From)
		if from < 0 || n.Type.String() != w.Type || vecStage(n.Type) != w.Stage {
			return nil, fmt.Errorf("frame %d: from/type/stage", i)
		}
		ns = append(ns, noticeRec{from, raw, &n, w.Stage})
	}
	if len(ns) < 3 || ns[0].n.Type != pb.Notice_START || ns[1].n.Type != pb.Notice_CONTINUE || ns[2].n.Type != pb.Notice_NEXT {
		return nil, errors.New("phase 1 is START, CONTINUE, NEXT")
	}
	st, co, nx := ns[0].n.Start, ns[1].n.Continue, ns[2].n.Next
	ini, res := sides[0], sides[1]

	// Phase 1: what each field must say.
	if st.Version != 1 || !slices.Equal(st.Suites, ini.Suites) || !bytes.Equal(st.Nonce, ini.Nonce) ||
		!bytes.Equal(st.Commitment, ini.Commitment) || int(st.NoticeSize) != ini.NoticeSize ||
		st.Epoch != ini.Epoch || !bytes.Equal(st.KeyFingerprint, ini.KnownFingerprint) {
		return nil, errors.New("START does not carry the initiator's inputs")
	}
	// The responder's choice, which the initiator checks (rules V17, V52):
	// the first offered suite the responder's record has a key for.
	var suite uint32
	for _, s := range st.Suites {
		if slices.ContainsFunc(recs[1].Keys, func(k vecSuiteKey) bool { return k.Suite == s }) {
			suite = s
			break
		}
	}
	if !slices.Contains(res.Suites, suite) {
		return nil, errors.New("the responder chose a suite it does not accept")
	}
	size := min(ini.NoticeSize, res.NoticeSize)
	if co.Suite != suite || int(co.NoticeSize) != size || co.Epoch != res.Epoch ||
		!bytes.Equal(co.Nonce, res.Nonce) || !bytes.Equal(co.Commitment, res.Commitment) ||
		!bytes.Equal(co.KeyFingerprint, res.KnownFingerprint) ||
		co.KeyMatched != bytes.Equal(st.KeyFingerprint, recs[1].Fingerprint) {
		return nil, errors.New("CONTINUE does not follow from START and the responder's inputs")
	}
	if nx.KeyMatched != bytes.Equal(co.KeyFingerprint, recs[0].Fingerprint) {
		return nil, errors.New("NEXT key_matched")
	}
	sends := [2]bool{!nx.KeyMatched, !co.KeyMatched} // whose record travels

	// Every notice fits the negotiated size (phase 1: 128 bytes).
	for i, x := range ns {
		limit := size
		if i < 3 {
			limit = specMinNoticeSize
		}
		if len(x.raw) > limit {
			return nil, fmt.Errorf("notice %d is %d bytes, limit %d", i, len(x.raw), limit)
		}
	}

	// Reassemble the items of each direction.
	reassemble := func(from int, typ pb.Notice_Type) ([]byte, error) {
		var item []byte
		var count uint32
		next := uint32(0)
		for _, x := range ns {
			if x.from != from || x.n.Type != typ {
				continue
			}
			c := x.n.Chunk
			if c.Index != next || c.Count == 0 || c.Count > specMaxChunks || (count != 0 && c.Count != count) || len(c.Data) == 0 {
				return nil, fmt.Errorf("%s %v chunk %d", specRoles[from], typ, next)
			}
			if c.Index+1 < c.Count && len(c.Data) != size-specChunkOverhead {
				return nil, fmt.Errorf("%s %v chunk %d is not full", specRoles[from], typ, next)
			}
			count = c.Count
			next++
			item = append(item, c.Data...)
		}
		if next != count {
			return nil, fmt.Errorf("%s %v: %d of %d chunks", specRoles[from], typ, next, count)
		}
		return item, nil
	}
	count := func(from int, typ pb.Notice_Type) int {
		k := 0
		for _, x := range ns {
			if x.from == from && x.n.Type == typ {
				k++
			}
		}
		return k
	}

	// Phase 2: the records that travel and their receipts.
	for i := range 2 {
		if !sends[i] {
			if count(i, pb.Notice_KEY) != 0 || count(1-i, pb.Notice_KEY_RECEIVED) != 0 {
				return nil, fmt.Errorf("%s: KEY without need", specRoles[i])
			}
			continue
		}
		env, err := reassemble(i, pb.Notice_KEY)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(env, recs[i].Envelope) {
			return nil, fmt.Errorf("%s: KEY carries another record", specRoles[i])
		}
		var ack *pb.KeyReceived
		for _, x := range ns {
			if x.from == 1-i && x.n.Type == pb.Notice_KEY_RECEIVED {
				ack = x.n.KeyReceived
			}
		}
		if ack == nil || count(1-i, pb.Notice_KEY_RECEIVED) != 1 || !bytes.Equal(ack.Fingerprint, specFingerprint(env)) {
			return nil, fmt.Errorf("%s: KEY_RECEIVED", specRoles[1-i])
		}
	}

	// Transcript.
	var tr vecTranscript
	tr.T0 = specSHA256(specLP([]byte(specLabelTranscript)), specLP([]byte(specProtocolID)),
		specLP(ids[0].PeerID), specLP(ids[1].PeerID))
	prev := tr.T0
	stages := []string{"phase 1", "phase 2", "phase 3"}
	var ts [3][]byte
	for si, name := range stages {
		var dir [2][]byte
		for _, x := range ns {
			if x.stage == si+1 {
				dir[x.from] = append(dir[x.from], specLP(x.raw)...)
			}
		}
		prev = specSHA256(specLP([]byte(specLabelTranscript)), specLP([]byte(name)), prev,
			specSHA256(dir[0]), specSHA256(dir[1]))
		ts[si] = prev
	}
	tr.T1, tr.T2, tr.T3 = ts[0], ts[1], ts[2]

	// Phase 3: open and check each part.
	var parts [2]vecPart
	for i := range 2 {
		item, err := reassemble(i, pb.Notice_PART)
		if err != nil {
			return nil, err
		}
		var sp pb.SealedPart
		if err := proto.Unmarshal(item, &sp); err != nil {
			return nil, err
		}
		role := []byte(specRoles[i])
		p := vecPart{
			SealedPart:     item,
			HPKEInfo:       specCat(specLP([]byte(specLabelPart)), specLP(role), tr.T2),
			SignatureInput: specCat(specLP([]byte(specLabelPartSig)), specLP(role), tr.T2, specLP(sp.Ciphertext)),
			Signature:      sp.Signature,
		}
		if !ed25519.Verify(ed25519.PublicKey(ids[i].PublicKey), p.SignatureInput, sp.Signature) {
			return nil, fmt.Errorf("%s: part signature", specRoles[i])
		}
		es := specEncSize(suite)
		if len(sp.Ciphertext) < es {
			return nil, fmt.Errorf("%s: short ciphertext", specRoles[i])
		}
		p.Enc, p.AEADCiphertext = sp.Ciphertext[:es], sp.Ciphertext[es:]
		// Sealed to the receiver's current record.
		var skBytes []byte
		for _, k := range recs[1-i].Keys {
			if k.Suite == suite {
				skBytes = k.PrivateKey
			}
		}
		kem, err := specKEM(suite)
		if err != nil {
			return nil, err
		}
		sk, err := kem.NewPrivateKey(skBytes)
		if err != nil {
			return nil, err
		}
		r, err := hpke.NewRecipient(p.Enc, sk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), p.HPKEInfo)
		if err != nil {
			return nil, err
		}
		if p.Opened, err = r.Open(nil, p.AEADCiphertext); err != nil {
			return nil, fmt.Errorf("%s: open part: %w", specRoles[i], err)
		}
		if !bytes.Equal(p.Opened, sides[i].Part) || !bytes.Equal(specCommitment(specRoles[i], p.Opened), sides[i].Commitment) {
			return nil, fmt.Errorf("%s: part does not match its commitment", specRoles[i])
		}
		if skE := v.Parts.of(i).EphemeralPrivateKey; len(skE) > 0 {
			// Section 21: the part reproduces from skE.
			if suite != 2 {
				return nil, fmt.Errorf("%s: an ephemeral key for suite %d", specRoles[i], suite)
			}
			var pkR []byte
			for _, k := range recs[1-i].Keys {
				if k.Suite == suite {
					pkR = k.PublicKey
				}
			}
			enc, ct, err := specSealX25519(skE, pkR, p.HPKEInfo, sides[i].Part)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(enc, p.Enc) || !bytes.Equal(ct, p.AEADCiphertext) {
				return nil, fmt.Errorf("%s: the part does not reproduce from its ephemeral key", specRoles[i])
			}
			p.EphemeralPrivateKey = skE
		}
		parts[i] = p
	}

	// Session key, key ID, confirmation.
	var se vecSession
	se.IKM = make([]byte, 32)
	for i := range se.IKM {
		se.IKM[i] = parts[0].Opened[i] ^ parts[1].Opened[i]
	}
	var err error
	if se.PRK, err = hkdf.Extract(sha256.New, se.IKM, tr.T3); err != nil {
		return nil, err
	}
	expand := func(label string, n int) []byte {
		out, e := hkdf.Expand(sha256.New, se.PRK, label, n)
		if e != nil {
			err = e
		}
		return out
	}
	se.Key = expand(specLabelSessionKey, 32)
	se.KeyID = expand(specLabelKeyID, 8)
	se.ConfirmInitiator = expand(specLabelConfirm+"initiator", 32)
	se.ConfirmResponder = expand(specLabelConfirm+"responder", 32)
	if err != nil {
		return nil, err
	}
	mac := func(k []byte) []byte {
		h := hmac.New(sha256.New, k)
		h.Write(tr.T3)
		return h.Sum(nil)
	}
	se.MACInitiator, se.MACResponder = mac(se.ConfirmInitiator), mac(se.ConfirmResponder)
	for i, want := range [][]byte{se.MACInitiator, se.MACResponder} {
		k := 0
		for _, x := range ns {
			if x.from == i && x.n.Type == pb.Notice_PART_RECEIVED {
				k++
				if !bytes.Equal(x.n.PartReceived.Mac, want) {
					return nil, fmt.Errorf("%s: confirmation MAC", specRoles[i])
				}
			}
		}
		if k != 1 {
			return nil, fmt.Errorf("%s: %d PART_RECEIVED", specRoles[i], k)
		}
	}
	return &specDerived{
		Transcript: tr,
		Parts:      vecParts{Initiator: parts[0], Responder: parts[1]},
		Session:    se,
		Result: vecResult{Suite: suite, NoticeSize: size, Epoch: max(ini.Epoch, res.Epoch),
			InitiatorKeySent: sends[0], ResponderKeySent: sends[1]},
	}, nil
}

// TestVectorsDetectTampering makes sure the recomputation is not vacuous:
// changing any one frame of a vector, or any derived value, is noticed.
func TestVectorsDetectTampering(t *testing.T) {
	b, err := os.ReadFile(vectorsFile)
	require.NoError(t, err)
	for _, i := range []int{0, 17} {
		var f vecFile
		require.NoError(t, json.Unmarshal(b, &f))
		require.Greater(t, len(f.Vectors), i)
		v := f.Vectors[i]
		t.Run(v.Name, func(t *testing.T) {
			for j := range v.Frames {
				frame := v.Frames[j].Frame
				orig := bytes.Clone(frame)
				frame[len(frame)-1] ^= 0x01
				_, err := specDerive(&f, v)
				require.Error(t, err, "frame %d (%s) changed unnoticed", j, v.Frames[j].Type)
				copy(frame, orig)
			}
			d, err := specDerive(&f, v)
			require.NoError(t, err)
			require.Equal(t, v.Session, d.Session)
			v.Initiator.Part[0] ^= 1
			_, err = specDerive(&f, v)
			require.Error(t, err, "initiator part changed unnoticed")
		})
	}
}

func (p *vecParts) of(i int) *vecPart {
	if i == 0 {
		return &p.Initiator
	}
	return &p.Responder
}

// vecRecoverEphemeral finds the HPKE ephemeral keys of a suite-2 vector:
// replaying the seed of SetGlobalRandom, the draws after both sides'
// nonce and part are the two encapsulations' 32-byte X25519 keys (in the
// order the sides sealed), each identified by its public key.
func vecRecoverEphemeral(t *testing.T, v *vector) {
	t.Helper()
	cryptotest.SetGlobalRandom(t, v.RandomSeed)
	buf := make([]byte, 4*32+2*32)
	_, err := io.ReadFull(rand.Reader, buf)
	require.NoError(t, err)
	require.Equal(t, []byte(v.Initiator.Random), buf[:64], "replayed draws")
	require.Equal(t, []byte(v.Responder.Random), buf[64:128], "replayed draws")
	for _, p := range []*vecPart{&v.Parts.Initiator, &v.Parts.Responder} {
		for _, cand := range [][]byte{buf[128:160], buf[160:192]} {
			sk, err := ecdh.X25519().NewPrivateKey(cand)
			require.NoError(t, err)
			if bytes.Equal(sk.PublicKey().Bytes(), p.Enc) {
				p.EphemeralPrivateKey = bytes.Clone(cand)
			}
		}
		require.NotEmpty(t, p.EphemeralPrivateKey, "no draw is the ephemeral key of enc %x", []byte(p.Enc))
	}
}

// specSealX25519 is RFC 9180 mode_base single-shot Seal with
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305 and the given
// ephemeral key (sections 4.1, 5.1, 5.2 and 7.1 of the RFC), empty aad and
// sequence number 0: the oracle that makes the suite-2 vectors
// reproducible. Test-only; the protocol seals with crypto/hpke.
func specSealX25519(skE, pkR, info, pt []byte) (enc, ct []byte, err error) {
	curve := ecdh.X25519()
	eph, err := curve.NewPrivateKey(skE)
	if err != nil {
		return nil, nil, err
	}
	pub, err := curve.NewPublicKey(pkR)
	if err != nil {
		return nil, nil, err
	}
	dh, err := eph.ECDH(pub)
	if err != nil {
		return nil, nil, err
	}
	enc = eph.PublicKey().Bytes()
	kemID := []byte("KEM\x00\x20")
	hpkeID := []byte("HPKE\x00\x20\x00\x01\x00\x03")
	extract := func(suite []byte, salt []byte, label string, ikm []byte) []byte {
		out, e := hkdf.Extract(sha256.New, specCat([]byte("HPKE-v1"), suite, []byte(label), ikm), salt)
		if e != nil {
			err = e
		}
		return out
	}
	expand := func(suite, prk []byte, label string, info []byte, n int) []byte {
		lab := specCat(binary.BigEndian.AppendUint16(nil, uint16(n)), []byte("HPKE-v1"), suite, []byte(label), info)
		out, e := hkdf.Expand(sha256.New, prk, string(lab), n)
		if e != nil {
			err = e
		}
		return out
	}
	shared := expand(kemID, extract(kemID, nil, "eae_prk", dh), "shared_secret", specCat(enc, pkR), 32)
	ctx := specCat([]byte{0}, extract(hpkeID, nil, "psk_id_hash", nil), extract(hpkeID, nil, "info_hash", info))
	secret := extract(hpkeID, shared, "secret", nil)
	key := expand(hpkeID, secret, "key", ctx, chacha20poly1305.KeySize)
	nonce := expand(hpkeID, secret, "base_nonce", ctx, chacha20poly1305.NonceSize)
	if err != nil {
		return nil, nil, err
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, nil, err
	}
	return enc, aead.Seal(nil, nonce, pt, nil), nil
}

// vecSafetyVectors are the safety-number vectors: the word list and the
// known answers of section 11.6 and of the vectors' identities.
func vecSafetyVectors(t *testing.T) *vecSafety {
	t.Helper()
	out := &vecSafety{Words: SafetyWords[:]}
	var pairs [][2]peer.ID
	a, err := peer.Decode(safetyPeerA)
	require.NoError(t, err)
	b, err := peer.Decode(safetyPeerB)
	require.NoError(t, err)
	pairs = append(pairs, [2]peer.ID{a, b})
	alice, err := peer.IDFromPrivateKey(vecIdentity(t, "alice"))
	require.NoError(t, err)
	bob, err := peer.IDFromPrivateKey(vecIdentity(t, "bob"))
	require.NoError(t, err)
	pairs = append(pairs, [2]peer.ID{alice, bob})
	for _, p := range pairs {
		sn := NewSafetyNumber(p[0], p[1])
		c := vecSafetyCase{PeerA: []byte(p[0]), PeerB: []byte(p[1]), PeerAText: p[0].String(), PeerBText: p[1].String(),
			Digest: sn[:], Digits: sn.Digits(), Words: sn.Words()}
		require.NoError(t, specSafety(out.Words, &c))
		out.Cases = append(out.Cases, c)
	}
	return out
}

// specSafety recomputes a safety-number case from the two peer IDs and the
// word list alone (section 11.6).
func specSafety(words []string, c *vecSafetyCase) error {
	if len(words) != 256 {
		return fmt.Errorf("%d words, want 256", len(words))
	}
	lo, hi := []byte(c.PeerA), []byte(c.PeerB)
	if bytes.Compare(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	d := sha512.Sum512(specCat(specLP([]byte("p2pkex/1.0.0 safety number")), specLP(lo), specLP(hi)))
	if !bytes.Equal(d[:], c.Digest) {
		return errors.New("safety digest")
	}
	var digits, ws []string
	for i := range 12 {
		var b [8]byte
		copy(b[3:], d[5*i:5*i+5])
		digits = append(digits, fmt.Sprintf("%05d", binary.BigEndian.Uint64(b[:])%100000))
		ws = append(ws, words[d[i]])
	}
	if strings.Join(digits, " ") != c.Digits || strings.Join(ws, " ") != c.Words {
		return errors.New("safety digits or words")
	}
	return nil
}

// TestSafetyVectors recomputes the committed safety-number vectors.
func TestSafetyVectors(t *testing.T) {
	b, err := os.ReadFile(vectorsFile)
	require.NoError(t, err)
	var f vecFile
	require.NoError(t, json.Unmarshal(b, &f))
	require.NotNil(t, f.Safety)
	require.Equal(t, SafetyWords[:], f.Safety.Words)
	require.NotEmpty(t, f.Safety.Cases)
	for i := range f.Safety.Cases {
		require.NoError(t, specSafety(f.Safety.Words, &f.Safety.Cases[i]))
	}
	// Not vacuous: another word list gives other words.
	c := f.Safety.Cases[0]
	w := slices.Clone(f.Safety.Words)
	w[c.Digest[0]] = "other"
	require.Error(t, specSafety(w, &c))
}

// TestVectorsReproduceEveryFrame rebuilds every frame of each suite-2
// vector from its stated inputs alone — identities, records, each side's
// suites, notice size, epoch, random bytes and HPKE ephemeral key — as a
// second implementation would send them, and compares the bytes (section
// 21). Only the order of the frames is taken from the file.
func TestVectorsReproduceEveryFrame(t *testing.T) {
	b, err := os.ReadFile(vectorsFile)
	require.NoError(t, err)
	var f vecFile
	require.NoError(t, json.Unmarshal(b, &f))
	n := 0
	for _, v := range f.Vectors {
		if v.Result.Suite != 2 {
			continue
		}
		n++
		t.Run(v.Name, func(t *testing.T) {
			frames, err := specRebuild(&f, v)
			require.NoError(t, err)
			require.Len(t, frames, len(v.Frames))
			for i, w := range v.Frames {
				require.Equal(t, w.Frame.String(), hexBytes(frames[i]).String(), "frame %d (%s from the %s)", i, w.Type, w.From)
			}
		})
	}
	require.Equal(t, 10, n, "suite-2 vectors")
}

func (h hexBytes) String() string { return hex.EncodeToString(h) }

// specRebuild builds the frames of v, in the order of v.Frames, from the
// inputs.
func specRebuild(f *vecFile, v *vector) ([][]byte, error) {
	sides := [2]*vecSide{&v.Initiator, &v.Responder}
	var recs [2]*vecRecord
	var seeds [2][]byte
	var peerIDs [2][]byte
	for i, s := range sides {
		id := f.identity(s.Identity)
		recs[i] = f.recordOf(s.Record)
		if id == nil || recs[i] == nil {
			return nil, fmt.Errorf("%s: identity or record", specRoles[i])
		}
		seeds[i], peerIDs[i] = id.Seed, id.PeerID
	}
	ini, res := sides[0], sides[1]
	var suite uint32
	for _, s := range ini.Suites {
		if slices.Contains(res.Suites, s) {
			suite = s
			break
		}
	}
	size := min(ini.NoticeSize, res.NoticeSize)
	marshal := func(n *pb.Notice) []byte {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(n)
		return b
	}
	chunk := func(typ pb.Notice_Type, item []byte, k int) []byte {
		per := size - specChunkOverhead
		count := (len(item) + per - 1) / per
		if k >= count {
			return nil
		}
		return marshal(&pb.Notice{Type: typ, Chunk: &pb.Chunk{Index: uint32(k), Count: uint32(count),
			Data: item[k*per : min((k+1)*per, len(item))]}})
	}
	keyOf := func(r *vecRecord) []byte {
		for _, k := range r.Keys {
			if k.Suite == suite {
				return k.PublicKey
			}
		}
		return nil
	}
	// The transcript over the notices rebuilt so far.
	var built [][]byte
	var from []int
	t0 := specSHA256(specLP([]byte(specLabelTranscript)), specLP([]byte(specProtocolID)), specLP(peerIDs[0]), specLP(peerIDs[1]))
	checkpoint := func(upto int) []byte {
		prev := t0
		for si, name := range []string{"phase 1", "phase 2", "phase 3"}[:upto] {
			var dir [2][]byte
			for j, raw := range built {
				var n pb.Notice
				_ = proto.Unmarshal(raw, &n)
				if vecStage(n.Type) == si+1 {
					dir[from[j]] = append(dir[from[j]], specLP(raw)...)
				}
			}
			prev = specSHA256(specLP([]byte(specLabelTranscript)), specLP([]byte(name)), prev, specSHA256(dir[0]), specSHA256(dir[1]))
		}
		return prev
	}
	sealed := [2][]byte{}
	sealedPart := func(i int) ([]byte, error) {
		if sealed[i] != nil {
			return sealed[i], nil
		}
		role := []byte(specRoles[i])
		t2 := checkpoint(2)
		info := specCat(specLP([]byte(specLabelPart)), specLP(role), t2)
		enc, ct, err := specSealX25519(v.Parts.of(i).EphemeralPrivateKey, keyOf(recs[1-i]), info, sides[i].Part)
		if err != nil {
			return nil, err
		}
		c := specCat(enc, ct)
		sig := ed25519.Sign(ed25519.NewKeyFromSeed(seeds[i]), specCat(specLP([]byte(specLabelPartSig)), specLP(role), t2, specLP(c)))
		sealed[i], err = proto.Marshal(&pb.SealedPart{Ciphertext: c, Signature: sig})
		return sealed[i], err
	}
	counts := map[[2]int]int{}
	var out [][]byte
	for _, w := range v.Frames {
		i := slices.Index(specRoles[:], w.From)
		typ := pb.Notice_Type(pb.Notice_Type_value[w.Type])
		k := counts[[2]int{i, int(typ)}]
		counts[[2]int{i, int(typ)}]++
		var notice []byte
		switch typ {
		case pb.Notice_START:
			notice = marshal(&pb.Notice{Type: typ, Start: &pb.Start{Version: 1, Suites: ini.Suites, Nonce: ini.Nonce,
				KeyFingerprint: ini.KnownFingerprint, Commitment: specCommitment(specRoles[0], ini.Part),
				NoticeSize: uint32(ini.NoticeSize), Epoch: ini.Epoch}})
		case pb.Notice_CONTINUE:
			notice = marshal(&pb.Notice{Type: typ, Continue: &pb.Continue{Nonce: res.Nonce, Suite: suite,
				KeyMatched: bytes.Equal(ini.KnownFingerprint, recs[1].Fingerprint), KeyFingerprint: res.KnownFingerprint,
				Commitment: specCommitment(specRoles[1], res.Part), NoticeSize: uint32(size), Epoch: res.Epoch}})
		case pb.Notice_NEXT:
			notice = marshal(&pb.Notice{Type: typ, Next: &pb.Next{KeyMatched: bytes.Equal(res.KnownFingerprint, recs[0].Fingerprint)}})
		case pb.Notice_KEY:
			notice = chunk(typ, recs[i].Envelope, k)
		case pb.Notice_KEY_RECEIVED:
			notice = marshal(&pb.Notice{Type: typ, KeyReceived: &pb.KeyReceived{Fingerprint: recs[1-i].Fingerprint}})
		case pb.Notice_PART:
			item, err := sealedPart(i)
			if err != nil {
				return nil, err
			}
			notice = chunk(typ, item, k)
		case pb.Notice_PART_RECEIVED:
			ikm := make([]byte, 32)
			for j := range ikm {
				ikm[j] = ini.Part[j] ^ res.Part[j]
			}
			prk, err := hkdf.Extract(sha256.New, ikm, checkpoint(3))
			if err != nil {
				return nil, err
			}
			confirm, err := hkdf.Expand(sha256.New, prk, specLabelConfirm+specRoles[i], 32)
			if err != nil {
				return nil, err
			}
			h := hmac.New(sha256.New, confirm)
			h.Write(checkpoint(3))
			notice = marshal(&pb.Notice{Type: typ, PartReceived: &pb.PartReceived{Mac: h.Sum(nil)}})
		default:
			return nil, fmt.Errorf("unexpected %s", w.Type)
		}
		if notice == nil {
			return nil, fmt.Errorf("%s %s %d: no such notice", w.From, w.Type, k)
		}
		built, from = append(built, notice), append(from, i)
		out = append(out, AppendFrame(nil, notice))
	}
	return out, nil
}
