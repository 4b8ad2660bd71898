package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestForgetAsks: on a terminal, forget says what it will remove and
// removes it only when the user answers yes.
func TestForgetAsks(t *testing.T) {
	alice, _, _, bobID := exchangedRepos(t) // verify_test.go

	code, out, errOut := runTyped(t, "n\n", "forget", "--repo", alice, bobID.String())
	require.Equal(t, 1, code)
	require.Contains(t, out, "forget "+bobID.String()+": its exchange-key record, its trust state (first-use) and 1 session key will be removed")
	require.Contains(t, out, "Remove them? [y/N] ")
	require.Equal(t, "p2pkex: forget: nothing removed\n", errOut)

	code, out, _ = runTyped(t, "", "verify", "--repo", alice, "--json", bobID.String())
	require.Equal(t, 0, code)
	require.Contains(t, out, `"trust": "first-use"`)

	code, out, _ = runTyped(t, "y\n", "forget", "--repo", alice, bobID.String())
	require.Equal(t, 0, code)
	require.Contains(t, out, "forgot "+bobID.String()+": removed its exchange-key record, its trust state (first-use) and 1 session key")

	code, out, _ = runTyped(t, "", "verify", "--repo", alice, "--json", bobID.String())
	require.Equal(t, 0, code)
	require.True(t, strings.Contains(out, `"trust": "unknown"`), out)
}
