package procs

import (
	"runtime"
	"testing"
)

func TestRaise(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	if got := Raise(); got != CPUs()+1 || runtime.GOMAXPROCS(0) != CPUs()+1 {
		t.Fatalf("Raise() = %d, GOMAXPROCS %d; want %d", got, runtime.GOMAXPROCS(0), CPUs()+1)
	}
	if CPUs() != cpus {
		t.Fatal("CPUs changed by Raise")
	}
}

func TestRaiseKeepsTheUsersChoice(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(1)
	t.Setenv("GOMAXPROCS", "1")
	if got := Raise(); got != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("Raise() = %d with GOMAXPROCS=1 set; want 1", got)
	}
}
