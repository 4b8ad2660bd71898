package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStoreWarmOnlyForDaemon: the daemon opens its store with the walk of
// the lookup tree (serving), and every command that opens a repo without
// one opens it without the walk (oneShot): the reads, the changes, the
// commands that run a node of their own for one exchange or message, init,
// and shutdown's wait for the daemon's lock.
func TestStoreWarmOnlyForDaemon(t *testing.T) {
	alice, bob, _, bobID := exchangedRepos(t) // verify_test.go
	var mu sync.Mutex
	opened := map[string][]repoUse{}
	hook := func(dir string, use repoUse) {
		mu.Lock()
		defer mu.Unlock()
		opened[dir] = append(opened[dir], use)
	}
	testHookOpenStore.Store(&hook)
	t.Cleanup(func() { testHookOpenStore.Store(nil) })
	take := func(dir string) []repoUse {
		mu.Lock()
		defer mu.Unlock()
		u := opened[dir]
		delete(opened, dir)
		return u
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := func(args ...string) {
		t.Helper()
		var out, errOut strings.Builder
		require.Equal(t, 0, run(ctx, append([]string{"p2pkex"}, args...), &out, &errOut), "%v: %s", args, errOut.String())
	}

	done := make(chan int, 1)
	go func() {
		var out, errOut strings.Builder
		done <- run(ctx, []string{"p2pkex", "daemon", "--repo", bob, "--no-mdns", "--no-dht", "--listen", "/ip4/127.0.0.1/tcp/0"}, &out, &errOut)
	}()
	var bobAddr string
	for range 2000 { // a hang, not a speed limit
		if d := daemon(bob); d != nil {
			id, err := d.ID(ctx)
			d.Close()
			if err == nil && len(id.Addrs) > 0 {
				bobAddr = id.Addrs[0]
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NotEmpty(t, bobAddr, "bob's daemon did not start")
	require.Equal(t, []repoUse{serving}, take(bob), "the daemon")

	for _, args := range [][]string{
		{"id"},
		{"peers"},
		{"keys", bobID.String()},
		{"verify", bobID.String()},
		{"export-key", "--label", "test", bobID.String()},
		{"rotate"},
		{"exchange", bobAddr},
		{"send", bobAddr, "hello"},
		{"forget", "--yes", bobID.String()},
	} {
		cmd(append(args[:1:1], append([]string{"--repo", alice}, args[1:]...)...)...)
		require.Equal(t, []repoUse{oneShot}, take(alice), "%s without a daemon", args[0])
		require.Empty(t, take(bob), "%s: bob's daemon opened its store again", args[0])
	}
	carol := filepath.Join(t.TempDir(), "carol")
	cmd("init", "--repo", carol)
	require.Equal(t, []repoUse{oneShot}, take(carol), "init")

	cmd("shutdown", "--repo", bob)
	require.Equal(t, 0, <-done)
	probes := take(bob)
	require.NotEmpty(t, probes, "shutdown did not wait for the store's lock")
	for _, u := range probes {
		require.Equal(t, oneShot, u, "shutdown's wait for the lock")
	}
}
