package conformance

import (
	"bytes"
	"context"
	"errors"
	"regexp"
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
	rep, errs := runInitiatorSuite(t, n, Options{Wait: testWait})
	requireAllPass(t, rep)
	_ = errs
}

// runInitiatorSuite runs the initiator-mode suite with n dialling it until
// the suite ends, and returns the report and the errors of n's exchanges.
func runInitiatorSuite(t *testing.T, n *node.Node, opts Options) (*Report, []error) {
	t.Helper()
	l, err := Listen()
	require.NoError(t, err)
	defer l.Close()
	n.Host().Peerstore().AddAddrs(l.h.ID(), l.h.Addrs(), libp2ppeerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var errs []error
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := n.Exchange(ectx, l.h.ID())
			ecancel()
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}()
	rep, err := l.Run(ctx, opts, 20*time.Second)
	close(done)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	return rep, append([]error(nil), errs...)
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

var _ = errors.New
