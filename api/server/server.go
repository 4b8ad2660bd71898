// Package server is the daemon side of the control API of package
// [github.com/p2pkex/p2pkex/api]: a [Server] runs it for a
// [node.Node] over the unix socket of the node's repo.
//
// The operations behind the endpoints are methods of Server as well
// ([Server.Exchange], [Server.Send], [Server.Verify], ...), taking and
// returning the api types and failing with *[api.Error]: a program that
// runs a node of its own (the command line without a daemon) asks its node
// exactly what it would ask a daemon through package client, and gets the
// same answers and errors.
//
// This package imports node; package api does not, so that a program that
// only drives a daemon never links a node (see package api's doc).
package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/inbox"
	"github.com/p2pkex/p2pkex/node"
)

// Options is what a Server needs beyond its node. Every field may be left
// zero.
type Options struct {
	// Dir is the repo the socket (Dir/api.sock) and the address file
	// (Dir/api) are made in by Start. The caller holds the repo's lock:
	// a socket file found there is stale and replaced.
	Dir string
	// Inbox serves GET /v0/inbox; nil: that endpoint answers
	// unavailable.
	Inbox *inbox.Inbox
	// Shutdown is called after POST /v0/shutdown was answered; it should
	// make the daemon stop (and Close the server). nil: the endpoint
	// answers unavailable.
	Shutdown func()
	// Metrics returns the URL of the daemon's Prometheus metrics for
	// GET /v0/status, or "".
	Metrics func() string
}

// Server serves the control API of one node.
type Server struct {
	n    *node.Node
	opts Options
	mux  *http.ServeMux

	started      time.Time
	done, failed atomic.Uint64
	mu           sync.Mutex
	reach        string

	quit      chan struct{} // closed by Close: streams (inbox --follow, messages) end
	closeOnce sync.Once
	stops     []func()
}

// New returns a server for n. It serves nothing until Start; its
// operations can be called at once.
func New(n *node.Node, opts Options) *Server {
	s := &Server{n: n, opts: opts, started: time.Now(),
		reach: network.ReachabilityUnknown.String(), quit: make(chan struct{})}
	s.mux = s.routes()
	return s
}

// Handler returns the API's HTTP handler (Start serves it on the socket).
func (s *Server) Handler() http.Handler { return s.mux }

// SocketPath is the control socket's path in the repo dir.
func SocketPath(dir string) string { return filepath.Join(dir, api.SocketName) }

// Start listens on Options.Dir/api.sock (mode 0600), writes Dir/api, and
// starts counting the node's exchanges for GET /v0/status. Close undoes
// it.
func (s *Server) Start() error {
	path := SocketPath(s.opts.Dir)
	_ = os.Remove(path) // stale: the caller holds the repo's lock
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	s.stops = append(s.stops, func() { _ = os.Remove(path) })
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		s.Close()
		return err
	}
	if err := s.writeAddrFile(path); err != nil {
		l.Close()
		s.Close()
		return err
	}
	s.watch()
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	stopHTTP := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	}
	// Run first by Close (stops run in reverse): no request after it.
	s.stops = append(s.stops, stopHTTP)
	return nil
}

// writeAddrFile writes Dir/api: the socket's absolute path, replaced
// atomically, for tools that look for a running daemon.
func (s *Server) writeAddrFile(sock string) error {
	abs, err := filepath.Abs(sock)
	if err != nil {
		return err
	}
	path := filepath.Join(s.opts.Dir, api.AddrFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(abs+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	s.stops = append(s.stops, func() { _ = os.Remove(path) })
	return nil
}

// watch counts the node's exchanges and follows its reachability.
func (s *Server) watch() {
	events, stopEvents := s.n.Subscribe(0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range events {
			switch e.Kind {
			case node.EventDone:
				s.done.Add(1)
			case node.EventFailed:
				s.failed.Add(1)
			}
		}
	}()
	sub, err := s.n.Host().EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range sub.Out() {
				if ev, ok := e.(event.EvtLocalReachabilityChanged); ok {
					s.mu.Lock()
					s.reach = ev.Reachability.String()
					s.mu.Unlock()
				}
			}
		}()
	}
	s.stops = append(s.stops, func() {
		stopEvents()
		if sub != nil {
			sub.Close()
		}
		wg.Wait()
	})
}

// Close ends the streams, stops serving, and removes the socket and the
// address file. It does not close the node. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		for i := len(s.stops) - 1; i >= 0; i-- {
			s.stops[i]()
		}
	})
	return nil
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	get := func(path string, f func(r *http.Request) (any, error)) {
		mux.HandleFunc("GET /"+api.Version+"/"+path, func(w http.ResponseWriter, r *http.Request) {
			v, err := f(r)
			reply(w, v, err)
		})
	}
	// post decodes the body into a new T (at most limit bytes) for f.
	post := func(path string, limit int64, f func(r *http.Request, body []byte) (any, error)) {
		mux.HandleFunc("POST /"+api.Version+"/"+path, func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
			if err == nil && int64(len(b)) > limit {
				err = fmt.Errorf("body larger than %d bytes", limit)
			}
			if err != nil {
				writeError(w, api.Errorf(api.CodeBadRequest, "bad request: %v", err))
				return
			}
			v, err := f(r, b)
			reply(w, v, err)
		})
	}
	get("id", func(r *http.Request) (any, error) { return s.ID(r.Context()) })
	get("status", func(r *http.Request) (any, error) { return s.Status(r.Context()) })
	mux.HandleFunc("GET /"+api.Version+"/peers", s.writePeers)
	get("keys", func(r *http.Request) (any, error) { return s.Keys(r.Context(), r.URL.Query().Get("peer")) })
	get("forget", func(r *http.Request) (any, error) { return s.ForgetPreview(r.Context(), r.URL.Query().Get("peer")) })
	get("verify", func(r *http.Request) (any, error) {
		return s.Verify(r.Context(), api.VerifyRequest{Peer: r.URL.Query().Get("peer")})
	})
	post("rotate", 4096, func(r *http.Request, _ []byte) (any, error) { return s.Rotate(r.Context()) })
	post("connect", 4096, func(r *http.Request, b []byte) (any, error) {
		var req api.ConnectRequest
		if err := decode(b, &req); err != nil {
			return nil, err
		}
		return s.Connect(r.Context(), req.Addr)
	})
	// JSON escaping can grow a message up to six times.
	post("send", 6*node.DefaultMaxMessageSize+4096, func(r *http.Request, b []byte) (any, error) {
		var req api.SendRequest
		if err := decode(b, &req); err != nil {
			return nil, err
		}
		return s.Send(r.Context(), req.Addr, req.Message)
	})
	post("chat", 4096, func(r *http.Request, b []byte) (any, error) {
		var req api.ChatRequest
		if err := decode(b, &req); err != nil {
			return nil, err
		}
		return s.Chat(r.Context(), req.Addr)
	})
	post("forget", 4096, func(r *http.Request, b []byte) (any, error) {
		var req api.ForgetRequest
		if err := decode(b, &req); err != nil {
			return nil, err
		}
		return s.Forget(r.Context(), req.Peer)
	})
	post("verify", 4096, func(r *http.Request, b []byte) (any, error) {
		var req api.VerifyRequest
		if err := decode(b, &req); err != nil {
			return nil, err
		}
		if !req.Changes() {
			// Marking a peer verified takes the number or the user's yes.
			return nil, api.Errorf(api.CodeBadRequest, "verify: give the peer's safety number (number) or the user's confirmation (yes)")
		}
		return s.Verify(r.Context(), req)
	})
	// A label of at most 239 bytes; the context is bounded here only by
	// the request size (JSON escaping and base64 grow it).
	post("export-key", 1<<20, func(r *http.Request, b []byte) (any, error) {
		var req api.ExportKeyRequest
		err := decode(b, &req)
		clear(b)
		if err != nil {
			return nil, err
		}
		rep, err := s.ExportKey(r.Context(), req)
		if err != nil {
			return nil, err
		}
		return keyReply{rep}, nil
	})
	mux.HandleFunc("POST /"+api.Version+"/exchange", s.serveExchange)
	mux.HandleFunc("GET /"+api.Version+"/messages", s.serveMessages)
	mux.HandleFunc("GET /"+api.Version+"/inbox", s.serveInbox) // inbox.go
	mux.HandleFunc("POST /"+api.Version+"/shutdown", func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Shutdown == nil {
			writeError(w, api.Errorf(api.CodeUnavailable, "this daemon cannot be shut down through its API"))
			return
		}
		writeJSON(w, api.ShutdownReply{PeerID: s.n.ID().String()})
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		s.opts.Shutdown()
	})
	return mux
}

// keyReply is an exported key on its way out: reply clears it once
// written.
type keyReply struct{ *api.ExportKeyReply }

// decode reads a request body into v.
func decode(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return api.Errorf(api.CodeBadRequest, "bad request: %v", err)
	}
	return nil
}

// reply answers with v, or with err as an error body.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	if k, ok := v.(keyReply); ok {
		writeJSON(w, k.ExportKeyReply)
		clear(k.Key)
		return
	}
	writeJSON(w, v)
}

// writePeers is GET /v0/peers: the JSON list Peers returns, written as
// EachPeer reads it, so that a listing of many peers never holds them all
// in the daemon (docs/performance/store.md, "Listing the known peers").
// The bytes are those of writeJSON(w, s.Peers()). An error before anything
// was sent is answered as any error; one after it (the store failed
// mid-way, or the client left) breaks the connection, so that no client
// takes the part it read for the whole list.
func (s *Server) writePeers(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	w.Header().Set("Content-Type", "application/json")
	sep := byte('[')
	err := s.EachPeer(r.Context(), func(p api.Peer) error {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		bw.WriteByte(sep)
		sep = ','
		_, err = bw.Write(b)
		return err
	})
	if err == nil {
		if sep == '[' {
			bw.WriteByte('[')
		}
		_, err = bw.WriteString("]\n")
	}
	if err == nil {
		err = bw.Flush()
	}
	switch {
	case err == nil:
	case cw.n == 0:
		writeError(w, err)
	default:
		panic(http.ErrAbortHandler)
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf is the HTTP status of an error code.
var statusOf = map[string]int{
	api.CodeBadRequest:  http.StatusBadRequest,
	api.CodeNotFound:    http.StatusNotFound,
	api.CodeNoSession:   http.StatusNotFound,
	api.CodeRefused:     http.StatusConflict,
	api.CodePeer:        http.StatusBadGateway,
	api.CodeUnavailable: http.StatusServiceUnavailable,
	api.CodeInternal:    http.StatusInternalServerError,
}

// asAPIError is err as an *api.Error: an error of the operations' own
// kinds keeps its code; any other is internal.
func asAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	return api.Wrap(api.CodeInternal, OneLine(err), err, nil)
}

// writeError answers a failed request with its error body.
func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	code, ok := statusOf[ae.Code]
	if !ok {
		code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.Error{Code: ae.Code, Message: OneLine(ae), TrustEvents: ae.TrustEvents})
}

// OneLine is err's message as one line a person reads: no line breaks,
// and no part said twice (libp2p's errors wrap the same words at several
// layers: "stream reset: stream reset: connection closed: ...").
func OneLine(err error) string {
	s := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	parts := strings.Split(s, ": ")
	seen := make(map[string]bool, len(parts))
	out := parts[:0]
	for _, p := range parts {
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return strings.Join(out, ": ")
}
