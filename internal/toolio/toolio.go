// Package toolio holds the file handling the measuring tools (tools/soak,
// tools/swarm, tools/chart, the load tool in bench) share: where a report
// goes and where an input comes from, with standard output and input as the
// default, and the runtime profiles they write on request.
package toolio

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
)

// Output returns a writer to the file at path (created or truncated), or
// to standard output when path is empty. close closes the file and reports
// its error (a full disk shows there); it does nothing for standard output.
func Output(path string) (w io.Writer, close func() error, err error) {
	if path == "" {
		return os.Stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// WriteJSON writes v as indented JSON to the file at path, or to standard
// output when path is empty.
func WriteJSON(path string, v any) (err error) {
	w, closeOut, err := Output(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeOut()) }()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Inputs returns a reader of the named files one after the other, or of
// standard input when there are none. close closes the files.
func Inputs(names ...string) (r io.Reader, close func() error, err error) {
	if len(names) == 0 {
		return os.Stdin, func() error { return nil }, nil
	}
	var files []*os.File
	closeAll := func() error {
		var errs []error
		for _, f := range files {
			errs = append(errs, f.Close())
		}
		return errors.Join(errs...)
	}
	readers := make([]io.Reader, 0, len(names))
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			_ = closeAll()
			return nil, nil, err
		}
		files = append(files, f)
		readers = append(readers, f)
	}
	return io.MultiReader(readers...), closeAll, nil
}

// WriteProfile writes the named runtime profile ("heap", "goroutine", ...;
// runtime/pprof.Lookup) to the file at path. A heap profile shows the heap
// as of the last collection: callers that want it current collect first.
func WriteProfile(name, path string) error {
	prof := pprof.Lookup(name)
	if prof == nil {
		return fmt.Errorf("no %s profile", name)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := prof.WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("%s profile: %w", name, err)
	}
	return f.Close()
}

// StartCPUProfile starts a CPU profile to the file at path, if path is not
// empty. The returned function stops it and closes the file; it may be
// called more than once.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}
