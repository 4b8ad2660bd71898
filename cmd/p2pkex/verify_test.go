package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// exchangedRepos makes two repos whose nodes exchanged keys once, on
// loopback, and returns their directories and peer IDs.
func exchangedRepos(t *testing.T) (alice, bob string, aliceID, bobID peer.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, bob = filepath.Join(t.TempDir(), "alice"), filepath.Join(t.TempDir(), "bob")
	ra, err := openRepo(alice, true, io.Discard, oneShot)
	require.NoError(t, err)
	defer ra.Close()
	rb, err := openRepo(bob, true, io.Discard, serving)
	require.NoError(t, err)
	defer rb.Close()
	nb, err := node.New(ctx, node.WithStore(rb.store), node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	defer nb.Close()
	na, err := node.New(ctx, node.WithStore(ra.store), node.WithLibp2pOptions(libp2p.NoListenAddrs))
	require.NoError(t, err)
	defer na.Close()
	require.NoError(t, na.Connect(ctx, peer.AddrInfo{ID: nb.ID(), Addrs: nb.Addrs()}))
	_, err = na.Exchange(ctx, nb.ID())
	require.NoError(t, err)
	return alice, bob, na.ID(), nb.ID()
}

// runTyped runs the command line with a person typing input at a terminal.
func runTyped(t *testing.T, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old := isTerminal
	isTerminal = func(io.Reader) bool { return true }
	defer func() { isTerminal = old }()
	var out, errOut strings.Builder
	code = runIO(context.Background(), append([]string{"p2pkex"}, args...), strings.NewReader(input), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestVerifyAsksForTheNumber: on a terminal, verify asks for the peer's
// safety number, and marks the peer verified only when it matches (or
// the user answers yes).
func TestVerifyAsksForTheNumber(t *testing.T) {
	alice, _, aliceID, bobID := exchangedRepos(t)
	number := protocol.NewSafetyNumber(aliceID, bobID).Digits()
	trust := func() string {
		_, out, _ := runTyped(t, "", "verify", "--repo", alice, "--json", bobID.String())
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, `"trust"`) {
				return strings.TrimSpace(l)
			}
		}
		return out
	}

	// Enter: nothing changes.
	code, out, _ := runTyped(t, "\n", "verify", "--repo", alice, bobID.String())
	require.Equal(t, 0, code)
	require.Contains(t, out, "Type the safety number")
	require.Contains(t, out, "not verified")
	require.Equal(t, `"trust": "first-use",`, trust())

	// A wrong number: refused, exit 1, nothing changes.
	wrong := protocol.NewSafetyNumber(aliceID, aliceID).Digits()
	code, _, errOut := runTyped(t, wrong+"\n", "verify", "--repo", alice, bobID.String())
	require.Equal(t, 1, code)
	require.Regexp(t, `^p2pkex: the number typed is not the safety number of this repo and \S+: \S+ stays first-use; compare again with the peer's owner\n$`, errOut)
	require.Equal(t, `"trust": "first-use",`, trust())

	// --confirm with nothing typed: refused.
	code, _, errOut = runTyped(t, "\n", "verify", "--repo", alice, "--confirm", bobID.String())
	require.Equal(t, 1, code)
	require.Equal(t, "p2pkex: nothing typed: not verified\n", errOut)

	// The right number, typed without the spaces: verified.
	code, out, _ = runTyped(t, strings.ReplaceAll(number, " ", "")+"\n", "verify", "--repo", alice, bobID.String())
	require.Equal(t, 0, code)
	require.Contains(t, out, bobID.String()+" is now verified (was first-use)")
	require.Equal(t, `"trust": "verified",`, trust())

	// yes, after a revoke.
	code, _, _ = runTyped(t, "", "verify", "--repo", alice, "--revoke", bobID.String())
	require.Equal(t, 0, code)
	code, out, _ = runTyped(t, "yes\n", "verify", "--repo", alice, "--confirm", bobID.String())
	require.Equal(t, 0, code)
	require.Contains(t, out, "is now verified (was first-use)")
}
