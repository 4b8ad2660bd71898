package wiretest

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

func notice(t *testing.T, n *pb.Notice) protocol.Frame {
	t.Helper()
	f, err := Marshal(n)
	require.NoError(t, err)
	return f
}

func types(batch []protocol.Frame) []pb.Notice_Type {
	var out []pb.Notice_Type
	for _, f := range batch {
		out = append(out, f.Type)
	}
	return out
}

func TestBatchHelpers(t *testing.T) {
	kr := notice(t, &pb.Notice{Type: pb.Notice_KEY_RECEIVED, KeyReceived: &pb.KeyReceived{Fingerprint: []byte{1}}})
	p0 := notice(t, &pb.Notice{Type: pb.Notice_PART, Chunk: &pb.Chunk{Index: 0, Count: 2, Data: []byte{1, 2}}})
	p1 := notice(t, &pb.Notice{Type: pb.Notice_PART, Chunk: &pb.Chunk{Index: 1, Count: 2, Data: []byte{3}}})
	pr := notice(t, &pb.Notice{Type: pb.Notice_PART_RECEIVED, PartReceived: &pb.PartReceived{Mac: []byte{9}}})
	batch := []protocol.Frame{kr, p0, p1, pr}

	require.True(t, Has(batch, pb.Notice_START, pb.Notice_PART))
	require.False(t, Has(batch, pb.Notice_START, pb.Notice_NEXT))
	require.Equal(t, []pb.Notice_Type{pb.Notice_KEY_RECEIVED}, types(Before(batch, pb.Notice_PART)))
	require.Len(t, Before(batch, pb.Notice_ABORT), 4)
	// Replace puts the replacement where the first PART stood, once.
	require.Equal(t, []pb.Notice_Type{pb.Notice_KEY_RECEIVED, pb.Notice_ABORT, pb.Notice_PART_RECEIVED},
		types(Replace(batch, pb.Notice_PART, []protocol.Frame{{Type: pb.Notice_ABORT}})))
	require.Equal(t, []pb.Notice_Type{pb.Notice_KEY_RECEIVED, pb.Notice_PART_RECEIVED}, types(Replace(batch, pb.Notice_PART, nil)))

	// Edit changes a copy.
	out, err := Edit(batch, pb.Notice_PART_RECEIVED, func(n *pb.Notice) { n.PartReceived.Mac = []byte{7} })
	require.NoError(t, err)
	n, err := Decode(out[3].Bytes)
	require.NoError(t, err)
	require.Equal(t, []byte{7}, n.PartReceived.Mac)
	n, err = Decode(batch[3].Bytes)
	require.NoError(t, err)
	require.Equal(t, []byte{9}, n.PartReceived.Mac, "the batch itself is unchanged")
	_, err = Edit([]protocol.Frame{{Type: pb.Notice_PART, Bytes: []byte{0xff}}}, pb.Notice_PART, func(*pb.Notice) {})
	require.Error(t, err)

	// OnBatch: fn for the batch with the type, send for the others.
	var got []string
	tactic := OnBatch(func(who string, fs ...protocol.Frame) { got = append(got, who+" sent") },
		func(who string, _ []protocol.Frame) { got = append(got, who+" changed") }, pb.Notice_PART)
	tactic("a", batch)
	tactic("b", []protocol.Frame{kr})
	require.Equal(t, []string{"a changed", "b sent"}, got)
}

func TestSealedPart(t *testing.T) {
	want := &pb.SealedPart{Ciphertext: []byte("ct"), Signature: []byte("sig")}
	item, err := proto.Marshal(want)
	require.NoError(t, err)
	fs, err := ChunkNotices(pb.Notice_PART, []*pb.Chunk{{Index: 0, Count: 2, Data: item[:3]}, {Index: 1, Count: 2, Data: item[3:]}})
	require.NoError(t, err)
	sp, err := SealedPart(append([]protocol.Frame{{Type: pb.Notice_PART_RECEIVED}}, fs...))
	require.NoError(t, err)
	require.True(t, proto.Equal(want, sp))

	_, err = SealedPart(nil)
	require.Error(t, err, "no PART")
	_, err = SealedPart([]protocol.Frame{notice(t, &pb.Notice{Type: pb.Notice_PART})})
	require.Error(t, err, "a PART without a chunk")
	_, err = SealedPart([]protocol.Frame{{Type: pb.Notice_PART, Bytes: []byte{0xff}}})
	require.Error(t, err, "a PART that does not decode")
}

func TestAppendFramesAndOther(t *testing.T) {
	b := AppendFrames(nil, protocol.Frame{Bytes: []byte{1, 2}}, protocol.Frame{Bytes: []byte{3}})
	require.Equal(t, protocol.AppendFrame(protocol.AppendFrame(nil, []byte{1, 2}), []byte{3}), b)
	require.Equal(t, protocol.Responder, Other(protocol.Initiator))
	require.Equal(t, protocol.Initiator, Other(protocol.Responder))
}
