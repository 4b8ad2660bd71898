package protocol

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/p2pkex/p2pkex/protocol/pb"
)

// Run over net.Pipe. Phase timeouts here are short so that the tests are
// quick; no test asserts how long anything took. A watchdog fails a test
// whose Run does not return at all.

const (
	driverShortPhase = 200 * time.Millisecond
	driverLongPhase  = time.Minute // longer than any test may take
	driverWatchdog   = 20 * time.Second
)

// sendBuffered is one end of a net.Pipe with a send buffer: Write queues and
// returns at once, and a goroutine forwards the bytes. This models a libp2p
// stream, whose flow-control window (256 KiB with yamux) lets both sides
// write a burst without the other reading; a bare net.Pipe has no buffer
// at all (see TestRunOverUnbufferedPipe).
type sendBuffered struct {
	net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []byte
	closed bool
	err    error
	done   chan struct{}
}

func newSendBuffered(c net.Conn) *sendBuffered {
	b := &sendBuffered{Conn: c, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.forward()
	return b
}

func (b *sendBuffered) forward() {
	defer close(b.done)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for len(b.queue) == 0 && !b.closed {
			b.cond.Wait()
		}
		if b.closed {
			return
		}
		chunk := b.queue
		b.queue = nil
		b.mu.Unlock()
		_, err := b.Conn.Write(chunk)
		b.mu.Lock()
		if err != nil {
			b.err = err
			return
		}
	}
}

func (b *sendBuffered) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, net.ErrClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	b.queue = append(b.queue, p...)
	b.cond.Signal()
	return len(p), nil
}

// Close closes the pipe (which ends a blocked forward) and waits for the
// forwarding goroutine.
func (b *sendBuffered) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Signal()
	b.mu.Unlock()
	err := b.Conn.Close()
	<-b.done
	return err
}

// bufferedPipe is net.Pipe with a send buffer on both ends.
func bufferedPipe() (*sendBuffered, *sendBuffered) {
	a, b := net.Pipe()
	return newSendBuffered(a), newSendBuffered(b)
}

type runResult struct {
	res *Result
	err error
}

// runAsync runs Run in a goroutine.
func runAsync(ctx context.Context, s Stream, m *Machine, phase time.Duration) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		res, err := Run(ctx, s, m, phase)
		ch <- runResult{res, err}
	}()
	return ch
}

func waitRun(t *testing.T, ch <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(driverWatchdog):
		t.Fatal("Run did not return")
		return runResult{}
	}
}

// driverMachines builds an initiator for a and a responder for b.
func driverMachines(t *testing.T, a, b *party, knownB, knownA *PeerRecord, mod func(*Config)) (*Machine, *Machine) {
	t.Helper()
	return pair(t, a, b, knownB, knownA, mod)
}

// ours returns the machine of role r from an initiator/responder pair.
func pick(r Role, ma, mb *Machine) (ours, theirs *Machine) {
	if r == Initiator {
		return ma, mb
	}
	return mb, ma
}

// drain reads and decodes frames from c until it fails, and returns them.
func drain(c net.Conn) <-chan []*pb.Notice { return drainFrom(NewFrameReader(c), nil) }

// drainFrom reads and decodes frames from fr until it fails, and returns
// them. seen, if not nil, receives each notice type as it arrives.
func drainFrom(fr *FrameReader, seen chan<- pb.Notice_Type) <-chan []*pb.Notice {
	out := make(chan []*pb.Notice, 1)
	go func() {
		var got []*pb.Notice
		for {
			b, err := fr.ReadFrame(MaxNoticeSize)
			if err != nil {
				out <- got
				return
			}
			var n pb.Notice
			if proto.Unmarshal(b, &n) == nil {
				got = append(got, &n)
				if seen != nil {
					seen <- n.Type
				}
			}
		}
	}()
	return out
}

func lastAbort(t *testing.T, got []*pb.Notice) pb.Status {
	t.Helper()
	require.NotEmpty(t, got)
	last := got[len(got)-1]
	require.Equal(t, pb.Notice_ABORT, last.Type, "the last notice written is ABORT")
	return last.Abort.GetStatus()
}

var roles = []Role{Initiator, Responder}

func TestRunSuccess(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			var kb, ka *PeerRecord
			if c.aKnowsB {
				kb = b.record()
			}
			if c.bKnowsA {
				ka = a.record()
			}
			ma, mb := driverMachines(t, a, b, kb, ka, func(cfg *Config) { cfg.NoticeSize = MinNoticeSize })
			ca, cb := bufferedPipe()
			defer ca.Close()
			defer cb.Close()
			chA := runAsync(context.Background(), ca, ma, driverLongPhase)
			chB := runAsync(context.Background(), cb, mb, driverLongPhase)
			ra, rb := waitRun(t, chA), waitRun(t, chB)
			require.NoError(t, ra.err)
			require.NoError(t, rb.err)
			require.Equal(t, Initiator, ra.res.Role)
			require.Equal(t, Responder, rb.res.Role)
			require.Equal(t, ra.res.Key, rb.res.Key)
			require.Equal(t, ra.res.KeyID, rb.res.KeyID)
			require.NotEqual(t, [KeySize]byte{}, ra.res.Key)
			require.Equal(t, c.wantISent, ra.res.InitiatorKeySent)
			require.Equal(t, c.wantRSent, rb.res.ResponderKeySent)
		})
	}
}

// TestRunSilentPeer: a peer that reads but never answers is cut off by the
// phase timeout, and is told so with ABORT(TIMEOUT).
func TestRunSilentPeer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	for _, role := range roles {
		t.Run(role.String(), func(t *testing.T) {
			ma, mb := driverMachines(t, a, b, nil, nil, nil)
			m, _ := pick(role, ma, mb)
			c, peer := net.Pipe()
			got := drain(peer)
			r := waitRun(t, runAsync(context.Background(), c, m, driverShortPhase))
			require.ErrorIs(t, r.err, ErrTimeout)
			require.Nil(t, r.res)
			require.Equal(t, pb.Status_TIMEOUT, StatusOf(r.err))
			require.NoError(t, c.Close())
			notices := <-got
			require.Equal(t, pb.Status_TIMEOUT, lastAbort(t, notices))
			if role == Initiator {
				require.Equal(t, pb.Notice_START, notices[0].Type)
			}
			require.NoError(t, peer.Close())
		})
	}
}

// TestRunDripFeed: a peer that sends one byte at a time, each well within the
// phase timeout but the whole notice far beyond it, is cut off: the timeout
// bounds the phase, not each read.
func TestRunDripFeed(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	const drip = 10 * time.Millisecond
	for _, role := range roles {
		t.Run(role.String(), func(t *testing.T) {
			ma, mb := driverMachines(t, a, b, nil, nil, nil)
			ours, theirs := pick(role, ma, mb)
			c, peer := net.Pipe()
			got := make(chan []*pb.Notice, 1)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The peer's honest first notice (CONTINUE to our START,
				// or START), dripped one byte at a time.
				fr := NewFrameReader(peer)
				var first []Frame
				var err error
				if role == Initiator {
					var start []byte
					if start, err = fr.ReadFrame(MaxNoticeSize); err == nil {
						first, err = theirs.Consume(start)
					}
				} else {
					first, err = theirs.Start()
				}
				rest := drainFrom(fr, nil)
				defer func() { got <- <-rest }()
				if err != nil {
					t.Errorf("peer: %v", err)
					return
				}
				for _, x := range AppendFrame(nil, first[0].Bytes) {
					if _, err := peer.Write([]byte{x}); err != nil {
						return
					}
					time.Sleep(drip)
				}
				t.Errorf("the whole %v was dripped before the phase timeout cut it off", first[0].Type)
			}()
			r := waitRun(t, runAsync(context.Background(), c, ours, driverShortPhase))
			require.ErrorIs(t, r.err, ErrTimeout)
			require.Nil(t, r.res)
			require.NoError(t, c.Close())
			wg.Wait()
			require.Equal(t, pb.Status_TIMEOUT, lastAbort(t, <-got))
			require.NoError(t, peer.Close())
		})
	}
}

// TestRunOverUnbufferedPipe runs two honest drivers over a bare net.Pipe,
// which buffers nothing: a Write returns only once the other side has read
// it all.
//
// Known issue: in phases 2 and 3 both sides send at once (KEY, PART), and
// Run writes a whole burst before it reads again, so over such a transport
// both drivers block in Write until the phase timeout and the exchange fails
// with ErrTimeout. libp2p streams buffer far more than a burst (yamux's
// window is 256 KiB; a burst is at most one record and one sealed part in
// chunks, about 16 KiB), so this only bites transports without a send
// buffer. Set P2PKEX_KNOWN_ISSUES=1 to run it.
func TestRunOverUnbufferedPipe(t *testing.T) {
	if os.Getenv("P2PKEX_KNOWN_ISSUES") == "" {
		t.Skip("known issue: Run needs a transport with a send buffer (see the comment); P2PKEX_KNOWN_ISSUES=1 runs it")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	ma, mb := driverMachines(t, a, b, nil, nil, nil)
	ca, cb := net.Pipe()
	defer ca.Close()
	defer cb.Close()
	chA := runAsync(context.Background(), ca, ma, time.Second)
	chB := runAsync(context.Background(), cb, mb, time.Second)
	ra, rb := waitRun(t, chA), waitRun(t, chB)
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	require.Equal(t, ra.res.Key, rb.res.Key)
}

// TestRunContextCancel: cancelling the context ends Run while it waits for
// the peer, with an error that wraps context.Canceled.
func TestRunContextCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	for _, role := range roles {
		t.Run(role.String(), func(t *testing.T) {
			ma, mb := driverMachines(t, a, b, nil, nil, nil)
			m, _ := pick(role, ma, mb)
			c, peer := net.Pipe()
			reading := &readSignal{Conn: c, first: make(chan struct{})}
			got := drain(peer)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := runAsync(ctx, reading, m, driverLongPhase)
			<-reading.first // Run waits for the peer
			cancel()
			r := waitRun(t, ch)
			require.ErrorIs(t, r.err, context.Canceled)
			require.Nil(t, r.res)
			require.False(t, m.Done())
			require.NoError(t, c.Close())
			<-got
			require.NoError(t, peer.Close())
		})
	}
	t.Run("before-run", func(t *testing.T) {
		ma, _ := driverMachines(t, a, b, nil, nil, nil)
		c, peer := net.Pipe()
		got := drain(peer)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := waitRun(t, runAsync(ctx, c, ma, driverLongPhase))
		require.ErrorIs(t, r.err, context.Canceled)
		require.NoError(t, c.Close())
		require.Empty(t, <-got, "nothing is sent on a cancelled context")
		require.NoError(t, peer.Close())
	})
}

// readSignal closes first when Run first reads, or after START was sent.
type readSignal struct {
	net.Conn
	once  sync.Once
	first chan struct{}
}

func (r *readSignal) Read(p []byte) (int, error) {
	r.once.Do(func() { close(r.first) })
	return r.Conn.Read(p)
}

// deadlineSpy reports when the context's AfterFunc has set its deadline in
// the past.
type deadlineSpy struct {
	Stream
	once      sync.Once
	cancelled chan struct{}
}

func (d *deadlineSpy) SetDeadline(t time.Time) error {
	if t.Before(time.Unix(2, 0)) {
		d.once.Do(func() { close(d.cancelled) })
	}
	return d.Stream.SetDeadline(t)
}

// TestRunCancelWhileConsuming cancels the context while the machine is
// consuming a notice that moves it to the next phase (from the machine's
// own trace, so the timing is deterministic). The deadline that
// cancellation sets must not be overwritten by the next phase's deadline:
// Run must end with context.Canceled instead of carrying on with the
// exchange.
func TestRunCancelWhileConsuming(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	for _, role := range roles {
		t.Run(role.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ca, cb := bufferedPipe()
			t.Cleanup(func() { ca.Close(); cb.Close() })
			ours, theirs := Stream(ca), Stream(cb)
			if role == Responder {
				ours, theirs = cb, ca
			}
			spy := &deadlineSpy{Stream: ours, cancelled: make(chan struct{})}
			// The notice that ends phase 1 for our side.
			trigger := map[Role]pb.Notice_Type{Initiator: pb.Notice_CONTINUE, Responder: pb.Notice_NEXT}[role]
			ma, mb := driverMachines(t, a, b, nil, nil, nil)
			m, other := pick(role, ma, mb)
			m.cfg.Trace = func(e Event) {
				if e.Kind == EventNoticeReceived && e.Notice == trigger {
					cancel()
					select {
					case <-spy.cancelled:
					case <-time.After(driverWatchdog):
						t.Error("cancellation did not set a deadline")
					}
				}
			}
			chOurs := runAsync(ctx, spy, m, driverLongPhase)
			chTheirs := runAsync(context.Background(), theirs, other, driverLongPhase)
			r := waitRun(t, chOurs)
			require.ErrorIs(t, r.err, context.Canceled, "Run carried on after its context was cancelled")
			require.Nil(t, r.res)
			require.False(t, m.Done())
			require.NoError(t, ca.Close())
			require.NoError(t, cb.Close())
			rt := waitRun(t, chTheirs)
			require.Error(t, rt.err)
		})
	}
}

// TestRunPeerClosesStream: a peer that closes the stream between notices or
// inside one ends Run with io.ErrUnexpectedEOF.
func TestRunPeerClosesStream(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	for _, role := range roles {
		for _, inside := range []bool{false, true} {
			name := role.String() + "/between-notices"
			if inside {
				name = role.String() + "/inside-a-notice"
			}
			t.Run(name, func(t *testing.T) {
				ma, mb := driverMachines(t, a, b, nil, nil, nil)
				ours, theirs := pick(role, ma, mb)
				c, peer := net.Pipe()
				done := make(chan error, 1)
				go func() {
					// The peer runs phase 1 honestly up to our next notice,
					// then closes, having sent half of its answer or none.
					fr := NewFrameReader(peer)
					var answer []Frame
					var err error
					if role == Initiator {
						var start []byte
						if start, err = fr.ReadFrame(MaxNoticeSize); err == nil {
							answer, err = theirs.Consume(start) // CONTINUE
						}
					} else {
						var out []Frame
						if out, err = theirs.Start(); err == nil {
							err = WriteFrames(peer, [][]byte{out[0].Bytes})
						}
						var cont []byte
						if err == nil {
							cont, err = fr.ReadFrame(MaxNoticeSize)
						}
						if err == nil {
							answer, err = theirs.Consume(cont) // NEXT, KEY...
						}
					}
					if err == nil && inside {
						f := AppendFrame(nil, answer[0].Bytes)
						_, err = peer.Write(f[:len(f)/2])
					}
					done <- err
					peer.Close()
				}()
				r := waitRun(t, runAsync(context.Background(), c, ours, driverLongPhase))
				require.NoError(t, <-done)
				require.ErrorIs(t, r.err, io.ErrUnexpectedEOF)
				require.Nil(t, r.res)
				require.False(t, ours.Done())
				require.NoError(t, c.Close())
			})
		}
	}
}

// TestRunPeerAborts: an ABORT from the peer ends Run with the peer's status,
// and nothing is written back.
func TestRunPeerAborts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	ma, _ := driverMachines(t, a, b, nil, nil, nil)
	c, peer := net.Pipe()
	go func() {
		fr := NewFrameReader(peer)
		if _, err := fr.ReadFrame(MaxNoticeSize); err != nil {
			return
		}
		abort, _ := proto.Marshal(&pb.Notice{Type: pb.Notice_ABORT, Abort: &pb.Abort{Status: pb.Status_BUSY}})
		_ = WriteFrames(peer, [][]byte{abort})
	}()
	r := waitRun(t, runAsync(context.Background(), c, ma, driverLongPhase))
	require.ErrorIs(t, r.err, ErrBusy)
	var ae *AbortError
	require.ErrorAs(t, r.err, &ae)
	require.NoError(t, c.Close())
	rest, err := io.ReadAll(peer)
	require.NoError(t, err)
	require.Empty(t, rest, "an ABORT is not answered")
	require.NoError(t, peer.Close())
}

// TestRunOversizeFrame: a peer that announces a frame longer than the notice
// size is refused on the length alone and told PROTOCOL_ERROR.
func TestRunOversizeFrame(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newParty(t), newParty(t)
	_, mb := driverMachines(t, a, b, nil, nil, nil)
	c, peer := net.Pipe()
	fr := NewFrameReader(peer)
	got := make(chan []*pb.Notice, 1)
	go func() {
		// A length of 2^40 and no body at all.
		if _, err := peer.Write([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x20}); err != nil {
			got <- nil
			return
		}
		got <- <-drainFrom(fr, nil)
	}()
	r := waitRun(t, runAsync(context.Background(), c, mb, driverLongPhase))
	require.ErrorIs(t, r.err, ErrFrameTooLarge)
	require.NoError(t, c.Close())
	require.Equal(t, pb.Status_PROTOCOL_ERROR, lastAbort(t, <-got))
	require.NoError(t, peer.Close())
}
