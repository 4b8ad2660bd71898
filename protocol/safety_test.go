package protocol

import (
	"encoding/hex"
	"sort"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
)

// The peer IDs of the Ed25519 keys with seeds 32×0x01 and 32×0x02; the
// expected values were computed independently (Python hashlib) from the
// definition in docs/PROTOCOL.md, section 11.6.
const (
	safetyPeerA  = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
	safetyPeerB  = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
	safetyDigest = "ebb395d7a77ae95983e95f7f309473e6d1e5db8971629c5f3d3c1a8327846335" +
		"836949e062a5fb173631d638ad9a5b3b84818645b35ba4cfcf3e7110dee34f5e"
	safetyDigits   = "56295 67913 83283 80169 19613 40708 66921 19191 56781 90785 99972 06160"
	safetyWordsKAT = "velvet potato nickel steam parrot lawn utopia hero lunar utopia house liquid"
)

func TestSafetyNumberKnownAnswer(t *testing.T) {
	a, err := peer.Decode(safetyPeerA)
	require.NoError(t, err)
	b, err := peer.Decode(safetyPeerB)
	require.NoError(t, err)
	s := NewSafetyNumber(a, b)
	require.Equal(t, safetyDigest, hex.EncodeToString(s[:]))
	require.Equal(t, safetyDigits, s.Digits())
	require.Equal(t, safetyDigits, s.String())
	require.Equal(t, safetyWordsKAT, s.Words())
}

func TestSafetyNumberSymmetricAndDistinct(t *testing.T) {
	ids := make([]peer.ID, 4)
	for i := range ids {
		ids[i] = newParty(t, SuiteX25519).id
	}
	seen := map[SafetyNumber]bool{}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			ab, ba := NewSafetyNumber(ids[i], ids[j]), NewSafetyNumber(ids[j], ids[i])
			require.Equal(t, ab, ba, "not symmetric")
			require.False(t, seen[ab], "two pairs share a safety number")
			seen[ab] = true
			require.Len(t, strings.ReplaceAll(ab.Digits(), " ", ""), 60)
			require.Len(t, strings.Fields(ab.Digits()), 12)
			require.Len(t, strings.Fields(ab.Words()), 12)
		}
	}
}

// TestSafetyWordList checks the properties docs/PROTOCOL.md promises.
func TestSafetyWordList(t *testing.T) {
	require.True(t, sort.StringsAreSorted(SafetyWords[:]))
	prefixes := map[string]bool{}
	for _, w := range SafetyWords {
		require.GreaterOrEqual(t, len(w), 4, w)
		require.LessOrEqual(t, len(w), 6, w)
		require.Equal(t, strings.ToLower(w), w)
		require.False(t, prefixes[w[:3]], "prefix of %q repeats", w)
		prefixes[w[:3]] = true
	}
}
