package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRunWithoutArguments runs the example against its own second node on
// loopback: exchange, safety number, a message and its echo.
func TestRunWithoutArguments(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &syncWriter{b: &strings.Builder{}}
	if err := run(ctx, nil, out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"epoch 1, key ID", "sent own key true, received peer's key true",
		"safety number ", `sent "hello from embed"`, `(epoch 1): "echo: hello from embed"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// syncWriter lets the event goroutine and run write to one builder.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String is safe to call once run returned.
func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
