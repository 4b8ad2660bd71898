package bench

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/p2pkex/p2pkex/node"
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

// BenchmarkNullWrites measures what fewer writes would save: the stream
// alone (null exchanges on kept streams, 64 in flight, as the load runs
// them) of an exchange with keys known written as protocol.Run writes it
// (6 writes), and as two hypothetical protocols would with the same bytes:
// 4 writes (the responder's CONTINUE with its PART, the initiator's NEXT,
// PART and PART_RECEIVED together) and 3 (a part in START, one flight
// back with everything, one confirmation). It reports the CPU of one null
// exchange, both sides, in microseconds; divided by the crypto floor
// (BenchmarkFloor, or floor_cpu_s_in_load of p2pkex bench) it is the least
// ratio over the floor each could reach here (docs/PERFORMANCE.md, "What
// remains").
func BenchmarkNullWrites(b *testing.B) {
	ho, err := node.HostOptions(node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	resp, err := libp2p.New(ho...)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Close()
	hi, err := node.HostOptions(node.WithLibp2pOptions(libp2p.NoListenAddrs))
	if err != nil {
		b.Fatal(err)
	}
	const inFlight = 64
	hosts := make([]host.Host, inFlight)
	for i := range hosts {
		if hosts[i], err = libp2p.New(hi...); err != nil {
			b.Fatal(err)
		}
		defer hosts[i].Close()
		if err := hosts[i].Connect(context.Background(), resp.Peerstore().PeerInfo(resp.ID())); err != nil {
			b.Fatal(err)
		}
	}
	// The frames of an exchange with keys known (MLKEM768X25519, the
	// default notice size: the part goes in two chunks), as p2pkex bench
	// recorded them.
	start, cont, next, confirm := make([]byte, 118), make([]byte, 117), make([]byte, 6), make([]byte, 38)
	part := [][]byte{make([]byte, 1010), make([]byte, 249)}
	w := func(frames ...[]byte) nullStep { return nullStep{write: frames, deadline: true} }
	r := func(n int) nullStep { return nullStep{read: n} }
	null := func(ini, res []nullStep) *nullExchange {
		return &nullExchange{noticeSize: protocol.DefaultNoticeSize, kept: true, ini: ini, res: res}
	}
	scripts := []struct {
		name string
		x    *nullExchange
	}{
		{"6-writes", null(
			[]nullStep{w(start), r(1), w(next, part[0], part[1]), r(2), w(confirm), r(1)},
			[]nullStep{r(1), w(cont), r(1), w(part...), r(2), w(confirm), r(1)})},
		{"4-writes", null(
			[]nullStep{w(start), r(3), w(next, part[0], part[1], confirm), r(1)},
			[]nullStep{r(1), w(cont, part[0], part[1]), r(4), w(confirm)})},
		{"3-writes", null(
			[]nullStep{w(start, part[0], part[1]), r(4), w(confirm)},
			[]nullStep{r(3), w(cont, part[0], part[1], confirm), r(1)})},
	}
	for _, sc := range scripts {
		b.Run(sc.name, func(b *testing.B) {
			var sum Summary
			if err := runNull(context.Background(), resp, hosts, sc.x, max(b.N, inFlight), inFlight, &sum); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(sum.NullCPUSPerExch*1e6, "cpu-us/exchange")
			b.ReportMetric(float64(sum.NullWrites), "writes/exchange")
		})
	}
}
