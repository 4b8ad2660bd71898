package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/inbox"
	"github.com/p2pkex/p2pkex/peerstore"
)

// The streamed endpoints: NDJSON, one object a line, flushed as written.

// ndjson starts a streamed answer and returns how to write one line.
func ndjson(w http.ResponseWriter) (write func(v any) error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	if f != nil {
		f.Flush()
	}
	enc := json.NewEncoder(w)
	var mu sync.Mutex
	return func(v any) error {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(v); err != nil {
			return err
		}
		if f != nil {
			f.Flush()
		}
		return nil
	}
}

// serveExchange serves POST /v0/exchange: progress lines, then one line
// with the result or the error.
func (s *Server) serveExchange(w http.ResponseWriter, r *http.Request) {
	var req api.ExchangeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeError(w, api.Errorf(api.CodeBadRequest, "bad request: %v", err))
		return
	}
	write := ndjson(w)
	res, err := s.Exchange(r.Context(), req.Addr, func(line string) { _ = write(api.ExchangeLine{Progress: line}) })
	if err != nil {
		ae := asAPIError(err)
		_ = write(api.ExchangeLine{Error: OneLine(ae), Code: ae.Code, TrustEvents: ae.TrustEvents})
		return
	}
	_ = write(api.ExchangeLine{Result: res, TrustEvents: res.TrustEvents})
}

// serveMessages serves GET /v0/messages[?peer=ID]: the messages the node
// receives (from the peer), as they arrive, until the client leaves.
func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request) {
	var from peer.ID
	if q := r.URL.Query().Get("peer"); q != "" {
		p, err := ParsePeerID(q)
		if err != nil {
			writeError(w, err)
			return
		}
		from = p
	}
	msgs, stop := s.n.Messages(0)
	defer stop()
	write := ndjson(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			if from != "" && m.From != from {
				continue
			}
			if write(api.ChatMessage{From: m.From.String(), Epoch: m.Epoch, Text: string(m.Data)}) != nil {
				return
			}
		}
	}
}

// InboxMessage is a kept message as the API carries it.
func InboxMessage(m *inbox.Message) api.InboxMessage {
	j := api.InboxMessage{Seq: m.Seq, From: m.From.String(), Time: m.Time, Epoch: m.Epoch,
		KeyID: peerstore.KeyID(m.KeyID).String(), Size: len(m.Data), Text: string(m.Data)}
	if !utf8.Valid(m.Data) {
		j.Text = strings.ToValidUTF8(j.Text, "\uFFFD")
		j.Data = m.Data
	}
	return j
}

// serveInbox serves GET /v0/inbox[?peer=ID][&after=SEQ][&follow=1]: the
// kept messages, oldest first, and with follow each new one until the
// client leaves or the server closes.
func (s *Server) serveInbox(w http.ResponseWriter, r *http.Request) {
	ib := s.opts.Inbox
	if ib == nil {
		writeError(w, api.Errorf(api.CodeUnavailable, "this daemon keeps no inbox"))
		return
	}
	q := r.URL.Query()
	var from peer.ID
	if v := q.Get("peer"); v != "" {
		p, err := peer.Decode(v)
		if err != nil {
			writeError(w, api.Errorf(api.CodeBadRequest, "%q is not a peer ID", v))
			return
		}
		from = p
	}
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, api.Errorf(api.CodeBadRequest, "after: %q is not a number", v))
			return
		}
		after = n
	}
	follow := q.Get("follow") == "1"
	var write func(any) error
	for {
		changed := ib.Changed() // before List: no message falls between
		msgs, err := ib.List(from, after)
		if err != nil {
			if write == nil {
				writeError(w, internal(fmt.Errorf("inbox: %w", err)))
			}
			return
		}
		if write == nil {
			write = ndjson(w)
		}
		for i := range msgs {
			if write(InboxMessage(&msgs[i])) != nil {
				return
			}
			after = msgs[i].Seq
		}
		if !follow {
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		}
	}
}
