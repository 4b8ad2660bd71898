package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/node"
)

// The daemon's control API: HTTP with JSON bodies over the unix socket
// DIR/api.sock (mode 0600), so that the one-shot commands can work through a
// running daemon, which holds the repo's lock.
//
//	GET  /v0/id        -> idReply
//	POST /v0/exchange  {"addr": MULTIADDR or peer ID} -> NDJSON stream of apiLine
//	POST /v0/rotate    -> rotateReply
//
// and more in api_more.go, api_trust.go (chat, verify), forget.go, send.go
// and inbox.go.
//
// An endpoint that fails with trust events to report (send, connect,
// verify, forget) answers with a JSON body, apiErrorJSON; other failures
// are a text line.
const apiSocket = "api.sock"

type idReply struct {
	PeerID      string   `json:"peer_id"`
	Fingerprint string   `json:"fingerprint"`
	Addrs       []string `json:"addrs"`
	Running     bool     `json:"running"`
}

type exchangeRequest struct {
	Addr string `json:"addr"`
}

// apiLine is one line of an exchange's progress stream: a progress line, or
// at the end a result or an error, with the exchange's trust events
// (trustevents.go).
type apiLine struct {
	Progress    string        `json:"progress,omitempty"`
	Result      *exchangeJSON `json:"result,omitempty"`
	Error       string        `json:"error,omitempty"`
	TrustEvents []trustEvent  `json:"trust_events,omitempty"`
}

// exchangeJSON is an exchange's result, in the API and in "exchange
// --json" (which adds the safety number, and the trust events:
// exchangeOutput).
type exchangeJSON struct {
	Peer            string `json:"peer"`
	Epoch           uint64 `json:"epoch"`
	KeyID           string `json:"key_id"`
	Suite           string `json:"suite"`
	PostQuantum     bool   `json:"post_quantum"`
	SentOwnKey      bool   `json:"sent_own_key"`
	ReceivedPeerKey bool   `json:"received_peer_key"`
	SafetyNumber    string `json:"safety_number,omitempty"`
}

// apiErrorJSON is the body of a failed request that has trust events to
// report.
type apiErrorJSON struct {
	Error       string       `json:"error"`
	TrustEvents []trustEvent `json:"trust_events,omitempty"`
}

// apiError is a failure the daemon reported with its trust events.
type apiError struct {
	msg    string
	events []trustEvent
}

func (e *apiError) Error() string { return e.msg }

// writeAPIError answers a failed request with its trust events.
func writeAPIError(w http.ResponseWriter, code int, err error, events []trustEvent) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiErrorJSON{Error: oneLine(err), TrustEvents: events})
}

// apiTrustEvents returns the trust events an API client's error carries.
func apiTrustEvents(err error) []trustEvent {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.events
	}
	return nil
}

type rotateReply struct {
	Fingerprint string `json:"fingerprint"`
	Previous    string `json:"previous"`
}

func idOf(n *node.Node) idReply {
	r := idReply{PeerID: n.ID().String(), Fingerprint: n.Fingerprint().String(), Addrs: []string{}, Running: true}
	for _, a := range n.Addrs() {
		r.Addrs = append(r.Addrs, a.String())
	}
	return r
}

// serveAPI serves the control API of n until the returned stop is called;
// each of more registers more endpoints (the daemon's inbox: inbox.go).
func serveAPI(n *node.Node, dir string, more ...func(*http.ServeMux)) (stop func(), err error) {
	path := filepath.Join(dir, apiSocket)
	// The caller holds the repo's lock, so a socket file left here is stale.
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v0/id", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, idOf(n))
	})
	mux.HandleFunc("POST /v0/rotate", func(w http.ResponseWriter, r *http.Request) {
		before := n.Fingerprint()
		if err := n.RotateExchangeKey(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, rotateReply{Fingerprint: n.Fingerprint().String(), Previous: before.String()})
	})
	mux.HandleFunc("POST /v0/exchange", func(w http.ResponseWriter, r *http.Request) {
		var req exchangeRequest
		if !decodeRequest(w, r, 4096, &req) {
			return
		}
		apiExchange(r.Context(), n, req.Addr, w)
	})
	handleTrustAPI(mux, n) // api_trust.go
	handleSendAPI(mux, n)  // send.go
	for _, f := range more {
		f(mux)
	}
	// status, peers, connect, keys and the api file: api_more.go
	stopMore, err := serveMoreAPI(mux, n, dir, path)
	if err != nil {
		l.Close()
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		stopMore()
		_ = os.Remove(path)
	}, nil
}

// apiExchange runs an exchange for a client and streams its progress.
func apiExchange(ctx context.Context, n *node.Node, addr string, w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	var mu sync.Mutex
	send := func(l apiLine) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(l)
		flush()
	}
	pi, err := resolvePeer(n, addr) // a full multiaddr or a peer ID (api_more.go)
	if err != nil {
		send(apiLine{Error: err.Error()})
		return
	}
	if pi.ID == n.ID() {
		send(apiLine{Error: fmt.Sprintf("%s is this node's own peer ID", pi.ID)})
		return
	}
	events, stop := n.Subscribe(0)
	defer stop()
	lines := &progress{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range events {
			if e.Peer != pi.ID {
				continue
			}
			if l := lines.line(e); l != "" {
				send(apiLine{Progress: l})
			}
		}
	}()
	info, trust, err := connectAndExchange(ctx, n, pi) // exchange.go
	stop()
	wg.Wait() // no progress line after the result, none after we return
	if err != nil {
		send(apiLine{Error: oneLine(err), TrustEvents: trust})
		return
	}
	send(apiLine{Result: toJSON(info), TrustEvents: trust})
}

func toJSON(info *node.KeyInfo) *exchangeJSON {
	return &exchangeJSON{Peer: info.Peer.String(), Epoch: info.Epoch, KeyID: info.KeyID.String(),
		Suite: info.Suite.String(), PostQuantum: info.Suite.PostQuantum(),
		SentOwnKey: info.SentOwnKey, ReceivedPeerKey: info.ReceivedPeerKey}
}

// decodeRequest reads a JSON request body of at most limit bytes into v;
// on error it answers 400 and returns false.
func decodeRequest(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, limit)).Decode(v); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// requestPeer parses a request's full peer address and refuses the node's
// own; on error it answers 400 and returns false.
func requestPeer(w http.ResponseWriter, n *node.Node, addr string) (*peer.AddrInfo, bool) {
	pi, err := parsePeerAddr(addr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	if pi.ID == n.ID() {
		http.Error(w, fmt.Sprintf("%s is this node's own peer ID", pi.ID), http.StatusBadRequest)
		return nil, false
	}
	return pi, true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// apiClient talks to the daemon of a repo.
type apiClient struct{ http *http.Client }

// dialAPI returns a client for the repo's running daemon, or nil if none
// runs there.
func dialAPI(dir string) *apiClient {
	path := filepath.Join(dir, apiSocket)
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return &apiClient{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *apiClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytesReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://p2pkex"+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Not the transport's URL and wrappings: what happened.
		if ctx.Err() != nil {
			return nil, &lineError{"the daemon did not answer in time", ctx.Err()} // app.go
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("the daemon's control socket failed: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var ae apiErrorJSON
		if resp.Header.Get("Content-Type") == "application/json" && json.Unmarshal(msg, &ae) == nil && ae.Error != "" {
			return nil, &apiError{msg: ae.Error, events: ae.TrustEvents}
		}
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		// The daemon's words are the command's: the same line on either
		// path, with no "daemon:" of its own.
		return nil, errors.New(trimNL(string(msg)))
	}
	return resp, nil
}

func (c *apiClient) getJSON(ctx context.Context, method, path string, out any) error {
	resp, err := c.do(ctx, method, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// exchange asks the daemon to exchange with addr, passing progress lines to
// onProgress, and returns the result and the exchange's trust events.
func (c *apiClient) exchange(ctx context.Context, addr string, onProgress func(string)) (*exchangeJSON, []trustEvent, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v0/exchange", exchangeRequest{Addr: addr})
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l apiLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, nil, fmt.Errorf("daemon sent %q: %w", sc.Text(), err)
		}
		switch {
		case l.Error != "":
			return nil, l.TrustEvents, errors.New(l.Error)
		case l.Result != nil:
			return l.Result, l.TrustEvents, nil
		case onProgress != nil:
			onProgress(l.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	return nil, nil, errors.New("daemon closed the connection without a result")
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func trimNL(s string) string { return strings.TrimSpace(s) }
