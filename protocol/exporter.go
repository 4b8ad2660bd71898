package protocol

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// The exporter (docs/PROTOCOL.md, section 11.7) derives application keys
// from a session key, the way TLS 1.3 exporters derive them from a
// connection's exporter master secret (RFC 8446, section 7.5). An
// application never needs the session key itself: the messaging layer keys
// its AEAD from it, and a key an application derives on its own from the
// same bytes could collide with those message keys or with another
// application's. The exporter's labels keep every use apart:
//
//	EMS    = HKDF-Extract(SHA-256, salt = lp("p2pkex/1.0.0 exporter") || key_id || uint64_be(epoch),
//	                      IKM = session key)
//	secret = HKDF-Expand-Label(EMS, label, SHA-256(""), 32)
//	out    = HKDF-Expand-Label(secret, "exporter", SHA-256(context), length)
//
//	HKDF-Expand-Label(S, L, C, n) = HKDF-Expand(S, info = uint16_be(n) ||
//	        u8(len(P || L)) || P || L || u8(len(C)) || C, n), P = "p2pkex exporter "
//
// The key ID and epoch name the session in the salt, so a key exported
// under one epoch never equals one of another, even in the (negligible)
// event of two equal session keys; the two middle lines are TLS 1.3's
// Derive-Secret and its exporter's second step, with "p2pkex exporter " in
// place of "tls13 ". The messaging layer extracts from the session key with
// another salt (lp("p2pkex/1.0.0 msg") || ...), so no exported key equals a
// message key.
const (
	labelExporter = "p2pkex/1.0.0 exporter"
	// exporterLabelPrefix is HKDF-Expand-Label's P, TLS 1.3's "tls13 ".
	exporterLabelPrefix = "p2pkex exporter "
	// exporterFinalLabel is the label of the second expansion, as in
	// TLS 1.3's exporter.
	exporterFinalLabel = "exporter"
)

const (
	// MaxExportLabel is the longest exporter label in bytes: HKDF-Expand-
	// Label's label field holds at most 255 bytes, prefix included.
	MaxExportLabel = 255 - len(exporterLabelPrefix)
	// MaxExportLength is the longest exported key in bytes: HKDF-Expand's
	// bound with SHA-256, 255 blocks of 32 bytes.
	MaxExportLength = 255 * sha256.Size
)

// ErrExport is wrapped by the errors of ExportKey for a request outside
// its bounds: an empty or too long label, a length outside
// [1, MaxExportLength].
var ErrExport = errors.New("invalid exporter request")

// ExportKey derives length bytes for an application from the session key
// key with ID keyID and epoch epoch, separated by label and context
// (docs/PROTOCOL.md, section 11.7). Both peers of the session get the same
// bytes for the same label and context; any other label, context, session
// or epoch gives independent bytes. label must be non-empty and at most
// MaxExportLabel bytes and should name the application and purpose (for
// example "myapp file key v1"); context is any data the application binds
// the key to and may be empty (nil and empty are the same context, as in
// TLS 1.3); length is 1 to MaxExportLength.
func ExportKey(key *[KeySize]byte, keyID [KeyIDSize]byte, epoch uint64, label string, context []byte, length int) ([]byte, error) {
	if label == "" {
		return nil, fmt.Errorf("%w: empty label", ErrExport)
	}
	if len(label) > MaxExportLabel {
		return nil, fmt.Errorf("%w: label of %d bytes, longer than %d", ErrExport, len(label), MaxExportLabel)
	}
	if length < 1 || length > MaxExportLength {
		return nil, fmt.Errorf("%w: length %d outside [1, %d]", ErrExport, length, MaxExportLength)
	}
	salt := lp(nil, []byte(labelExporter))
	salt = append(salt, keyID[:]...)
	salt = binary.BigEndian.AppendUint64(salt, epoch)
	ems, err := hkdf.Extract(sha256.New, key[:], salt)
	if err != nil {
		return nil, err
	}
	defer clear(ems)
	empty := sha256.Sum256(nil)
	secret, err := hkdf.Expand(sha256.New, ems, expandLabel(label, empty[:], sha256.Size), sha256.Size)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	ctxHash := sha256.Sum256(context)
	return hkdf.Expand(sha256.New, secret, expandLabel(exporterFinalLabel, ctxHash[:], length), length)
}

// expandLabel is the info of HKDF-Expand-Label (RFC 8446, section 7.1,
// HkdfLabel) with the prefix "p2pkex exporter ". The callers keep label
// within MaxExportLabel bytes, context within 255 and length within 65535.
func expandLabel(label string, context []byte, length int) string {
	b := binary.BigEndian.AppendUint16(nil, uint16(length))
	b = append(b, byte(len(exporterLabelPrefix)+len(label)))
	b = append(b, exporterLabelPrefix...)
	b = append(b, label...)
	b = append(b, byte(len(context)))
	b = append(b, context...)
	return string(b)
}
