package node

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// ExportedKey is a key exported from a session, with the session it came
// from: an application that keeps data under the key keeps Epoch and KeyID
// with it, to know which exchange it belongs to.
type ExportedKey struct {
	Key   []byte
	Peer  peer.ID
	Epoch uint64
	KeyID peerstore.KeyID
}

// ExportKey derives length bytes for the application from the active
// session key with p, separated by label and context, the way a TLS 1.3
// exporter derives keys from a connection (RFC 8446, section 7.5;
// docs/PROTOCOL.md, section 11.7). Both peers get the same bytes for the
// same label, context and length, until a new exchange installs a new
// epoch; every other label, context, length or epoch gives independent
// bytes.
//
// Applications use ExportKey, not ActiveKey: the session key also keys the
// node's messages (Send), and a key an application derived from it on its
// own could equal a message key or another application's. label names the
// application and the key's purpose ("myapp file key v1"): it must not be
// empty and is at most protocol.MaxExportLabel bytes; context is any data
// the key is bound to, possibly empty; length is 1 to
// protocol.MaxExportLength. Errors: ErrNoKey (wrapped) without a session
// with p, protocol.ErrExport (wrapped) for a request outside those bounds.
func (n *Node) ExportKey(p peer.ID, label string, context []byte, length int) ([]byte, error) {
	k, err := n.Export(p, label, context, length)
	if err != nil {
		return nil, err
	}
	return k.Key, nil
}

// Export is ExportKey that also says which session the key came from.
func (n *Node) Export(p peer.ID, label string, context []byte, length int) (*ExportedKey, error) {
	s, err := n.store.ActiveSession(p)
	if errors.Is(err, peerstore.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, p)
	}
	if err != nil {
		return nil, fmt.Errorf("read session key: %w", err)
	}
	defer clear(s.Key[:])
	out, err := protocol.ExportKey((*[protocol.KeySize]byte)(&s.Key), [protocol.KeyIDSize]byte(s.ID), s.Epoch, label, context, length)
	if err != nil {
		return nil, err
	}
	return &ExportedKey{Key: out, Peer: p, Epoch: s.Epoch, KeyID: s.ID}, nil
}
