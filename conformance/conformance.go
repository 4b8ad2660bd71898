// Package conformance tests an implementation of /p2pkex/1.0.0 against
// docs/PROTOCOL.md over real libp2p, as h2spec does for HTTP/2.
//
// # Roles
//
// [RunResponder] tests an implementation that responds: the suite opens
// streams to it and initiates every exchange, with a fresh identity per
// case. [Listener.Run] tests an implementation that initiates: the suite
// listens, and answers the exchanges the implementation under test opens
// to it, one identity for the whole run (the cases are ordered so that
// those that need a first contact come first).
//
// # Cases
//
// Each case names the section and rule of docs/PROTOCOL.md it tests. The
// happy paths check that the exchange succeeds (first contact, records
// known, a stale record after rotation, notice size 128, each suite,
// several exchanges on one stream, a stream per exchange); every other
// case breaks exactly one rule of section 14 that can be driven from the
// wire and expects the rule's status, in ABORT or in the reset code, a
// reset, and no key: the next exchange with the same identity must show
// the implementation proposing the same epoch and naming the same record
// as before the case, and must succeed. A case whose outcome the
// specification leaves to the implementation's trust policy (a store
// reset, section 8.1) is informative: it passes either way and notes the
// outcome, and fails only on a wrong status or a next exchange that
// contradicts it.
package conformance

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// DefaultWait bounds every read of the suite: how long the implementation
// under test may take to answer a notice (it is well below the default
// phase timeout, so that a silent implementation fails with "no answer").
const DefaultWait = 5 * time.Second

// Options of a run.
type Options struct {
	// Run selects the cases whose name or section it matches; nil runs all.
	Run *regexp.Regexp
	// Wait bounds each read; default DefaultWait.
	Wait time.Duration
	// Slow also runs the cases that wait for the implementation's phase
	// timeout (V49).
	Slow bool
	// Progress, when set, gets one line per finished case.
	Progress io.Writer
}

// Outcomes of a case.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Result is the outcome of one case.
type Result struct {
	Case    string   `json:"case"`
	Section string   `json:"section"`
	Summary string   `json:"summary"`
	Expect  string   `json:"expect"`
	Outcome string   `json:"outcome"`
	Detail  string   `json:"detail,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	Millis  int64    `json:"ms"`
	mu      sync.Mutex
}

func (r *Result) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if r.Outcome == Fail {
		r.Detail += "; " + msg
		return
	}
	r.Outcome, r.Detail = Fail, msg
}

func (r *Result) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Report is the outcome of a run.
type Report struct {
	// Role is the role of the implementation under test.
	Role    string    `json:"implementation_role"`
	Peer    string    `json:"peer"`
	Results []*Result `json:"cases"`
	Passed  int       `json:"passed"`
	Failed  int       `json:"failed"`
	Skipped int       `json:"skipped"`
	Seconds float64   `json:"seconds"`
}

// OK reports whether no case failed.
func (r *Report) OK() bool { return r.Failed == 0 }

func (r *Report) count() {
	r.Passed, r.Failed, r.Skipped = 0, 0, 0
	for _, res := range r.Results {
		switch res.Outcome {
		case Pass:
			r.Passed++
		case Fail:
			r.Failed++
		default:
			r.Skipped++
		}
	}
}

// WriteTable writes the report as a table, one case a line.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "p2pkex conformance: the implementation under test as %s, %s\n\n", r.Role, r.Peer)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tSECTION\tCASE\tEXPECT\tDETAIL")
	for _, res := range r.Results {
		detail := res.Detail
		if len(res.Notes) > 0 {
			if detail != "" {
				detail += "; "
			}
			detail += "note: " + strings.Join(res.Notes, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(res.Outcome), res.Section, res.Case, res.Expect, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Failed > 0 {
		// What to fix, one case a paragraph, as h2spec ends its report.
		fmt.Fprintf(w, "\nFailures:\n")
		for _, res := range r.Results {
			if res.Outcome == Fail {
				fmt.Fprintf(w, "\n  %s %s: %s\n    expected: %s\n    actual:   %s\n", res.Section, res.Case, res.Summary, res.Expect, res.Detail)
			}
		}
	}
	_, err := fmt.Fprintf(w, "\n%d cases: %d passed, %d failed, %d skipped (%.1f s)\n",
		len(r.Results), r.Passed, r.Failed, r.Skipped, r.Seconds)
	return err
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// CaseInfo describes a case for listings.
type CaseInfo struct {
	Name, Section, Summary, Expect string
	// Roles of the implementation under test the case applies to.
	Responder, Initiator bool
}

// Cases lists the suite's cases.
func Cases() []CaseInfo {
	var out []CaseInfo
	for _, c := range cases() {
		out = append(out, CaseInfo{Name: c.name, Section: c.section, Summary: c.summary, Expect: expectOf(c),
			Responder: c.appliesTo(protocol.Responder), Initiator: c.appliesTo(protocol.Initiator)})
	}
	return out
}

func expectOf(c *testCase) string {
	if c.expect != "" {
		return c.expect
	}
	if c.script != nil {
		return "success"
	}
	return c.want.String()
}

// selected returns the cases for the implementation's role that opts
// selects, in the order they run.
func selected(iut protocol.Role, opts Options) []*testCase {
	var first, firstOK, rest []*testCase
	for _, c := range cases() {
		if !c.appliesTo(iut) {
			continue
		}
		if opts.Run != nil && !opts.Run.MatchString(c.name) && !opts.Run.MatchString(c.section) {
			continue
		}
		// With one identity (initiator mode) the first-contact cases
		// come first, those that must fail (and install nothing) before
		// the one that succeeds; with fresh identities the order does not
		// matter.
		switch {
		case c.fresh && iut == protocol.Initiator && !c.want.ok:
			first = append(first, c)
		case c.fresh && iut == protocol.Initiator:
			firstOK = append(firstOK, c)
		default:
			rest = append(rest, c)
		}
	}
	return append(append(first, firstOK...), rest...)
}

// runner is one run's way to reach the implementation under test.
type runner interface {
	// iut is the role of the implementation under test.
	iut() protocol.Role
	// exchange runs one exchange with tactic tc, to its end on the suite's
	// side (its machine done, or the stream ended).
	exchange(ctx context.Context, id *identity, tc tactic) (*exchange, error)
	// end ends the stream of a finished exchange: kept or closed after a
	// success, reset after a failure.
	end(x *exchange, success bool)
	// honest runs one exchange that must succeed (setup and follow-up).
	honest(id *identity) error
	// prior runs the honest exchanges c needs before it.
	prior(c *testCase, id *identity) error
	// core is the state both runners share.
	core() *base
}

// base is what both runners share.
type base struct {
	ctx       context.Context
	opts      Options
	cur       *Result // the case running
	self      runner
	successes int
}

func (b *base) core() *base { return b }

// run runs one exchange and checks the proposal of the implementation
// under test against what the earlier exchanges left it with.
func (b *base) run(id *identity, tc tactic) (*exchange, error) {
	x, err := b.self.exchange(b.ctx, id, tc)
	if err != nil {
		return nil, err
	}
	b.inspect(x)
	return x, nil
}

// inspect checks what every exchange must show: the proposal, and no rule
// broken by the IUT as a sender.
func (b *base) inspect(x *exchange) {
	b.checkProposal(x)
	for _, v := range x.violations {
		if b.cur != nil {
			b.cur.fail("%s", v)
		}
	}
}

// checkProposal compares the IUT's epoch proposal and the record it names
// with what it must propose if nothing was installed since the exchange
// that last set them, and blames that exchange's case otherwise.
func (b *base) checkProposal(x *exchange) {
	e, fp, ok := x.peerProposal()
	if !ok {
		return
	}
	st := &x.id.iut
	if st.known && (e != st.epoch || !bytes.Equal(fp, st.fp)) {
		msg := fmt.Sprintf("the next exchange proposed epoch %d naming %s; want epoch %d naming %s",
			e, fpText(fp), st.epoch, fpText(st.fp))
		if st.failed {
			msg += " (the failed exchange installed a key or a record)"
		} else {
			msg += " (the key or record of the exchange was not kept)"
		}
		if st.by != nil {
			st.by.fail("%s", msg)
		} else if b.cur != nil {
			b.cur.fail("%s", msg)
		}
	}
	st.known, st.epoch, st.fp, st.by, st.failed = true, e, fp, b.cur, false
}

func fpText(fp []byte) string {
	if len(fp) == 0 {
		return "no record"
	}
	if len(fp) > 8 {
		return "record " + hex.EncodeToString(fp[2:8])
	}
	return "record " + hex.EncodeToString(fp)
}

// honestWith runs an exchange that must succeed, for the case res.
func (b *base) honestWith(id *identity, tc tactic, res *Result) (*exchange, *protocol.Result, error) {
	x, err := b.run(id, tc)
	if err != nil {
		return nil, nil, err
	}
	r, err := b.succeeded(x, res)
	if err != nil {
		return x, nil, err
	}
	return x, r, nil
}

// succeeded checks that x succeeded, records its result in the identity's
// state and ends the stream.
func (b *base) succeeded(x *exchange, res *Result) (*protocol.Result, error) {
	if !x.m.Done() || x.machineErr != nil {
		b.self.end(x, false)
		return nil, fmt.Errorf("exchange failed: %s", describeFailure(x))
	}
	r := x.m.Result()
	r.Wipe()
	x.id.epoch = r.Epoch + 1
	if r.Received {
		x.id.known = r.PeerRecord
	}
	x.id.iut = iutState{known: true, epoch: r.Epoch + 1, fp: x.own.Fingerprint[:], by: res}
	b.successes++
	return r, nil
}

// describeFailure says how an exchange that should have succeeded failed.
func describeFailure(x *exchange) string {
	if st, ok := x.status(); ok {
		return fmt.Sprintf("the implementation aborted with %v", st)
	}
	if x.machineErr != nil {
		return fmt.Sprintf("the suite's side rejected a notice: %v", x.machineErr)
	}
	if x.endErr != nil {
		return fmt.Sprintf("the stream ended: %v", x.endErr)
	}
	return "the exchange did not finish"
}

// judge checks a broken exchange: the IUT must end it with the expected
// status (or a bare reset) and nothing after its ABORT.
func (b *base) judge(x *exchange, w want, res *Result) {
	if x.machineErr != nil && strings.HasPrefix(x.machineErr.Error(), "suite:") {
		res.fail("the suite could not build the case: %v", x.machineErr)
		return
	}
	x.drain()
	st, have := x.status()
	if errors.Is(x.endErr, errNoAnswer) {
		res.fail("no ABORT and no reset: %v (it accepted the notice?)", x.endErr)
		return
	}
	switch {
	case w.quiet && have:
		// Neither an ABORT nor a status in the reset: V48.
		res.fail("answered the ABORT with status %v", st)
	case w.quiet:
	case have && st != w.status:
		res.fail("status %v, want %v", st, w.status)
	case !have:
		res.note("reset without a status")
	}
	if errors.Is(x.endErr, io.EOF) {
		res.fail("ended the stream with a close, not a reset")
	}
	if x.afterAbort > 0 {
		res.fail("sent %d notices after its ABORT", x.afterAbort)
	}
}

// runCase runs c with identity id and fills res.
func (b *base) runCase(c *testCase, id *identity, res *Result) {
	b.cur = res
	if err := b.self.prior(c, id); err != nil {
		res.fail("setup exchange: %v", err)
		return
	}
	if c.setup != nil {
		if err := c.setup(b.self, id); err != nil {
			res.fail("setup: %v", err)
			return
		}
	}
	if c.script != nil {
		if err := c.script(b.self, id); err != nil {
			res.fail("%v", err)
		}
		return
	}
	tc := c.tc(b.self.iut())
	x, err := b.run(id, tc)
	if err != nil {
		res.fail("%v", err)
		return
	}
	if c.want.ok {
		r, err := b.succeeded(x, res)
		if err != nil {
			res.fail("%v", err)
			return
		}
		if c.check != nil {
			if err := c.check(x, r); err != nil {
				res.fail("%v", err)
			}
		}
		if c.want.quiet {
			b.afterAbort(x, res)
			return
		}
		b.self.end(x, true)
		return
	}
	if x.skip != "" {
		res.Outcome, res.Detail = Skip, x.skip
		b.self.end(x, false)
		x.id.iut.by, x.id.iut.failed = res, true
		return
	}
	b.refused(x, c.want, res)
}

// refused checks an exchange the IUT must refuse with w, and ends it.
func (b *base) refused(x *exchange, w want, res *Result) {
	if x.m.Done() && x.machineErr == nil && x.endErr == nil {
		// The suite's side finished; the IUT must not have.
		x.drain()
		switch {
		case errors.Is(x.endErr, errNoAnswer):
			res.fail("the implementation completed the exchange (no ABORT, no reset within %v)", x.wait)
			b.self.end(x, false)
			return
		case errors.Is(x.endErr, io.EOF) && len(x.aborts) == 0:
			res.fail("the implementation completed the exchange (and closed the stream)")
			b.self.end(x, false)
			x.id.iut.by, x.id.iut.failed = res, true
			return
		}
	}
	b.judge(x, w, res)
	b.self.end(x, false)
	// The failed exchange installed nothing; the next one tells.
	x.id.iut.by, x.id.iut.failed = res, true
}

// afterAbort checks the IUT after the suite's ABORT that followed its
// completion: no answer, and the stream ends (or stays idle).
func (b *base) afterAbort(x *exchange, res *Result) {
	for {
		f, err := x.read()
		if err != nil {
			break
		}
		switch decode(f).Type {
		case pb.Notice_ABORT:
			res.fail("answered the ABORT with ABORT %v", decode(f).GetAbort().GetStatus())
		case pb.Notice_START:
			// The IUT's next exchange, written before it read the
			// ABORT: it runs again on a new stream (section 2).
			res.note("the next START came on the aborted stream")
		}
		if decode(f).Type == pb.Notice_START {
			break
		}
	}
	if st, ok := x.status(); ok && len(x.aborts) == 0 {
		res.fail("answered the ABORT with status %v in its reset", st)
	}
	b.self.end(x, false)
}

// ---------------------------------------------------------------------------
// The implementation under test as responder.

// RunResponder runs the cases against a responder at target: the suite
// initiates every exchange. The context bounds the whole run.
func RunResponder(ctx context.Context, target peer.AddrInfo, opts Options) (*Report, error) {
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	start := time.Now()
	rep := &Report{Role: "responder", Peer: addrText(target)}
	for _, c := range selected(protocol.Responder, opts) {
		res := newResult(c)
		rep.Results = append(rep.Results, res)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.slow && !opts.Slow {
			res.Outcome, res.Detail = Skip, "waits for the phase timeout: run with --slow"
			continue
		}
		t0 := time.Now()
		r, id, err := newResponderRun(ctx, target, opts)
		if err != nil {
			return nil, err
		}
		r.runCase(c, id, res)
		if res.Outcome != Fail && (!c.want.ok || c.want.quiet) && c.script == nil {
			// The implementation must still work with this identity, and
			// show that it installed nothing (or, after completion, that
			// it kept its key).
			if err := r.honest(id); err != nil {
				res.fail("the next exchange: %v", err)
			}
		}
		r.close()
		if res.Outcome == "" {
			res.Outcome = Pass
		}
		res.Millis = time.Since(t0).Milliseconds()
		progress(opts, res)
	}
	rep.count()
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func newResult(c *testCase) *Result {
	return &Result{Case: c.name, Section: c.section, Summary: c.summary, Expect: expectOf(c)}
}

func progress(opts Options, res *Result) {
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "%s %s %s\n", strings.ToUpper(res.Outcome), res.Case, res.Detail)
	}
}

func addrText(ai peer.AddrInfo) string {
	addrs, err := peer.AddrInfoToP2pAddrs(&ai)
	if err != nil || len(addrs) == 0 {
		return ai.ID.String()
	}
	return addrs[0].String()
}

type responderRun struct {
	base
	h      host.Host
	target peer.ID
}

// newResponderRun starts a host with a fresh identity for one case.
func newResponderRun(ctx context.Context, target peer.AddrInfo, opts Options) (*responderRun, *identity, error) {
	sk, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.NoListenAddrs)
	if err != nil {
		return nil, nil, fmt.Errorf("start the suite's host: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, opts.Wait)
	defer cancel()
	if err := h.Connect(cctx, target); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("connect to %s: %w", addrText(target), err)
	}
	id, err := newIdentity(h, sk, protocol.DefaultSuites())
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	// A fresh identity: the IUT holds nothing of it.
	id.iut = iutState{known: true, epoch: 1}
	r := &responderRun{base: base{ctx: ctx, opts: opts}, h: h, target: target.ID}
	r.self = r
	return r, id, nil
}

func (r *responderRun) close() { _ = r.h.Close() }

func (r *responderRun) iut() protocol.Role { return protocol.Responder }

func (r *responderRun) exchange(ctx context.Context, id *identity, tc tactic) (*exchange, error) {
	s, err := r.newStream(ctx)
	if err != nil {
		return nil, err
	}
	return r.exchangeOn(ctx, id, s, protocol.NewFrameReader(s), tc)
}

func (r *responderRun) newStream(ctx context.Context) (network.Stream, error) {
	cctx, cancel := context.WithTimeout(ctx, r.opts.Wait)
	defer cancel()
	s, err := r.h.NewStream(cctx, r.target, protocol.ID)
	if err != nil {
		return nil, fmt.Errorf("open a %s stream: %w", protocol.ID, err)
	}
	return s, nil
}

func (r *responderRun) exchangeOn(ctx context.Context, id *identity, s network.Stream, fr *protocol.FrameReader, tc tactic) (*exchange, error) {
	x, err := newExchange(id, s, fr, protocol.Initiator, tc, r.opts.Wait)
	if err != nil {
		_ = s.Reset()
		return nil, err
	}
	x.run(ctx, nil)
	return x, nil
}

// end closes the stream after a success as section 2 asks: half-close,
// wait for the IUT's end of stream, close.
func (r *responderRun) end(x *exchange, success bool) {
	if !success {
		_ = x.s.Reset()
		return
	}
	_ = x.s.CloseWrite()
	_ = x.s.SetReadDeadline(time.Now().Add(x.wait))
	_, err := io.Copy(io.Discard, io.LimitReader(x.s, protocol.MaxNoticeSize))
	if err != nil && r.cur != nil {
		r.cur.note("the stream ended with %v after the suite closed it, not with a close", err)
	}
	_ = x.s.Close()
}

func (r *responderRun) prior(c *testCase, id *identity) error {
	for i := 0; i < c.prior; i++ {
		if err := r.honest(id); err != nil {
			return err
		}
	}
	return nil
}

func (r *responderRun) honest(id *identity) error {
	x, _, err := r.honestWith(id, tactic{}, r.cur)
	if err != nil {
		return err
	}
	r.end(x, true)
	return nil
}

// keptStream runs three exchanges on one stream (section 2).
func keptStream(rn runner, id *identity) error {
	r, ok := rn.(*responderRun)
	if !ok {
		return errors.New("runs only against a responder")
	}
	s, err := r.newStream(r.ctx)
	if err != nil {
		return err
	}
	fr := protocol.NewFrameReader(s)
	for i := 0; i < 3; i++ {
		x, err := r.exchangeOn(r.ctx, id, s, fr, tactic{})
		if err != nil {
			return err
		}
		r.inspect(x)
		if _, err := r.succeeded(x, r.cur); err != nil {
			return fmt.Errorf("exchange %d on the stream: %w", i+1, err)
		}
	}
	r.end(&exchange{s: s, wait: r.opts.Wait}, true)
	return nil
}

// newStreams runs two exchanges, each on a new stream closed after it.
func newStreams(rn runner, id *identity) error {
	for i := 0; i < 2; i++ {
		if err := rn.honest(id); err != nil {
			return fmt.Errorf("exchange %d: %w", i+1, err)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// The implementation under test as initiator.

// Listener is the suite waiting for an initiator to test.
type Listener struct {
	h       host.Host
	id      *identity
	inbound chan inbound
	wait    time.Duration
}

type inbound struct {
	s     network.Stream
	fr    *protocol.FrameReader
	first []byte
	at    time.Time // when the first notice arrived
}

// Listen starts the suite's host on addrs (default /ip4/127.0.0.1/tcp/0)
// with a fresh identity.
func Listen(addrs ...string) (*Listener, error) {
	if len(addrs) == 0 {
		addrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	sk, err := newKey()
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.ListenAddrStrings(addrs...))
	if err != nil {
		return nil, fmt.Errorf("start the suite's host: %w", err)
	}
	id, err := newIdentity(h, sk, protocol.DefaultSuites())
	if err != nil {
		h.Close()
		return nil, err
	}
	l := &Listener{h: h, id: id, inbound: make(chan inbound, 16), wait: DefaultWait}
	h.SetStreamHandler(protocol.ID, func(s network.Stream) { l.accept(s, protocol.NewFrameReader(s)) })
	return l, nil
}

// Addrs are the addresses to dial, with /p2p/<the suite's peer ID>.
func (l *Listener) Addrs() []ma.Multiaddr {
	addrs, _ := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: l.h.ID(), Addrs: l.h.Addrs()})
	return addrs
}

// Close stops the suite's host.
func (l *Listener) Close() error { return l.h.Close() }

// accept reads the first frame of an exchange the IUT opens (on a new
// stream, or the next one on a stream it kept) and queues it.
func (l *Listener) accept(s network.Stream, fr *protocol.FrameReader) {
	// A stream may stay idle until the implementation's next exchange.
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Minute))
	f, err := fr.ReadFrame(protocol.MaxNoticeSize)
	if err != nil {
		if errors.Is(err, io.EOF) {
			_ = s.Close()
		} else {
			_ = s.Reset()
		}
		return
	}
	select {
	case l.inbound <- inbound{s: s, fr: fr, first: f, at: time.Now()}:
	default:
		_ = s.Reset() // more exchanges at once than the suite runs
	}
}

// Expected is how many exchanges the implementation under test must open
// at least for the cases opts selects (setup exchanges may add some).
func Expected(opts Options) int {
	n := 1 // the final check
	for _, c := range selected(protocol.Initiator, opts) {
		if !c.slow || opts.Slow {
			n++
		}
	}
	return n
}

// Run answers the exchanges the implementation under test opens, one case
// each (and setup exchanges where a case needs them), until every selected
// case ran. It waits at most timeout for each exchange.
func (l *Listener) Run(ctx context.Context, opts Options, timeout time.Duration) (*Report, error) {
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	l.wait = opts.Wait
	start := time.Now()
	rep := &Report{Role: "initiator", Peer: "dialled " + l.h.ID().String()}
	r := &initiatorRun{base: base{ctx: ctx, opts: opts}, l: l, timeout: timeout}
	r.self = r
	final := &testCase{name: "happy/usable-after-the-cases", section: "§2", roles: iutInitiator,
		summary: "an honest exchange after the other cases: it succeeds, and shows what the last case left",
		tc:      is(tactic{}), want: succeeds()}
	for _, c := range append(selected(protocol.Initiator, opts), final) {
		res := newResult(c)
		rep.Results = append(rep.Results, res)
		switch {
		case r.fatal != nil:
			res.Outcome, res.Detail = Skip, "not run: "+r.fatal.Error()
			continue
		case c.slow && !opts.Slow:
			res.Outcome, res.Detail = Skip, "waits for the phase timeout: run with --slow"
			continue
		case c.fresh && r.successes > 0:
			res.Outcome, res.Detail = Skip, "needs a first contact: an exchange succeeded before it"
			continue
		}
		t0 := time.Now()
		r.runCase(c, l.id, res)
		if r.fatal != nil {
			res.fail("%v", r.fatal)
		}
		if res.Outcome == "" {
			res.Outcome = Pass
		}
		res.Millis = time.Since(t0).Milliseconds()
		progress(opts, res)
	}
	rep.count()
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

type initiatorRun struct {
	base
	l       *Listener
	timeout time.Duration
	// fatal ends the run: the implementation stopped dialling.
	fatal error
	// notBefore: exchanges whose first notice arrived earlier are reset
	// unanswered (the IUT started them before a record it holds expired).
	notBefore time.Time
}

func (r *initiatorRun) iut() protocol.Role { return protocol.Initiator }

// prior brings the identity's state to what c needs: with one identity for
// the run, "prior exchanges" means records known on both sides, the IUT's
// of the current record; and a case whose record must travel gets a new
// one if the IUT holds the current one.
func (r *initiatorRun) prior(c *testCase, id *identity) error {
	holds := func() bool { return id.iut.known && bytes.Equal(id.iut.fp, id.key.Fingerprint[:]) }
	if c.prior > 0 {
		for i := 0; i < 2 && !(id.known != nil && holds()); i++ {
			if err := r.honest(id); err != nil {
				return err
			}
		}
	}
	if c.ownKey && holds() {
		return id.rotate(nil)
	}
	return nil
}

func (r *initiatorRun) next(ctx context.Context) (inbound, error) {
	t := time.NewTimer(r.timeout)
	defer t.Stop()
again:
	select {
	case in := <-r.l.inbound:
		if in.at.Before(r.notBefore) {
			_ = in.s.Reset()
			goto again
		}
		return in, nil
	case <-t.C:
		r.fatal = fmt.Errorf("the implementation opened no exchange within %v", r.timeout)
	case <-ctx.Done():
		r.fatal = ctx.Err()
	}
	return inbound{}, r.fatal
}

func (r *initiatorRun) exchange(ctx context.Context, id *identity, tc tactic) (*exchange, error) {
	in, err := r.next(ctx)
	if err != nil {
		return nil, err
	}
	x, err := newExchange(id, in.s, in.fr, protocol.Responder, tc, r.opts.Wait)
	if err != nil {
		_ = in.s.Reset()
		return nil, err
	}
	x.run(ctx, in.first)
	return x, nil
}

// end keeps a stream after a success: the IUT may run its next exchange on
// it (section 2).
func (r *initiatorRun) end(x *exchange, success bool) {
	if !success || x.closed {
		_ = x.s.Reset()
		return
	}
	go r.l.accept(x.s, x.fr)
}

func (r *initiatorRun) honest(id *identity) error {
	x, _, err := r.honestWith(id, tactic{}, r.cur)
	if err != nil {
		return err
	}
	r.end(x, true)
	return nil
}
