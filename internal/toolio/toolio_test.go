package toolio

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteJSONThenInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	in := map[string]any{"nodes": 30.0, "pass": true}
	if err := WriteJSON(path, in); err != nil {
		t.Fatal(err)
	}
	r, closeIn, err := Inputs(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeIn()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"nodes\": 30,\n  \"pass\": true\n}\n"; string(b) != want {
		t.Fatalf("got %q, want %q (indented, one trailing newline)", b, want)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil || out["nodes"] != 30.0 {
		t.Fatalf("read back %v, %v", out, err)
	}
}

func TestInputsConcatenates(t *testing.T) {
	dir := t.TempDir()
	var names []string
	for i, text := range []string{"{\"a\":1}\n", "{\"a\":2}\n"} {
		names = append(names, filepath.Join(dir, string(rune('x'+i))))
		if err := os.WriteFile(names[i], []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, closeIn, err := Inputs(names...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "{\"a\":1}\n{\"a\":2}\n" {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := closeIn(); err != nil {
		t.Fatal(err)
	}
}

func TestOutputAndInputDefaults(t *testing.T) {
	w, closeOut, err := Output("")
	if err != nil || w != os.Stdout {
		t.Fatalf("Output(\"\") = %v, %v; want standard output", w, err)
	}
	if err := closeOut(); err != nil {
		t.Fatal(err)
	}
	r, closeIn, err := Inputs()
	if err != nil || r != os.Stdin {
		t.Fatalf("Inputs() = %v, %v; want standard input", r, err)
	}
	if err := closeIn(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, _, err := Inputs(filepath.Join(dir, "missing.json")); !os.IsNotExist(err) {
		t.Fatalf("a missing file: %v", err)
	}
	if err := WriteJSON(filepath.Join(t.TempDir(), "no", "such", "dir.json"), 1); err == nil {
		t.Fatal("WriteJSON into a missing directory succeeded")
	}
}

// TestProfiles: a heap and a CPU profile land in their files as gzipped
// protobuf; an unknown profile and an empty CPU profile path write nothing.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	gz := func(path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Fatalf("%s: %d bytes, not a gzipped profile", path, len(b))
		}
	}
	heap := filepath.Join(dir, "heap.pb.gz")
	if err := WriteProfile("heap", heap); err != nil {
		t.Fatal(err)
	}
	gz(heap)
	if err := WriteProfile("no-such-profile", filepath.Join(dir, "x")); err == nil {
		t.Fatal("an unknown profile was written")
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Fatalf("an unknown profile left a file: %v", err)
	}

	cpu := filepath.Join(dir, "cpu.pb.gz")
	stop, err := StartCPUProfile(cpu)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // a second stop does nothing
	gz(cpu)
	noop, err := StartCPUProfile("")
	if err != nil {
		t.Fatal(err)
	}
	noop()
}
