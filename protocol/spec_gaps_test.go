package protocol

// Tests of the rules docs/PROTOCOL.md version 1.1 added or made precise
// (section 23, "Change log").

import (
	"bufio"
	"crypto/ecdh"
	"crypto/hpke"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/record"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Section 3: a sender keeps its phase-1 notices within 128 bytes as sent,
// whatever its encoding. The driver refuses a larger one.
func TestPhase1NoticeSizeCheck(t *testing.T) {
	start := &pb.Notice{Type: pb.Notice_START, Start: &pb.Start{Version: 1, Suites: []uint32{1}}}
	at := func(size int) Frame {
		// Pad with the nonce until the notice has exactly size bytes.
		for n := 0; ; n++ {
			start.Start.Nonce = make([]byte, n)
			b, err := proto.Marshal(start)
			require.NoError(t, err)
			if len(b) == size {
				return Frame{Type: pb.Notice_START, Bytes: b}
			}
			require.Less(t, len(b), size)
		}
	}
	require.NoError(t, checkPhase1Sizes([]Frame{at(MinNoticeSize)}))
	require.Error(t, checkPhase1Sizes([]Frame{at(MinNoticeSize + 1)}))
	for _, typ := range []pb.Notice_Type{pb.Notice_CONTINUE, pb.Notice_NEXT} {
		require.Error(t, checkPhase1Sizes([]Frame{{Type: typ, Bytes: make([]byte, MinNoticeSize+1)}}), "%v", typ)
	}
	// Other notices are bounded by the negotiated size only.
	require.NoError(t, checkPhase1Sizes([]Frame{{Type: pb.Notice_KEY, Bytes: make([]byte, DefaultNoticeSize)}}))
}

// Section 8, step 4: a low-order X25519 point is a valid key of suite 2
// (DeserializePublicKey succeeds), so the record is accepted; sealing to it
// fails, and the side that seals aborts with INTERNAL_ERROR, sending no
// KEY_RECEIVED.
func TestLowOrderX25519Key(t *testing.T) {
	a, b := newParty(t, SuiteX25519), newParty(t, SuiteX25519)
	// b's record with the all-zero point, of low order: X25519 of any
	// scalar with it is zero.
	zero := make([]byte, 32)
	pk, err := hpke.DHKEM(ecdh.X25519()).NewPublicKey(zero)
	require.NoError(t, err, "DeserializePublicKey accepts any 32 bytes")
	now := time.Now()
	rec := KeyRecord{Peer: b.id, Seq: 1, Created: now, Expires: now.Add(DefaultRecordLifetime),
		Keys: map[Suite]hpke.PublicKey{SuiteX25519: pk}}
	env, err := record.Seal(&rec, b.sk)
	require.NoError(t, err)
	envBytes, err := env.Marshal()
	require.NoError(t, err)
	_, err = ParsePeerRecord(envBytes, b.id, now)
	require.NoError(t, err, "V35 does not refuse a low-order point")

	ma, mb := pair(t, a, b, nil, nil, nil)
	var keyReceivedSent bool
	_, errA, errB := pump(t, ma, mb, func(_ int, w wire) []byte {
		if w.from == Responder && w.frame.Type == pb.Notice_KEY {
			// b's record replaced by the low-order one: b's KEY chunks.
			c := hostileChunkOf(t, w.frame.Bytes)
			if c.Index == 0 {
				var out []byte
				for _, ch := range split(envBytes, ma.MaxFrame()) {
					b, err := proto.Marshal(&pb.Notice{Type: pb.Notice_KEY, Chunk: ch})
					require.NoError(t, err)
					out = b // only one chunk at the default notice size
				}
				return out
			}
			return nil
		}
		if w.from == Initiator && w.frame.Type == pb.Notice_KEY_RECEIVED {
			keyReceivedSent = true
		}
		return w.frame.Bytes
	})
	require.Error(t, errA)
	require.ErrorContains(t, errA, "seal key part")
	require.Equal(t, pb.Status_INTERNAL_ERROR, StatusOf(errA), "%v", errA)
	require.False(t, keyReceivedSent, "the sealing side sent KEY_RECEIVED")
	require.Nil(t, ma.Result())
	_ = errB
}

func hostileChunkOf(t *testing.T, b []byte) *pb.Chunk {
	t.Helper()
	var n pb.Notice
	require.NoError(t, proto.Unmarshal(b, &n))
	require.NotNil(t, n.Chunk)
	return n.Chunk
}

// Section 11.6 and Appendix A: the spec's word list is SafetyWords.
func TestSafetyWordsMatchSpec(t *testing.T) {
	f, err := os.Open("../docs/PROTOCOL.md")
	require.NoError(t, err)
	defer f.Close()
	var words []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## Appendix A.") {
			in = true
			continue
		}
		if !in || !strings.HasPrefix(line, "| 0x") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		for _, c := range cells[1:] {
			words = append(words, strings.TrimSpace(c))
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, SafetyWords[:], words)
}
