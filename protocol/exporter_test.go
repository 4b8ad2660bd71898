package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// vecExporter are the exporter's known answers (docs/PROTOCOL.md, section
// 11.7), in vectors.json's "exporter".
type vecExporter struct {
	Cases []vecExportCase `json:"cases"`
}

type vecExportCase struct {
	Name string `json:"name"`
	// The session: key, key ID and epoch.
	SessionKey hexBytes `json:"session_key"`
	KeyID      hexBytes `json:"key_id"`
	Epoch      uint64   `json:"epoch"`
	// The request.
	Label   string   `json:"label"`
	Context hexBytes `json:"context"`
	Length  int      `json:"length"`
	// The intermediate values and the result.
	ExporterMasterSecret hexBytes `json:"exporter_master_secret"`
	LabelSecret          hexBytes `json:"label_secret"`
	Output               hexBytes `json:"output"`
}

// vecExporterVectors builds the exporter's cases on the session of the
// first exchange vector, each computed by ExportKey and checked against
// the independent specExport.
func vecExporterVectors(t *testing.T, v *vector) *vecExporter {
	t.Helper()
	long := make([]byte, 300) // longer than the 255 bytes a context field holds: it is hashed
	for i := range long {
		long[i] = byte(i)
	}
	type req struct {
		name, label string
		context     []byte
		length      int
		epochDelta  uint64
	}
	reqs := []req{
		{"empty-context", "p2pkex test", nil, 32, 0},
		{"context", "p2pkex test", []byte("context"), 32, 0},
		{"context-64", "p2pkex test", []byte("context"), 64, 0},
		{"other-label", "p2pkex test 2", []byte("context"), 32, 0},
		{"next-epoch", "p2pkex test", []byte("context"), 32, 1},
		{"long-context-100", "myapp file key v1", long, 100, 0},
		{"longest-label", strings.Repeat("x", MaxExportLabel), nil, 1, 0},
	}
	out := &vecExporter{}
	for _, r := range reqs {
		c := vecExportCase{Name: r.name, SessionKey: v.Session.Key, KeyID: v.Session.KeyID,
			Epoch: v.Result.Epoch + r.epochDelta, Label: r.label, Context: r.context, Length: r.length}
		if c.Context == nil {
			c.Context = hexBytes{}
		}
		var key [KeySize]byte
		var id [KeyIDSize]byte
		copy(key[:], c.SessionKey)
		copy(id[:], c.KeyID)
		got, err := ExportKey(&key, id, c.Epoch, c.Label, c.Context, c.Length)
		require.NoError(t, err, r.name)
		c.ExporterMasterSecret, c.LabelSecret, c.Output = specExport(&c)
		require.Equal(t, []byte(c.Output), got, "%s: ExportKey and the independent computation disagree", r.name)
		out.Cases = append(out.Cases, c)
	}
	return out
}

// specHKDFExtract and specHKDFExpand are RFC 5869 written out with HMAC,
// independently of crypto/hkdf.
func specHKDFExtract(salt, ikm []byte) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write(ikm)
	return m.Sum(nil)
}

func specHKDFExpand(prk, info []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(sha256.New, prk)
		m.Write(t)
		m.Write(info)
		m.Write([]byte{i})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

// specExpandLabel is HKDF-Expand-Label of section 11.7.
func specExpandLabel(secret []byte, label string, context []byte, n int) []byte {
	full := "p2pkex exporter " + label
	info := []byte{byte(n >> 8), byte(n)}
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	return specHKDFExpand(secret, info, n)
}

// specExport computes a case from its session and request alone, as
// section 11.7 writes it.
func specExport(c *vecExportCase) (ems, secret, out []byte) {
	salt := specCat(specLP([]byte("p2pkex/1.0.0 exporter")), c.KeyID, binary.BigEndian.AppendUint64(nil, c.Epoch))
	ems = specHKDFExtract(salt, c.SessionKey)
	empty := sha256.Sum256(nil)
	secret = specExpandLabel(ems, c.Label, empty[:], 32)
	ch := sha256.Sum256(c.Context)
	return ems, secret, specExpandLabel(secret, "exporter", ch[:], c.Length)
}

// TestExporterVectors recomputes the committed exporter cases from their
// inputs alone, and with ExportKey.
func TestExporterVectors(t *testing.T) {
	b, err := os.ReadFile(vectorsFile)
	require.NoError(t, err)
	var f vecFile
	require.NoError(t, json.Unmarshal(b, &f))
	require.NotNil(t, f.Exporter, "vectors.json has no exporter section: regenerate with -update")
	require.GreaterOrEqual(t, len(f.Exporter.Cases), 5)
	seen := map[string]string{}
	for _, c := range f.Exporter.Cases {
		t.Run(c.Name, func(t *testing.T) {
			ems, secret, out := specExport(&c)
			require.Equal(t, []byte(c.ExporterMasterSecret), ems)
			require.Equal(t, []byte(c.LabelSecret), secret)
			require.Equal(t, []byte(c.Output), out)
			var key [KeySize]byte
			var id [KeyIDSize]byte
			copy(key[:], c.SessionKey)
			copy(id[:], c.KeyID)
			got, err := ExportKey(&key, id, c.Epoch, c.Label, c.Context, c.Length)
			require.NoError(t, err)
			require.Equal(t, []byte(c.Output), got)
			require.Len(t, got, c.Length)
			// No two cases share an output, nor a prefix of one: length,
			// label, context and epoch each separate.
			p := fmt.Sprintf("%x", got[:1])
			if len(got) >= 16 {
				p = fmt.Sprintf("%x", got[:16])
			}
			if other, ok := seen[p]; ok && len(got) > 1 {
				t.Fatalf("%s starts like %s", c.Name, other)
			}
			seen[p] = c.Name
		})
	}
	// Not vacuous: a changed key ID changes the output.
	c := f.Exporter.Cases[0]
	c.KeyID = bytes.Clone(c.KeyID)
	c.KeyID[0] ^= 1
	_, _, out := specExport(&c)
	require.NotEqual(t, []byte(f.Exporter.Cases[0].Output), out)
}

// TestExportKeySeparates checks that every input of the exporter changes
// its output, that nil and empty contexts are the same context, and that
// a longer key is not an extension of a shorter one (the length is bound).
func TestExportKeySeparates(t *testing.T) {
	key := [KeySize]byte{1, 2, 3}
	id := [KeyIDSize]byte{9}
	base, err := ExportKey(&key, id, 5, "app", []byte("ctx"), 32)
	require.NoError(t, err)
	key2 := key
	key2[31] = 1
	id2 := id
	id2[7] = 1
	variants := map[string]func() ([]byte, error){
		"key":     func() ([]byte, error) { return ExportKey(&key2, id, 5, "app", []byte("ctx"), 32) },
		"key ID":  func() ([]byte, error) { return ExportKey(&key, id2, 5, "app", []byte("ctx"), 32) },
		"epoch":   func() ([]byte, error) { return ExportKey(&key, id, 6, "app", []byte("ctx"), 32) },
		"label":   func() ([]byte, error) { return ExportKey(&key, id, 5, "app2", []byte("ctx"), 32) },
		"context": func() ([]byte, error) { return ExportKey(&key, id, 5, "app", []byte("ctx2"), 32) },
		"length":  func() ([]byte, error) { return ExportKey(&key, id, 5, "app", []byte("ctx"), 64) },
	}
	for name, f := range variants {
		got, err := f()
		require.NoError(t, err, name)
		require.NotEqual(t, base, got[:32], "changing the %s must change the key", name)
	}
	a, err := ExportKey(&key, id, 5, "app", nil, 32)
	require.NoError(t, err)
	b, err := ExportKey(&key, id, 5, "app", []byte{}, 32)
	require.NoError(t, err)
	require.Equal(t, a, b)
	// The session key is not among the outputs.
	require.NotEqual(t, key[:], a)
}

func TestExportKeyBounds(t *testing.T) {
	var key [KeySize]byte
	var id [KeyIDSize]byte
	for _, tc := range []struct {
		label  string
		length int
		want   string
	}{
		{"", 32, "empty label"},
		{strings.Repeat("x", MaxExportLabel+1), 32, "label of 240 bytes, longer than 239"},
		{"app", 0, "length 0 outside [1, 8160]"},
		{"app", -1, "length -1 outside [1, 8160]"},
		{"app", MaxExportLength + 1, "length 8161 outside [1, 8160]"},
	} {
		_, err := ExportKey(&key, id, 1, tc.label, nil, tc.length)
		require.Error(t, err)
		require.True(t, errors.Is(err, ErrExport), "%v", err)
		require.Equal(t, "invalid exporter request: "+tc.want, err.Error())
	}
	for _, n := range []int{1, MaxExportLength} {
		out, err := ExportKey(&key, id, 1, strings.Repeat("y", MaxExportLabel), nil, n)
		require.NoError(t, err)
		require.Len(t, out, n)
	}
}
