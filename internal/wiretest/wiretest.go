// Package wiretest holds the frame helpers of the peers that break the
// protocol on purpose: the conformance suite's scripted peer
// (conformance/peer.go) and the villain of protocol's misbehaving-peer table
// (protocol/hostile_test.go). Both run an honest protocol.Machine and change,
// drop or replace the batch of notices it produced before it is written.
//
// It imports protocol, so in package protocol only external tests
// (package protocol_test) can use it. It does not import testing: the
// conformance suite ships in the p2pkex command.
package wiretest

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Marshal encodes n deterministically, so that a notice a peer rebuilds is
// byte for byte the one it means.
func Marshal(n *pb.Notice) (protocol.Frame, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(n)
	if err != nil {
		return protocol.Frame{}, err
	}
	return protocol.Frame{Type: n.Type, Bytes: b}, nil
}

// Decode decodes one notice.
func Decode(b []byte) (*pb.Notice, error) {
	var n pb.Notice
	if err := proto.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// Has reports whether batch holds a notice of one of types.
func Has(batch []protocol.Frame, types ...pb.Notice_Type) bool {
	for _, f := range batch {
		for _, t := range types {
			if f.Type == t {
				return true
			}
		}
	}
	return false
}

// Replace returns batch with its notices of type typ replaced by with, at
// the place of the first of them.
func Replace(batch []protocol.Frame, typ pb.Notice_Type, with []protocol.Frame) []protocol.Frame {
	var out []protocol.Frame
	done := false
	for _, f := range batch {
		if f.Type != typ {
			out = append(out, f)
			continue
		}
		if !done {
			out = append(out, with...)
			done = true
		}
	}
	return out
}

// Before returns the frames of batch before the first of type typ (all of
// them when there is none).
func Before(batch []protocol.Frame, typ pb.Notice_Type) []protocol.Frame {
	for i, f := range batch {
		if f.Type == typ {
			return batch[:i]
		}
	}
	return batch
}

// OnBatch returns a tactic for the batches a peer of session type S
// produces: fn gets the batch that holds a notice of one of types (each
// type travels in one batch only); every other batch goes out unchanged
// through send.
func OnBatch[S any](send func(S, ...protocol.Frame), fn func(S, []protocol.Frame), types ...pb.Notice_Type) func(S, []protocol.Frame) {
	return func(s S, batch []protocol.Frame) {
		if Has(batch, types...) {
			fn(s, batch)
			return
		}
		send(s, batch...)
	}
}

// Edit returns a copy of batch in which each notice of type typ is changed
// by fn; batch itself is left as it was.
func Edit(batch []protocol.Frame, typ pb.Notice_Type, fn func(n *pb.Notice)) ([]protocol.Frame, error) {
	out := make([]protocol.Frame, len(batch))
	copy(out, batch)
	for i, f := range out {
		if f.Type != typ {
			continue
		}
		n, err := Decode(f.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", typ, err)
		}
		fn(n)
		if out[i], err = Marshal(n); err != nil {
			return nil, fmt.Errorf("%v: %w", typ, err)
		}
	}
	return out, nil
}

// ChunkNotices wraps each of cs in a notice of type typ (KEY or PART).
func ChunkNotices(typ pb.Notice_Type, cs []*pb.Chunk) ([]protocol.Frame, error) {
	var out []protocol.Frame
	for _, c := range cs {
		f, err := Marshal(&pb.Notice{Type: typ, Chunk: c})
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// SealedPart reassembles the sealed part that the PART notices of batch
// carry.
func SealedPart(batch []protocol.Frame) (*pb.SealedPart, error) {
	var item []byte
	for _, f := range batch {
		if f.Type != pb.Notice_PART {
			continue
		}
		n, err := Decode(f.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PART: %w", err)
		}
		if n.Chunk == nil {
			return nil, errors.New("PART without a chunk")
		}
		item = append(item, n.Chunk.Data...)
	}
	if len(item) == 0 {
		return nil, errors.New("no sealed part in the batch")
	}
	var sp pb.SealedPart
	if err := proto.Unmarshal(item, &sp); err != nil {
		return nil, fmt.Errorf("sealed part: %w", err)
	}
	return &sp, nil
}

// AppendFrames appends frames to dst as they travel: each with its length
// prefix.
func AppendFrames(dst []byte, frames ...protocol.Frame) []byte {
	for _, f := range frames {
		dst = protocol.AppendFrame(dst, f.Bytes)
	}
	return dst
}

// Write writes b to s in one write bounded by wait; nothing when b is
// empty. A peer that misbehaves expects the other side to reset the stream
// at any time: whether a write error matters is the caller's to say.
func Write(s network.Stream, wait time.Duration, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_ = s.SetWriteDeadline(time.Now().Add(wait))
	_, err := s.Write(b)
	return err
}

// ReadFrame reads the next frame of the peer on s within wait, of at most
// the largest notice size, and the ABORT status it carries, if it is an
// ABORT.
func ReadFrame(s network.Stream, fr *protocol.FrameReader, wait time.Duration) (frame []byte, abort *pb.Status, err error) {
	_ = s.SetReadDeadline(time.Now().Add(wait))
	if frame, err = fr.ReadFrame(protocol.MaxNoticeSize); err != nil {
		return nil, nil, err
	}
	if n, err := Decode(frame); err == nil && n.Type == pb.Notice_ABORT && n.Abort != nil {
		st := n.Abort.Status
		abort = &st
	}
	return frame, abort, nil
}

// Other is the role of the peer of a side in role r.
func Other(r protocol.Role) protocol.Role {
	if r == protocol.Initiator {
		return protocol.Responder
	}
	return protocol.Initiator
}
