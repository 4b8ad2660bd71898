package node

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-varint"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// Admission of message streams (issue 12): what a message stream may cost
// before the receiver knows it could be a message at all.
//
//  1. A peer the node shares no session with, and runs no exchange with,
//     cannot have sealed a message the node could open: its stream is reset
//     at once (with the status ErrUnknownEpoch in the reset code, which
//     makes an honest sender that lost track run an exchange), before the
//     stream joins the message service or anything is read.
//  2. Otherwise the stream joins MessageServiceName, whose resource-manager
//     limits are its own (SetMessageServiceLimits), and the receiver reads
//     the frame's length and the 41-byte header, and checks the length
//     against the limit, the version, the epoch (that the node accepts it,
//     or an exchange in flight may install it) and the key ID. A header
//     that fails is answered with a reset carrying its status.
//  3. Only then is memory for the frame reserved (its announced size, not
//     the largest message) and the body allocated and read.

// msgReserveSlack is reserved beyond a frame for its length prefix.
const msgReserveSlack = 16

// MessageResetCodeBase is the base of the stream reset error codes of
// messaging: a receiver that refuses a message from its header resets the
// stream with MessageResetCodeBase + status (msgStatus), without reading the
// body; the sender reads the status from the code. It lies above the
// exchange's codes (protocol.AbortCodeBase + 0..0xff).
const MessageResetCodeBase network.StreamErrorCode = protocol.AbortCodeBase + 0x100

// testHookMsgBody, if set, is called by the message handler just before it
// reserves memory for a message's body and allocates it (tests count it).
var testHookMsgBody atomic.Pointer[func(p peer.ID, size int)]

// mayMessage reports whether p could send a message the node can open: it
// holds a session with p, or runs an exchange with it that has reached
// phase 3 and may install one (an honest initiator sends its first message
// once it installed, which can be before the responder here has read its
// last notice; messageKey then waits for the exchange). An exchange in an
// earlier phase does not count: a fresh identity holding a half-open
// exchange must not make its message streams wait, and hold service
// streams, for as long as that exchange lasts. The active session it read,
// if any, goes on to checkMessageHeader, which reads the store again only
// if the header names a later epoch; the caller clears it.
func (n *Node) mayMessage(p peer.ID) (*peerstore.SessionKey, bool) {
	n.mu.Lock()
	sl := n.slots[p]
	late := sl != nil && sl.phase >= protocol.Phase3
	n.mu.Unlock()
	act, err := n.store.ActiveSession(p)
	if err != nil {
		if !errors.Is(err, peerstore.ErrNotFound) {
			log.Warnw("messages: read session", "peer", p, "err", err)
		}
		return nil, late
	}
	return act, true
}

// readMsgHeader reads a message frame's length and header from r, checking
// the length against maxFrame before anything is allocated. The errors
// wrap ErrMessageTooLarge or ErrMessageMalformed, or are the stream's.
func readMsgHeader(r io.Reader, maxFrame int) (*msgHeader, *[MessageHeaderSize]byte, int, error) {
	size, err := varint.ReadUvarint(protocol.NewFrameReader(r))
	switch {
	case errors.Is(err, varint.ErrOverflow), errors.Is(err, varint.ErrNotMinimal):
		return nil, nil, 0, fmt.Errorf("%w: frame length: %v", ErrMessageMalformed, err)
	case err != nil:
		return nil, nil, 0, err
	case size > uint64(maxFrame):
		return nil, nil, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, size, maxFrame)
	case size < MessageHeaderSize+msgTagSize:
		return nil, nil, 0, fmt.Errorf("%w: %d bytes", ErrMessageMalformed, size)
	}
	var raw [MessageHeaderSize]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, 0, err
	}
	h, err := decodeMsgHeader(&raw)
	if err != nil {
		return nil, nil, 0, err
	}
	return h, &raw, int(size), nil
}

// decodeMsgHeader decodes the 41-byte header of a message.
func decodeMsgHeader(b *[MessageHeaderSize]byte) (*msgHeader, error) {
	if b[0] != msgVersion {
		return nil, fmt.Errorf("%w: version %d", ErrMessageMalformed, b[0])
	}
	h := &msgHeader{epoch: binary.BigEndian.Uint64(b[1:9])}
	copy(h.keyID[:], b[9:17])
	copy(h.salt[:], b[17:33])
	h.counter = binary.BigEndian.Uint64(b[33:41])
	return h, nil
}

// checkMessageHeader checks, before the body is read, that the node
// accepts messages from p under the header's epoch and that its key ID is
// that epoch's. act is the active session mayMessage read, or nil. It
// returns the epoch's session key and the lowest epoch whose windows are
// kept (messageKey) for openMessage, so that the key is read from the
// store (and decrypted there) once per message; the caller clears the key.
func (n *Node) checkMessageHeader(ctx context.Context, p peer.ID, h *msgHeader, act *peerstore.SessionKey) (*peerstore.SessionKey, uint64, error) {
	sess, minEpoch, err := n.messageKey(ctx, p, h.epoch, act)
	if err != nil {
		return nil, 0, err
	}
	if subtle.ConstantTimeCompare(sess.ID[:], h.keyID[:]) != 1 {
		clear(sess.Key[:])
		return nil, 0, fmt.Errorf("%w: got %s, epoch %d has %s", ErrKeyMismatch, h.keyID, h.epoch, sess.ID)
	}
	return sess, minEpoch, nil
}

// refuseHeader refuses a message from its header: it reports the refusal
// and resets the stream with the status in the code, leaving the body
// unread.
func (n *Node) refuseHeader(s network.Stream, p peer.ID, epoch uint64, err error) {
	log.Debugw("message refused from its header", "peer", p, "epoch", epoch, "err", err)
	n.events.publish(Event{Time: time.Now(), Peer: p, Kind: EventMessageRefused,
		Err: fmt.Errorf("message from %s under epoch %d: %w", p, epoch, err)})
	resetMessage(s, statusOf(err))
}

// resetMessage resets a message stream with st in the reset code.
func resetMessage(s network.Stream, st msgStatus) {
	_ = s.ResetWithError(MessageResetCodeBase + network.StreamErrorCode(st))
}

// statusFromReset returns the status a receiver's reset carries, if err is
// such a reset.
func statusFromReset(err error) (msgStatus, bool) {
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode >= MessageResetCodeBase && se.ErrorCode <= MessageResetCodeBase+0xff {
		return msgStatus(se.ErrorCode - MessageResetCodeBase), true
	}
	return 0, false
}
