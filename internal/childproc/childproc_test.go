package childproc

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

const envChild = "CHILDPROC_TEST_CHILD"

// TestChild is the child of TestKilled; run directly, it skips. It exits
// with status 3 or waits to be killed, as its parent says.
func TestChild(t *testing.T) {
	switch os.Getenv(envChild) {
	case "":
		t.Skip("child process of TestKilled")
	case "exit":
		os.Exit(3)
	default:
		_, _ = os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute)
		os.Exit(4)
	}
}

// TestKilled: Killed tells a child that died of SIGKILL from one that exited
// or could not start.
func TestKilled(t *testing.T) {
	exe := Exe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	err := Command(ctx, exe, "TestChild", envChild+"=exit").Run()
	if err == nil || Killed(err) {
		t.Fatalf("a child that exited: Killed(%v) = %v", err, Killed(err))
	}
	if Killed(nil) {
		t.Fatal("Killed(nil)")
	}

	cmd := Command(ctx, exe, "TestChild", envChild+"=wait")
	out := &Buffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for out.String() == "" { // the child runs: killing it is no failure to start
		select {
		case <-ctx.Done():
			t.Fatal("child silent")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := cmd.Wait(); !Killed(err) {
		t.Fatalf("a child killed with SIGKILL: Killed(%v) = false", err)
	}
}

func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 100 {
				_, _ = fmt.Fprint(&b, i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 400 {
		t.Fatalf("%d bytes, want 400", n)
	}
}
