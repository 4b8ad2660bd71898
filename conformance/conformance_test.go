package conformance

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	libp2ppeerstore "github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// testWait is the suite's read bound in tests: the node answers on
// loopback at once, and a broken peer that stays silent costs this much.
const testWait = 2 * time.Second

func testNode(t *testing.T, opts ...node.Option) *node.Node {
	t.Helper()
	opts = append([]node.Option{node.WithListenAddrs("/ip4/127.0.0.1/tcp/0")}, opts...)
	n, err := node.New(context.Background(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}

func requireAllPass(t *testing.T, rep *Report) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, rep.WriteTable(&buf))
	t.Log("\n" + buf.String())
	require.True(t, rep.OK(), "failed cases")
	require.Greater(t, rep.Passed, 20)
	require.Equal(t, 1, rep.Skipped, "only the --slow case is skipped") // TestSlowCases runs it
}

// The suite against the project's node as responder passes in full.
func TestSuiteAgainstNodeResponder(t *testing.T) {
	n := testNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunResponder(ctx, peer.AddrInfo{ID: n.Host().ID(), Addrs: n.Host().Addrs()}, Options{Wait: testWait})
	require.NoError(t, err)
	requireAllPass(t, rep)
}

// The suite against the project's node as initiator passes in full; the
// test plays the operator that makes the node dial the suite again and
// again.
func TestSuiteAgainstNodeInitiator(t *testing.T) {
	n := testNode(t)
	rep, _ := runInitiatorSuite(t, n, Options{Wait: testWait}, 0)
	requireAllPass(t, rep)
}

// runInitiatorSuite runs the initiator-mode suite with n dialling it until
// the suite ends, and returns the report and the errors of n's exchanges.
func runInitiatorSuite(t *testing.T, n *node.Node, opts Options, minExchanges int) (*Report, []error) {
	t.Helper()
	return runInitiatorMode(t, n.Host().Peerstore(), func(ctx context.Context, p peer.ID) error {
		_, err := n.Exchange(ctx, p)
		return err
	}, opts, minExchanges)
}

// runInitiatorMode runs the initiator-mode suite, with exchange (an
// initiator whose peerstore is ps) called again and again until the suite
// ends, each call bounded to 10 s. It returns the report and the errors of
// the calls that returned by then, at least minCalls of them: the
// initiator's side of the last exchange may finish after the suite's.
func runInitiatorMode(t *testing.T, ps libp2ppeerstore.Peerstore, exchange func(ctx context.Context, p peer.ID) error, opts Options, minCalls int) (*Report, []error) {
	t.Helper()
	l, err := Listen()
	require.NoError(t, err)
	defer l.Close()
	ps.AddAddrs(l.h.ID(), l.h.Addrs(), libp2ppeerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
			err := exchange(ectx, l.h.ID())
			ecancel()
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	rep, err := l.Run(ctx, opts, 20*time.Second)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(errs) >= minCalls
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	got := append([]error(nil), errs...)
	mu.Unlock()
	close(done)
	_ = l.Close() // ends the exchange in flight
	wg.Wait()     // no call outlives the test's hosts
	return rep, got
}

// requireFailedCases fails t unless exactly the cases want (sorted) failed
// in rep; it logs the table when they differ and each failure's detail.
func requireFailedCases(t *testing.T, rep *Report, want []string) {
	t.Helper()
	if !slices.Equal(want, failedCases(rep)) {
		var buf bytes.Buffer
		_ = rep.WriteTable(&buf)
		t.Log("\n" + buf.String())
	}
	require.Equal(t, want, failedCases(rep), "failed cases")
	for _, r := range rep.Results {
		if r.Outcome == Fail {
			t.Logf("%s: %s", r.Case, r.Detail)
		}
	}
}

// failedCases lists the names of the failed cases of rep.
func failedCases(rep *Report) []string {
	var out []string
	for _, r := range rep.Results {
		if r.Outcome == Fail {
			out = append(out, r.Case)
		}
	}
	sort.Strings(out)
	return out
}

func TestRunSelectsCases(t *testing.T) {
	re := regexp.MustCompile(`^start/`)
	cs := selected(protocol.Responder, Options{Run: re})
	require.NotEmpty(t, cs)
	for _, c := range cs {
		require.True(t, strings.HasPrefix(c.name, "start/"), c.name)
	}
	require.Empty(t, selected(protocol.Initiator, Options{Run: re}))
	// Every case names a section, and names are unique.
	seen := map[string]bool{}
	for _, c := range cases() {
		require.NotEmpty(t, c.section, c.name)
		require.True(t, strings.HasPrefix(c.section, "§"), c.name)
		require.False(t, seen[c.name], "duplicate case %s", c.name)
		seen[c.name] = true
	}
}

// Section 16, "After completion", on the initiator's side: the suite
// rejects the node's last PART_RECEIVED after the node completed (ABORT
// after its own). The node's next exchange, whose START meets that ABORT
// on the kept stream, runs again on a new stream and succeeds.
func TestAbortAfterCompletionInitiator(t *testing.T) {
	n := testNode(t)
	rep, errs := runInitiatorSuite(t, n, Options{Wait: testWait, Run: regexp.MustCompile(`^abort/after-completion$`)}, 2)
	requireAllPassN(t, rep, 2)
	require.GreaterOrEqual(t, len(errs), 2)
	require.NoError(t, errs[0], "the exchange the suite aborted after completion")
	require.NoError(t, errs[1], "the next exchange")
}

func requireAllPassN(t *testing.T, rep *Report, n int) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, rep.WriteTable(&buf))
	t.Log("\n" + buf.String())
	require.True(t, rep.OK(), "failed cases")
	require.Equal(t, n, rep.Passed)
}

// Section 2, "Ending a stream": a node that ends a stream after the last
// notice half-closes it and waits for the peer's end of stream before it
// closes: Close does not return before the peer ended its side.
func TestHalfCloseAfterLastNotice(t *testing.T) {
	n := testNode(t, node.WithStreamIdleTimeout(0)) // ends the stream at once
	l, err := Listen()
	require.NoError(t, err)
	defer l.Close()
	n.Host().Peerstore().AddAddrs(l.h.ID(), l.h.Addrs(), libp2ppeerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := n.Exchange(ctx, l.h.ID())
		errc <- err
	}()
	var in inbound
	select {
	case in = <-l.inbound:
	case <-ctx.Done():
		t.Fatal("no exchange")
	}
	x, err := newExchange(l.id, in.s, in.fr, protocol.Responder, tactic{}, testWait)
	require.NoError(t, err)
	x.run(ctx, in.first)
	require.True(t, x.m.Done(), "%v %v", x.machineErr, x.endErr)
	require.NoError(t, <-errc)
	// The node half-closed: the suite reads a clean end of stream.
	_, err = x.read()
	require.ErrorIs(t, err, io.EOF)
	closed := make(chan struct{})
	go func() {
		_ = n.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned before the peer ended its side of the stream")
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, in.s.CloseWrite())
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the peer ended its side")
	}
}

// Section 16, "After completion", on the responder's side: an ABORT where
// the node waits for the next START belongs to the exchange it completed;
// it is no failure of a next exchange (the node reports none).
func TestAbortAfterCompletionResponder(t *testing.T) {
	n := testNode(t)
	events, cancelSub := n.Subscribe(256)
	defer cancelSub()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := RunResponder(ctx, peer.AddrInfo{ID: n.Host().ID(), Addrs: n.Host().Addrs()},
		Options{Wait: testWait, Run: regexp.MustCompile(`^abort/after-completion$`)})
	require.NoError(t, err)
	requireAllPassN(t, rep, 1)
	var done, failed int
	for {
		select {
		case e := <-events:
			switch e.Kind {
			case node.EventDone:
				done++
			case node.EventFailed:
				failed++
				t.Errorf("the node reported a failed exchange: %v", e.Err)
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	require.Equal(t, 2, done, "the case's exchange and the next one")
	require.Zero(t, failed)
}

// The phase-timeout cases (--slow), against a node with a short phase
// timeout, in both roles.
func TestSlowCases(t *testing.T) {
	opts := Options{Wait: testWait, Slow: true, Run: regexp.MustCompile(`^time/`)}
	n := testNode(t, node.WithPhaseTimeout(300*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := RunResponder(ctx, peer.AddrInfo{ID: n.Host().ID(), Addrs: n.Host().Addrs()}, opts)
	require.NoError(t, err)
	requireAllPassN(t, rep, 1)
	rep, _ = runInitiatorSuite(t, n, opts, 0)
	requireAllPassN(t, rep, 2)
}
