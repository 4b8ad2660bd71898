package bench

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

func phase(p protocol.Phase) protocol.Event {
	return protocol.Event{Kind: protocol.EventPhaseEntered, Phase: p}
}
func sent(t pb.Notice_Type, size int) protocol.Event {
	return protocol.Event{Kind: protocol.EventNoticeSent, Notice: t, Size: size}
}
func got(t pb.Notice_Type, size int) protocol.Event {
	return protocol.Event{Kind: protocol.EventNoticeReceived, Notice: t, Size: size}
}

// keysKnown is what each side of an exchange with both records known
// reports (docs/PROTOCOL.md 7.4), in the order the machine reports it.
func keysKnown() (ini, res []protocol.Event) {
	ini = []protocol.Event{
		phase(protocol.Phase1), sent(pb.Notice_START, 90),
		got(pb.Notice_CONTINUE, 95), sent(pb.Notice_NEXT, 4), phase(protocol.Phase2), phase(protocol.Phase3), sent(pb.Notice_PART, 1300),
		got(pb.Notice_PART, 1300), sent(pb.Notice_PART_RECEIVED, 36),
		got(pb.Notice_PART_RECEIVED, 36), phase(protocol.PhaseDone),
	}
	res = []protocol.Event{
		phase(protocol.Phase1), got(pb.Notice_START, 90), sent(pb.Notice_CONTINUE, 95),
		got(pb.Notice_NEXT, 4), phase(protocol.Phase2), phase(protocol.Phase3), sent(pb.Notice_PART, 1300),
		got(pb.Notice_PART, 1300), sent(pb.Notice_PART_RECEIVED, 36),
		got(pb.Notice_PART_RECEIVED, 36), phase(protocol.PhaseDone),
	}
	return ini, res
}

// TestNullScript checks that the steps of one exchange become the writes
// and reads protocol.Run makes: the answers to one notice in one write,
// a deadline where the phase changed, none for the end.
func TestNullScript(t *testing.T) {
	ini, res := keysKnown()
	x, err := newNullExchange(ini, res, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	show := func(steps []nullStep) string {
		var b strings.Builder
		for _, s := range steps {
			if s.deadline {
				b.WriteString("D")
			}
			if s.write != nil {
				b.WriteString("w")
				for _, f := range s.write {
					b.WriteString(" " + strconv.Itoa(len(f)))
				}
			} else {
				b.WriteString("r" + strconv.Itoa(s.read))
			}
			b.WriteString("; ")
		}
		return b.String()
	}
	if got, want := show(x.ini), "Dw 90; r1; Dw 4 1300; r1; w 36; r1; "; got != want {
		t.Errorf("initiator: %q, want %q", got, want)
	}
	if got, want := show(x.res), "Dr1; w 95; r1; Dw 1300; r1; w 36; r1; "; got != want {
		t.Errorf("responder: %q, want %q", got, want)
	}
	if n := x.writes(); n != 6 {
		t.Errorf("%d writes, want 6", n)
	}
}

// TestNullScriptRefused checks that a recording that is not one exchange
// (a side's step lost, or the sides swapped) is refused rather than
// replayed into a stream that would stall.
func TestNullScriptRefused(t *testing.T) {
	ini, res := keysKnown()
	lost := append(append([]protocol.Event{}, res[:7]...), res[8:]...) // the responder's read of PART
	for name, c := range map[string][2][]protocol.Event{
		"a read lost":   {ini, lost},
		"sides swapped": {res, ini},
		"nothing":       {nil, nil},
	} {
		if _, err := newNullExchange(c[0], c[1], 1024, true); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNullKeptStream runs null exchanges between two hosts on loopback:
// kept, every exchange of an initiator goes on its one stream; otherwise
// each opens one.
func TestNullKeptStream(t *testing.T) {
	newHost := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	resp, a, b := newHost(), newHost(), newHost()
	ctx := context.Background()
	for _, h := range []host.Host{a, b} {
		if err := h.Connect(ctx, resp.Peerstore().PeerInfo(resp.ID())); err != nil {
			t.Fatal(err)
		}
	}
	for _, kept := range []bool{true, false} {
		ini, res := keysKnown()
		x, err := newNullExchange(ini, res, 4096, kept)
		if err != nil {
			t.Fatal(err)
		}
		var sum Summary
		if err := runNull(ctx, resp, []host.Host{a, b}, x, 20, 2, &sum); err != nil {
			t.Fatalf("kept %v: %v", kept, err)
		}
		// The warm-up's one exchange per initiator, then 20.
		want := map[bool]int64{true: 2, false: 22}[kept]
		if got := x.streams.Load(); got != want {
			t.Errorf("kept %v: %d streams served, want %d", kept, got, want)
		}
		if sum.NullExchanges != 20 || sum.NullWrites != 6 || sum.NullStreams != map[bool]string{true: "kept", false: "new"}[kept] {
			t.Errorf("kept %v: summary %d exchanges, %d writes, streams %q", kept, sum.NullExchanges, sum.NullWrites, sum.NullStreams)
		}
	}
}
