// Package client drives a running p2pkex daemon through its control API
// (package [github.com/p2pkex/p2pkex/api]; docs/API.md), the way kubo's
// client/rpc drives an IPFS daemon. The p2pkex command line uses it for
// every command that works through a daemon.
//
// A Client talks HTTP over the unix socket of the daemon's repo. Its
// methods take a context first and return the api types. A request the
// daemon refuses fails with an *[api.Error] carrying the API's error code,
// its one-line message and the operation's trust events:
//
//	var ae *api.Error
//	if errors.As(err, &ae) && ae.Code == api.CodeNoSession { ... }
//
// [New] on a repo where no daemon answers fails with an error that
// errors.Is [ErrNoDaemon]: a program then runs without one, or tells the
// user to start one.
//
// The client imports only package api and the standard library, never the
// node: a program that drives a daemon does not link one.
package client

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
	"path/filepath"
	"strings"
	"time"

	"github.com/p2pkex/p2pkex/api"
)

// ErrNoDaemon is returned (wrapped) by New and NewSocket when no daemon
// answers on the socket: there is none, or it left a stale socket file.
var ErrNoDaemon = errors.New("no daemon running")

// Client talks to one daemon. It is safe for concurrent use.
type Client struct {
	sock string
	http *http.Client
}

// New returns a client for the daemon running on the repo dir (its
// socket dir/api.sock).
func New(dir string) (*Client, error) {
	return NewSocket(filepath.Join(dir, api.SocketName))
}

// NewSocket returns a client for the daemon listening on the unix socket
// at path, after checking that something accepts connections there.
func NewSocket(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w on %s: %v", ErrNoDaemon, path, unwrapOp(err))
	}
	c.Close()
	return &Client{sock: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}, nil
}

// Socket is the path of the daemon's socket.
func (c *Client) Socket() string { return c.sock }

// Close releases the client's idle connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// TransportError is a request that did not reach the daemon or got no
// answer: the daemon stopped, or ctx ended (errors.Is then finds
// ctx.Err()).
type TransportError struct {
	Msg string
	Err error
}

func (e *TransportError) Error() string { return e.Msg }
func (e *TransportError) Unwrap() error { return e.Err }

// do sends a request (body: JSON of in, unless nil) and returns the
// response of status 200; any other status is the daemon's *api.Error.
func (c *Client) do(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://p2pkex/"+api.Version+"/"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Not the transport's URL and wrappings: what happened.
		if ctx.Err() != nil {
			return nil, &TransportError{"the daemon did not answer in time", ctx.Err()}
		}
		return nil, &TransportError{fmt.Sprintf("the daemon's control socket failed: %v", unwrapOp(err)), err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

// readError decodes a failed response's error body.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ae api.Error
	if json.Unmarshal(b, &ae) != nil || ae.Message == "" {
		// Not an error body (not a p2pkex daemon?): its first line.
		msg, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if len(msg) > 200 {
			msg = msg[:200]
		}
		if msg == "" {
			msg = resp.Status
		}
		ae = api.Error{Code: api.CodeInternal, Message: msg}
	}
	ae.Status = resp.StatusCode
	return &ae
}

// unwrapOp drops the wrappings of an error from net or net/http: what
// happened, without the URL or the operation's name.
func unwrapOp(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return err
}

// call sends a request and decodes the answer into out.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return &TransportError{fmt.Sprintf("the daemon's answer: %v", err), err}
	}
	return nil
}

// get and post are call for one method, decoding into a new T.
func get[T any](ctx context.Context, c *Client, path string) (*T, error) {
	out := new(T)
	if err := c.call(ctx, http.MethodGet, path, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

func post[T any](ctx context.Context, c *Client, path string, in any) (*T, error) {
	out := new(T)
	if err := c.call(ctx, http.MethodPost, path, in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// withPeer is path?peer=p, or path if p is "".
func withPeer(path, p string) string {
	if p == "" {
		return path
	}
	return path + "?peer=" + url.QueryEscape(p)
}

// ID returns who the daemon is and where it listens (GET /v0/id).
func (c *Client) ID(ctx context.Context) (*api.ID, error) { return get[api.ID](ctx, c, "id") }

// Status returns the daemon's uptime, peers and counts (GET /v0/status).
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	return get[api.Status](ctx, c, "status")
}

// Peers lists the peers the daemon is connected to, discovered, or holds a
// record of (GET /v0/peers). It holds the whole list; EachPeer does not.
func (c *Client) Peers(ctx context.Context) ([]api.Peer, error) {
	out := []api.Peer{}
	err := c.EachPeer(ctx, func(p api.Peer) error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachPeer calls f with each peer Peers lists, in its order, as it reads
// the daemon's answer, holding one at a time: a daemon that knows 100,000
// peers answers some 25 MB. It stops at f's first error and returns it.
func (c *Client) EachPeer(ctx context.Context, f func(api.Peer) error) error {
	resp, err := c.do(ctx, http.MethodGet, "peers", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bad := func(err error) error {
		return &TransportError{fmt.Sprintf("the daemon's answer: %v", err), err}
	}
	dec := json.NewDecoder(resp.Body)
	if tok, err := dec.Token(); err != nil {
		return bad(err)
	} else if tok != json.Delim('[') {
		return bad(fmt.Errorf("not a list (%v)", tok))
	}
	for dec.More() {
		var p api.Peer
		if err := dec.Decode(&p); err != nil {
			return bad(err)
		}
		if err := f(p); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		return bad(err)
	}
	return nil
}

// Keys returns the metadata of the daemon's exchange keys and kept session
// keys, of every peer or (peer not "") of one (GET /v0/keys).
func (c *Client) Keys(ctx context.Context, peer string) (*api.Keys, error) {
	return get[api.Keys](ctx, c, withPeer("keys", peer))
}

// Connect connects the daemon to the peer at addr, a full multiaddr ending
// in /p2p/<peer ID> (POST /v0/connect).
func (c *Client) Connect(ctx context.Context, addr string) (*api.ConnectReply, error) {
	return post[api.ConnectReply](ctx, c, "connect", api.ConnectRequest{Addr: addr})
}

// Rotate replaces the daemon's exchange key (POST /v0/rotate).
func (c *Client) Rotate(ctx context.Context) (*api.RotateReply, error) {
	return post[api.RotateReply](ctx, c, "rotate", struct{}{})
}

// Exchange runs a key exchange with the peer at addr (a full multiaddr, or
// a peer ID the daemon knows an address for), passing each progress line
// to onProgress (may be nil) as it comes (POST /v0/exchange). A failed
// exchange is an *api.Error with the exchange's trust events.
func (c *Client) Exchange(ctx context.Context, addr string, onProgress func(line string)) (*api.ExchangeResult, error) {
	resp, err := c.do(ctx, http.MethodPost, "exchange", api.ExchangeRequest{Addr: addr})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l api.ExchangeLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, &TransportError{fmt.Sprintf("the daemon sent %q: %v", sc.Text(), err), err}
		}
		switch {
		case l.Error != "":
			code := l.Code
			if code == "" {
				code = api.CodePeer
			}
			return nil, &api.Error{Code: code, Message: l.Error, TrustEvents: l.TrustEvents, Status: resp.StatusCode}
		case l.Result != nil:
			l.Result.TrustEvents = l.TrustEvents
			return l.Result, nil
		case onProgress != nil && l.Progress != "":
			onProgress(l.Progress)
		}
	}
	if ctx.Err() != nil {
		return nil, &TransportError{"the daemon did not answer in time", ctx.Err()}
	}
	return nil, &TransportError{"the daemon closed the connection without a result", sc.Err()}
}

// Send sends one message to the peer at addr (as Exchange), sealed under
// the session key of the last exchange; it returns once the peer's daemon
// has kept it (POST /v0/send).
func (c *Client) Send(ctx context.Context, addr, message string) (*api.SendReply, error) {
	return post[api.SendReply](ctx, c, "send", api.SendRequest{Addr: addr, Message: message})
}

// Chat says whether the daemon can send to the peer at addr: a session
// key, an address (POST /v0/chat).
func (c *Client) Chat(ctx context.Context, addr string) (*api.ChatReady, error) {
	return post[api.ChatReady](ctx, c, "chat", api.ChatRequest{Addr: addr})
}

// ForgetPreview says what Forget would remove of the peer (GET
// /v0/forget); nothing is removed.
func (c *Client) ForgetPreview(ctx context.Context, peer string) (*api.ForgetReply, error) {
	return get[api.ForgetReply](ctx, c, withPeer("forget", peer))
}

// Forget removes the peer's exchange-key record, trust state and session
// keys from the daemon's repo (POST /v0/forget).
func (c *Client) Forget(ctx context.Context, peer string) (*api.ForgetReply, error) {
	return post[api.ForgetReply](ctx, c, "forget", api.ForgetRequest{Peer: peer})
}

// Verify returns the peer's trust state and safety number and, if req
// asks (req.Changes), confirms or revokes its verification (GET or POST
// /v0/verify).
func (c *Client) Verify(ctx context.Context, req api.VerifyRequest) (*api.VerifyReply, error) {
	if !req.Changes() {
		return get[api.VerifyReply](ctx, c, withPeer("verify", req.Peer))
	}
	return post[api.VerifyReply](ctx, c, "verify", req)
}

// ExportKey derives a key for an application from the session key with
// req.Peer (POST /v0/export-key). The caller clears Key once used.
func (c *Client) ExportKey(ctx context.Context, req api.ExportKeyRequest) (*api.ExportKeyReply, error) {
	return post[api.ExportKeyReply](ctx, c, "export-key", req)
}

// Shutdown asks the daemon to stop (POST /v0/shutdown). It returns once
// the daemon answered; the daemon then closes its node and repo.
func (c *Client) Shutdown(ctx context.Context) (*api.ShutdownReply, error) {
	return post[api.ShutdownReply](ctx, c, "shutdown", struct{}{})
}

// Messages calls f with each message the daemon receives (from peer, if
// not ""), as it arrives, until ctx ends (then it returns nil), f returns
// an error (returned), or the daemon stops (GET /v0/messages).
func (c *Client) Messages(ctx context.Context, peer string, f func(api.ChatMessage) error) error {
	st, err := c.MessageStream(ctx, peer)
	if err != nil {
		return err
	}
	return st.each(f)
}

// MessageStream is Messages as a stream: it returns once the daemon
// answered, from when on every message it receives is in the stream.
func (c *Client) MessageStream(ctx context.Context, peer string) (*Stream[api.ChatMessage], error) {
	return openStream[api.ChatMessage](ctx, c, withPeer("messages", peer))
}

// InboxQuery selects the messages of Inbox.
type InboxQuery struct {
	Peer   string // only this peer's (a peer ID); "": all
	After  uint64 // only those after this sequence number
	Follow bool   // then each new message until ctx ends or the daemon stops
}

// Inbox calls f with each message the daemon kept, oldest first, and with
// q.Follow each new one as it arrives (GET /v0/inbox). It returns nil at
// the end of the list, or (following) when ctx ends or the daemon stops;
// the error f returns; or the daemon's.
func (c *Client) Inbox(ctx context.Context, q InboxQuery, f func(api.InboxMessage) error) error {
	v := url.Values{}
	if q.Peer != "" {
		v.Set("peer", q.Peer)
	}
	if q.After > 0 {
		v.Set("after", fmt.Sprint(q.After))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	path := "inbox"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return stream(ctx, c, path, f)
}

// maxLine bounds one line of a stream: a 64 KiB message grows up to six
// times by JSON escaping, plus its base64 where it is not UTF-8.
const maxLine = 8*64*1024 + 4096

// Stream is a streamed answer (NDJSON): one value a line.
type Stream[T any] struct {
	ctx  context.Context
	resp *http.Response
	sc   *bufio.Scanner
}

func openStream[T any](ctx context.Context, c *Client, path string) (*Stream[T], error) {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, maxLine)
	return &Stream[T]{ctx: ctx, resp: resp, sc: sc}, nil
}

// Next returns the next value; io.EOF when the stream ended (the daemon
// ended it, or ctx ended).
func (s *Stream[T]) Next() (T, error) {
	var v T
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil && s.ctx.Err() == nil {
			return v, &TransportError{fmt.Sprintf("reading the daemon's answer: %v", err), err}
		}
		return v, io.EOF
	}
	if err := json.Unmarshal(s.sc.Bytes(), &v); err != nil {
		return v, &TransportError{fmt.Sprintf("the daemon sent a line that is not one: %v", err), err}
	}
	return v, nil
}

// Close ends the stream.
func (s *Stream[T]) Close() error { return s.resp.Body.Close() }

// each calls f with each value until the end (nil) or an error, and
// closes the stream.
func (s *Stream[T]) each(f func(T) error) error {
	defer s.Close()
	for {
		v, err := s.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := f(v); err != nil {
			return err
		}
	}
}

// stream reads an NDJSON answer of GET path, calling f with each line.
func stream[T any](ctx context.Context, c *Client, path string, f func(T) error) error {
	st, err := openStream[T](ctx, c, path)
	if err != nil {
		return err
	}
	return st.each(f)
}
