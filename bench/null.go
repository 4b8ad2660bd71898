package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/p2pkex/p2pkex/internal/procstat"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// The null exchange is an exchange as the stream sees it, without the
// exchange: the writes and reads of a real exchange of the run, replayed
// with frames of the same sizes, the same resource-manager calls and a
// deadline wherever the exchange's phase changed, on a kept stream or a
// new one as the load's exchanges use, and no cryptography, no state
// machine, no store. Its CPU time under the same load is what the stream
// machinery costs an exchange: libp2p (multistream, yamux, TLS, the
// resource manager, the stream's opening when it is new), the system
// calls, and the Go runtime under them. The floor plus the null exchange
// is the least an exchange making these writes can cost over libp2p on
// the machine, however the rest of it is written.

// benchNullMax bounds the null exchanges of a run.
const benchNullMax = 5000

// nullProtocol is the protocol of the null exchanges, served by the
// responder's host.
const nullProtocol = libp2pprotocol.ID("/p2pkex-bench/null/1.0.0")

// nullStep is one step of one side of a null exchange: the frames of one
// write, or a number of frames to read. deadline sets the phase deadline
// first, as protocol.Run does when the machine's phase changes.
type nullStep struct {
	write    [][]byte
	read     int
	deadline bool
}

// nullExchange is the script of both sides of one exchange.
type nullExchange struct {
	ini, res   []nullStep
	noticeSize int
	// kept: every initiator runs its null exchanges on one stream, as the
	// node keeps its stream to a peer between exchanges; otherwise each
	// opens a new stream (--new-streams, first contacts).
	kept bool
	// streams counts the streams the responder served.
	streams atomic.Int64
}

// recordSteps subscribes to the steps of the exchanges between initiator
// and responder until the returned function is called, which returns each
// side's in the order that side took them. Call it only after both sides
// are done (the responder has installed the key).
func recordSteps(initiator, responder *node.Node) func() (ini, res []protocol.Event) {
	var wg sync.WaitGroup
	var stops []func()
	got := make([][]protocol.Event, 2)
	for i, pair := range [][2]*node.Node{{initiator, responder}, {responder, initiator}} {
		ch, stop := pair[0].Subscribe(0)
		stops = append(stops, stop)
		other := pair[1].ID()
		wg.Go(func() {
			for e := range ch {
				if e.Kind == node.EventStep && e.Peer == other {
					got[i] = append(got[i], e.Step)
				}
			}
		})
	}
	return func() ([]protocol.Event, []protocol.Event) {
		for _, stop := range stops {
			stop()
		}
		wg.Wait()
		return got[0], got[1]
	}
}

// nullScript turns one side's steps into the writes and reads protocol.Run
// makes of them: the notices sent after one received notice go out in one
// write, and every received notice is a frame read.
func nullScript(events []protocol.Event) []nullStep {
	var steps []nullStep
	deadline := false
	for _, e := range events {
		last := len(steps) - 1
		switch e.Kind {
		case protocol.EventPhaseEntered:
			deadline = deadline || e.Phase != protocol.PhaseDone
		case protocol.EventNoticeSent:
			body := make([]byte, e.Size)
			if last >= 0 && steps[last].write != nil {
				// Run sets the deadline before it writes what one
				// Consume returned, whichever notice entered the phase.
				steps[last].write = append(steps[last].write, body)
				steps[last].deadline = steps[last].deadline || deadline
			} else {
				steps = append(steps, nullStep{write: [][]byte{body}, deadline: deadline})
			}
			deadline = false
		case protocol.EventNoticeReceived:
			if last >= 0 && steps[last].write == nil && !deadline {
				steps[last].read++
			} else {
				steps = append(steps, nullStep{read: 1, deadline: deadline})
			}
			deadline = false
		}
	}
	return steps
}

// newNullExchange builds the null exchange of the steps recordSteps
// returned for one exchange. It checks that the script is one exchange as
// Run makes it: the initiator writes first, the responder reads first, and
// each side reads every frame the other writes.
func newNullExchange(ini, res []protocol.Event, noticeSize int, kept bool) (*nullExchange, error) {
	x := &nullExchange{ini: nullScript(ini), res: nullScript(res), noticeSize: noticeSize, kept: kept}
	frames := func(steps []nullStep) (written, read int) {
		for _, s := range steps {
			written += len(s.write)
			read += s.read
		}
		return written, read
	}
	iw, ir := frames(x.ini)
	rw, rr := frames(x.res)
	switch {
	case len(x.ini) == 0 || x.ini[0].write == nil:
		return nil, errors.New("null exchange: the recorded initiator does not write first")
	case len(x.res) == 0 || x.res[0].write != nil:
		return nil, errors.New("null exchange: the recorded responder does not read first")
	case iw != rr || rw != ir:
		return nil, fmt.Errorf("null exchange: the initiator wrote %d frames and the responder read %d; the responder wrote %d and the initiator read %d", iw, rr, rw, ir)
	}
	return x, nil
}

// writes returns how many writes each side's script makes: the stream
// writes of one exchange.
func (x *nullExchange) writes() int {
	n := 0
	for _, side := range [][]nullStep{x.ini, x.res} {
		for _, s := range side {
			if s.write != nil {
				n++
			}
		}
	}
	return n
}

// play runs one side's script on s. It returns io.EOF, unwrapped, only
// if the stream ended before the script's first frame: on a kept stream,
// the initiator's close between exchanges.
func (x *nullExchange) play(s network.Stream, fr *protocol.FrameReader, steps []nullStep) error {
	for i, st := range steps {
		if st.deadline {
			if err := s.SetDeadline(time.Now().Add(protocol.DefaultPhaseTimeout)); err != nil {
				return err
			}
		}
		if st.write != nil {
			if err := protocol.WriteFrames(s, st.write); err != nil {
				return err
			}
			continue
		}
		for j := range st.read {
			if _, err := fr.ReadFrame(protocol.MaxNoticeSize); err != nil {
				if errors.Is(err, io.EOF) && (i > 0 || j > 0) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
	}
	return nil
}

// serve is the responder's side: the responder's script, once on a new
// stream, or for every exchange the initiator starts on a kept one.
func (x *nullExchange) serve(s network.Stream) {
	if err := x.serveErr(s); err != nil {
		s.Reset()
		return
	}
	s.Close()
}

func (x *nullExchange) serveErr(s network.Stream) error {
	x.streams.Add(1)
	if err := protocol.AttachStream(s); err != nil {
		return err
	}
	fr := protocol.NewFrameReader(s)
	for {
		if x.kept {
			// As the node waits for the next START on a kept stream.
			if err := s.SetReadDeadline(time.Now().Add(benchExchangeWait)); err != nil {
				return err
			}
		}
		release, err := protocol.ReserveExchange(s, x.noticeSize)
		if err != nil {
			return err
		}
		err = x.play(s, fr, x.res)
		release()
		switch {
		case x.kept && errors.Is(err, io.EOF):
			return nil // the initiator closed the kept stream
		case err != nil || !x.kept:
			return err
		}
	}
}

// nullStream is an initiator's stream to the responder.
type nullStream struct {
	h  host.Host
	s  network.Stream // nil until the first kept exchange opens it
	fr *protocol.FrameReader
}

// run is the initiator's side of one null exchange.
func (x *nullExchange) run(ctx context.Context, ns *nullStream, p peer.ID) error {
	if ns.s == nil {
		s, err := ns.h.NewStream(ctx, p, nullProtocol)
		if err != nil {
			return err
		}
		if err := protocol.AttachStream(s); err != nil {
			s.Reset()
			return err
		}
		ns.s, ns.fr = s, protocol.NewFrameReader(s)
	}
	s := ns.s
	release, err := protocol.ReserveExchange(s, x.noticeSize)
	if err != nil {
		s.Reset()
		ns.s = nil
		return err
	}
	defer release()
	if err := x.play(s, ns.fr, x.ini); err != nil {
		s.Reset()
		ns.s = nil
		return err
	}
	if x.kept {
		return nil
	}
	ns.s = nil
	return s.Close()
}

// runNull runs count null exchanges from the initiator hosts to the
// responder's host, concurrency at a time, each initiator with one at a
// time, and records their CPU time and rate in sum.
func runNull(ctx context.Context, responder host.Host, initiators []host.Host, x *nullExchange, count, concurrency int, sum *Summary) error {
	responder.SetStreamHandler(nullProtocol, x.serve)
	defer responder.RemoveStreamHandler(nullProtocol)
	free := make(chan *nullStream, len(initiators))
	streams := make([]*nullStream, len(initiators))
	for i, h := range initiators {
		streams[i] = &nullStream{h: h}
		free <- streams[i]
	}
	defer func() {
		for _, ns := range streams {
			if ns.s != nil {
				ns.s.Close()
			}
		}
	}()
	resp := responder.ID()
	var next, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	work := func(n int64) {
		var wg sync.WaitGroup
		next.Store(0)
		for range concurrency {
			wg.Go(func() {
				for next.Add(1) <= n && ctx.Err() == nil {
					ns := <-free
					ctx, cancel := context.WithTimeout(ctx, benchExchangeWait)
					err := x.run(ctx, ns, resp)
					cancel()
					free <- ns
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					}
				}
			})
		}
		wg.Wait()
	}
	// One untimed round negotiates the protocol on every connection (after
	// which identify knows it and new streams open lazily, as the
	// exchange's do) and opens the kept streams, as the load's warm-up
	// does for the exchanges.
	work(int64(len(initiators)))
	time.Sleep(100 * time.Millisecond) // identify pushes the new protocol
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d failed in the warm-up, first: %v", f, *firstErr.Load())
	}
	start, cpu0 := time.Now(), procstat.CPU()
	work(int64(count))
	cpu, wall := procstat.CPU()-cpu0, time.Since(start)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d failed, first: %v", f, *firstErr.Load())
	}
	sum.NullExchanges = count
	sum.NullCPUSPerExch = cpu.Seconds() / float64(count)
	sum.NullPerS = float64(count) / wall.Seconds()
	sum.NullStreams = map[bool]string{false: "new", true: "kept"}[x.kept]
	sum.NullWrites = x.writes()
	return nil
}
