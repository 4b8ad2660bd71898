package procstat

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestReadings(t *testing.T) {
	var keep [][]byte
	before := HeapAfterGC()
	for range 64 {
		keep = append(keep, make([]byte, 64<<10))
	}
	after := HeapAfterGC()
	if after.Live < before.Live+4<<20 {
		t.Errorf("live heap grew by %d bytes with 4 MiB held", int64(after.Live)-int64(before.Live))
	}
	runtime.KeepAlive(keep)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "b"), make([]byte, 24), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := DirSize(dir); got != 1024 {
		t.Errorf("DirSize = %d, want 1024", got)
	}
	if got := DirSize(filepath.Join(dir, "missing")); got != -1 {
		t.Errorf("DirSize of a missing dir = %d, want -1", got)
	}
	if runtime.GOOS != "linux" {
		t.Skip("open files and RSS are read from /proc, Linux only")
	}
	n := OpenFiles()
	f, err := os.Open(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := OpenFiles(); got != n+1 {
		t.Errorf("OpenFiles = %d after opening one more than %d", got, n)
	}
	if RSS() <= 0 {
		t.Errorf("RSS = %d", RSS())
	}
	if CPU() <= 0 {
		t.Errorf("CPU = %v", CPU())
	}
}
