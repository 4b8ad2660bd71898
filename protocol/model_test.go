package protocol_test

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/pb"
)

// The Promela model of the exchange (protocol/model, see its README.md) is
// tied to the code here: its states, notice types and transitions must be
// those of protocol.States and protocol.Transitions, which Machine.Consume
// runs on; and spin must verify it by full searches.

const modelFile = "model/p2pkex.pml"

// pipelineFile models pipelined commits on a kept stream (node/pipeline.go):
// one initiator's exchanges one after another, the responder's background
// commits, failing commits, resets and a SIGKILL (README.md, "The pipeline
// model").
const pipelineFile = "model/pipeline.pml"

// modelRow is one "ACCEPT" line of the model.
type modelRow struct {
	line                    int
	role                    protocol.Role // 0: both
	from, notice, guard, to string
}

func (r modelRow) key() string { return rowKey(r.role, r.from, r.notice, r.guard, r.to) }

func rowKey(role protocol.Role, from, notice, guard, to string) string {
	who := "both"
	if role != 0 {
		who = role.String()
	}
	return fmt.Sprintf("%s: %s %s [%s] -> %s", who, from, notice, guard, to)
}

var (
	reMtype = regexp.MustCompile(`(?m)^mtype:(\w+)\s*=\s*\{([^}]*)\};`)
	reRow   = regexp.MustCompile(`^\s*:: ACCEPT\((\w+),\s*(\w+),\s*(.+?)\) -> COVER; /\* to: ([\w ]+?) \*/\s*$`)
	reCover = regexp.MustCompile(`\bCOVER\b`)
)

type model struct {
	src     string
	mtypes  map[string][]string
	rows    []modelRow
	covered []int // lines with a COVER step
}

func loadModel(t *testing.T) *model {
	t.Helper()
	b, err := os.ReadFile(modelFile)
	require.NoError(t, err)
	m := &model{src: string(b), mtypes: map[string][]string{}}
	for _, g := range reMtype.FindAllStringSubmatch(m.src, -1) {
		for _, name := range strings.Split(g[2], ",") {
			m.mtypes[g[1]] = append(m.mtypes[g[1]], strings.TrimSpace(name))
		}
	}
	section := -1 // the role of the rows in the current proctype or inline; -1: none
	for i, line := range strings.Split(m.src, "\n") {
		switch {
		case strings.HasPrefix(line, "proctype Initiator("):
			section = int(protocol.Initiator)
		case strings.HasPrefix(line, "proctype Responder("):
			section = int(protocol.Responder)
		case strings.HasPrefix(line, "inline consume23("):
			section = 0
		case strings.HasPrefix(line, "proctype "), strings.HasPrefix(line, "inline "),
			strings.HasPrefix(line, "init "), strings.HasPrefix(line, "ltl "):
			section = -1
		}
		if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "#define") ||
			strings.HasPrefix(trimmed, "/*") || strings.HasPrefix(trimmed, "*") {
			continue // definitions and comments
		}
		if reCover.MatchString(line) {
			m.covered = append(m.covered, i+1)
		}
		if !strings.Contains(line, "ACCEPT(") {
			continue
		}
		g := reRow.FindStringSubmatch(line)
		require.NotNil(t, g, "%s:%d: a row must read\n\t:: ACCEPT(From, NOTICE, guard) -> COVER; /* to: To... */\ngot %q", modelFile, i+1, line)
		require.NotEqual(t, -1, section, "%s:%d: a row outside Initiator, Responder and consume23", modelFile, i+1)
		guard := g[3]
		if guard == "true" {
			guard = ""
		}
		m.rows = append(m.rows, modelRow{line: i + 1, role: protocol.Role(section),
			from: g[1], notice: g[2], guard: guard, to: strings.Join(strings.Fields(g[4]), " ")})
	}
	return m
}

// TestModelMatchesTable: the model has exactly the machine's states, notice
// types and transition table. Removing, adding or changing a row of the
// table (which Consume runs on) fails here until the model follows.
func TestModelMatchesTable(t *testing.T) {
	m := loadModel(t)

	require.Equal(t, protocol.States(), m.mtypes["state"], "mtype:state must list protocol.States() in order")

	var notices []string
	for n := int32(1); ; n++ {
		name, ok := pb.Notice_Type_name[n]
		if !ok {
			break
		}
		notices = append(notices, name)
	}
	require.Len(t, notices, len(pb.Notice_Type_name)-1, "notice types must be numbered 1..n")
	require.Equal(t, notices, m.mtypes["notice"], "mtype:notice must list pb.Notice_Type without UNSPECIFIED, in order")

	var want []string
	seen := map[string]bool{}
	for _, tr := range protocol.Transitions() {
		require.Contains(t, protocol.States(), tr.From)
		for _, to := range tr.To {
			require.Contains(t, protocol.States(), to)
		}
		id := rowKey(tr.Role, tr.From, tr.Notice.String(), tr.Guard, "")
		require.False(t, seen[id], "table row %s twice", id)
		seen[id] = true
		want = append(want, rowKey(tr.Role, tr.From, tr.Notice.String(), tr.Guard, strings.Join(tr.To, " ")))
	}
	var got []string
	for _, r := range m.rows {
		got = append(got, r.key())
	}
	slices.Sort(want)
	slices.Sort(got)
	require.Equal(t, want, got, "the model's ACCEPT rows must be protocol.Transitions()")
}

// TestModelPipelineNotices: pipeline.pml's notice types are the wire's.
func TestModelPipelineNotices(t *testing.T) {
	b, err := os.ReadFile(pipelineFile)
	require.NoError(t, err)
	g := reMtype.FindStringSubmatch(string(b))
	require.NotNil(t, g, "%s: no mtype", pipelineFile)
	require.Equal(t, "notice", g[1])
	for _, name := range strings.Split(g[2], ",") {
		_, ok := pb.Notice_Type_value[strings.TrimSpace(name)]
		require.True(t, ok, "%s: %q is no pb.Notice_Type", pipelineFile, strings.TrimSpace(name))
	}
}

// unreachableRows are table rows no honest peer makes a machine take, so no
// search of the model takes them either; the machine accepts them from a
// misbehaving peer (misbehave_test.go).
var unreachableRows = []string{
	// An initiator sends START before anything else; it never aborts first.
	rowKey(protocol.Responder, "stNew", "ABORT", "", "stFailed"),
}

// spinRun is one verification of the model.
type spinRun struct {
	name    string
	file    string   // the model; modelFile if empty
	defines []string // for spin
	ltl     bool     // check the LTL property (acceptance cycles, weak fairness) instead of safety
	big     bool     // compile pan with optimisation: it pays for large searches only
	edit    func(src string) string
	// violated, for a mutant, is the assertion it must violate (as pan
	// prints it); empty: any error will do.
	violated string
}

// The searches .ci/run makes (through go test). README.md explains the
// configurations and records their figures.
var spinRuns = []spinRun{
	{name: "exchange/safety", defines: []string{"-DCALLERS=1", "-DCHOICES=1", "-DPARTS=1"}},
	{name: "exchange/ltl", defines: []string{"-DCALLERS=1", "-DCHOICES=1", "-DPARTS=1"}, ltl: true},
	{name: "simultaneous/safety", big: true},
	{name: "simultaneous/ltl", ltl: true, big: true},
	{name: "simultaneous-choices/safety", defines: []string{"-DCHOICES=1", "-DMAXFAULTS=0"}},
	{name: "simultaneous-choices/ltl", defines: []string{"-DCHOICES=1", "-DMAXFAULTS=0"}, ltl: true, big: true},
	// Calls after an exchange ended, and a key for every caller with a
	// fair channel (findings 1 to 3). LATE=2 makes every check of LATE and
	// one more, on the same states, so LATE alone is not searched; the
	// fair-channel search is a part of LATE=2's, but cheap, and its
	// counterexamples short.
	{name: "late/safety", defines: []string{"-DLATE=2"}, big: true},
	{name: "late-fair/safety", defines: []string{"-DLATE=2", "-DMAXFAULTS=0"}},
	// Pipelined commits (pipeline.pml): three exchanges, each with or
	// without a record, two faults of any kind; four exchanges, one fault.
	{name: "pipeline/safety", file: pipelineFile, defines: []string{"-DCHOICES=1", "-DMAXFAULTS=2"}, big: true},
	{name: "pipeline-4/safety", file: pipelineFile, defines: []string{"-DN=4", "-DCHOICES=1"}, big: true},
}

// TestModelSpin verifies the model with spin: no assertion violation, no
// invalid end state, no acceptance cycle, in a complete search.
func TestModelSpin(t *testing.T) {
	requireSpin(t)
	for _, r := range spinRuns {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			out := runSpin(t, r, false)
			requireVerified(t, r, out)
		})
	}
}

// TestModelCoverage checks that the searches take every row of the table
// (but the unreachable ones) and every branch of the tie-break.
func TestModelCoverage(t *testing.T) {
	requireSpin(t)
	m := loadModel(t)
	covered := map[int]bool{}
	for _, r := range []spinRun{
		{name: "exchange", defines: []string{"-DCALLERS=1", "-DCHOICES=1", "-DPARTS=1"}},
		{name: "simultaneous-fair", defines: []string{"-DMAXFAULTS=0"}},
	} {
		out := runSpin(t, r, true)
		requireVerified(t, r, out)
		for _, g := range regexp.MustCompile(`(?m)^cover (\d+)$`).FindAllStringSubmatch(out, -1) {
			n, err := strconv.Atoi(g[1])
			require.NoError(t, err)
			covered[n] = true
		}
	}
	skip := map[int]bool{}
	for _, r := range m.rows {
		if slices.Contains(unreachableRows, r.key()) {
			skip[r.line] = true
			require.False(t, covered[r.line], "%s:%d: %s is taken; drop it from unreachableRows", modelFile, r.line, r.key())
		}
	}
	require.Len(t, skip, len(unreachableRows), "unreachableRows names rows the model lacks")
	lines := strings.Split(m.src, "\n")
	for _, n := range m.covered {
		if !skip[n] && !covered[n] {
			t.Errorf("%s:%d: no search takes this step:\n\t%s", modelFile, n, strings.TrimSpace(lines[n-1]))
		}
	}
}

// TestModelMutants checks that the searches catch a broken model: each
// mutant must fail verification.
func TestModelMutants(t *testing.T) {
	requireSpin(t)
	replace := func(old, new string) func(string) string {
		return func(src string) string {
			require.Equal(t, 1, strings.Count(src, old), "mutant: %q must occur once in the model", old)
			return strings.Replace(src, old, new, 1)
		}
	}
	for _, r := range []spinRun{{
		// Install on the peer's part, before its confirmation arrives.
		name:    "install-before-confirmation",
		defines: []string{"-DCALLERS=1", "-DMAXFAULTS=0"},
		edit:    replace("sentPR = true;\n\t\tassert(st == stPhase3)", "sentPR = true;\n\t\tst = stDone"),
	}, {
		// Derive the key from the own part only: the sides disagree.
		name:    "key-from-own-part",
		defines: []string{"-DCALLERS=1", "-DMAXFAULTS=0", "-DPARTS=1"},
		edit:    replace("key = 1 + 4*e + (part ^ a);", "key = 1 + 4*e + part;"),
	}, {
		// No tie-break: the larger peer ID may refuse too.
		name:    "no-tie-break",
		defines: []string{"-DMAXFAULTS=0"},
		edit:    replace("slot[1-e] == 1 && RUNNING(1-e) && 1-e < e -> COVER;", "slot[1-e] == 1 && RUNNING(1-e) -> COVER;"),
	}, {
		// The same, for the LTL property alone (pan -A ignores assertions).
		name:    "no-tie-break/ltl",
		defines: []string{"-DMAXFAULTS=0"},
		ltl:     true,
		edit:    replace("slot[1-e] == 1 && RUNNING(1-e) && 1-e < e -> COVER;", "slot[1-e] == 1 && RUNNING(1-e) -> COVER;"),
	}, {
		// The node's slot logic before the fix of finding 3: the tie-break
		// applies until the outbound run succeeded (slot.ran), so a late
		// START from the peer whose responder finished ours is refused
		// with CONFLICT, and the peer's caller gets no key.
		name:     "late-fair/old-tie-break-ran",
		defines:  []string{"-DLATE=2", "-DMAXFAULTS=0", "-DOLD_TIEBREAK_RAN"},
		violated: "((faults>0)||((callerKey[0]!=0)&&(callerKey[1]!=0)))",
	}, {
		// Before the fix of finding 1: the tie-break applies to any
		// outbound slot; one gives way after its run succeeded and
		// installed (finding 2's assertion).
		name:     "late/old-tie-break",
		defines:  []string{"-DLATE", "-DOLD_TIEBREAK"},
		violated: "((actEp[0]!=actEp[1])||(actKey[0]==actKey[1]))",
	}, {
		// Before the fix of finding 2, with the tie-break of finding 1's
		// fix: an outbound exchange that gave way between its run's end and
		// slot.ran still installs. (With the node's tie-break, slot.answered,
		// OLD_INSTALL alone passes: no run that gave way ever succeeds.)
		name:     "late/old-install",
		defines:  []string{"-DLATE", "-DOLD_TIEBREAK_RAN", "-DOLD_INSTALL"},
		violated: "((actEp[0]!=actEp[1])||(actKey[0]==actKey[1]))",
	}, {
		// Pipelined commits (pipeline.pml). The responder sends the next
		// exchange's PART_RECEIVED while the commit before it may still be
		// in flight: no hold (heldStream).
		name:     "pipeline/no-hold",
		file:     pipelineFile,
		edit:     replace(pipelineHold, pipelineNoHold),
		violated: pipelineP1,
	}, {
		// The same, seen from the initiator alone (P4): it installs an
		// exchange whose predecessor the responder does not hold durably.
		name:     "pipeline/no-hold/initiator",
		file:     pipelineFile,
		edit:     edits(replace(pipelineHold, pipelineNoHold), onlyProperty(t, "P4")),
		violated: pipelineP4,
	}, {
		// The same, seen in the end state alone (P5): a fault leaves the
		// initiator two exchanges ahead.
		name:     "pipeline/no-hold/end",
		file:     pipelineFile,
		edit:     edits(replace(pipelineHold, pipelineNoHold), onlyProperty(t, "P5")),
		violated: pipelineP5,
	}, {
		// A failed commit neither resets the stream nor fails the hold:
		// the next exchange goes on after it.
		name:     "pipeline/failed-commit-unnoticed",
		file:     pipelineFile,
		edit:     edits(replace(pipelineFailCheck, ""), replace(pipelineFailReset, ":: !res -> skip")),
		violated: pipelineP1,
	}, {
		// The same, seen from the initiator alone (P4).
		name:     "pipeline/failed-commit-unnoticed/initiator",
		file:     pipelineFile,
		edit:     edits(replace(pipelineFailCheck, ""), replace(pipelineFailReset, ":: !res -> skip"), onlyProperty(t, "P4")),
		violated: pipelineP4,
	}, {
		// The store answers a commit before it syncs it; in the end state
		// alone (P5), only a SIGKILL between the two shows it (with
		// -DKILL=0 it passes).
		name: "pipeline/answered-before-synced",
		file: pipelineFile,
		edit: edits(
			replace(":: durEp = commitEp[c]; durC = c; durable[c] = true; res = true /* synced: durable */", ":: res = true; report(c, res)"),
			replace("\t\treport(c, res) }", "\t\tif :: res -> durEp = commitEp[c]; durC = c; durable[c] = true :: else -> report(c, res) fi }"),
			onlyProperty(t, "P5")),
		violated: pipelineP5,
	}, {
		// An exchange on another stream does not wait for the peer's slot
		// (claimInbound): it runs beside the exchange whose commit is in
		// flight, and the results come out of order.
		name:     "pipeline/other-stream-does-not-wait",
		file:     pipelineFile,
		edit:     replace(":: atomic { !crashed && (slot == 0 || (prev != 0 && slot == prev)) ->", ":: atomic { !crashed ->"),
		violated: "(c==(reported+1))",
	}} {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			out := runSpin(t, r, false)
			n, ok := panErrors(out)
			require.True(t, ok, "pan printed no error count:\n%s", out)
			require.NotZero(t, n, "the search missed the broken model:\n%s", out)
			if r.ltl {
				require.Contains(t, out, "acceptance cycle")
			}
			if r.violated != "" {
				require.Contains(t, out, "assertion violated "+r.violated, "the broken model failed otherwise")
			}
		})
	}
}

// Parts of pipeline.pml the mutants change.
const (
	// The hold on the responder's PART_RECEIVED (heldStream.Write).
	pipelineHold = `	:: pred != 0 ->
		do
		:: returned[pred] -> break
		:: crashed -> goto gone
		od;
		if
		:: !ok[pred] -> goto failed
		:: else -> skip
		fi
	:: else -> skip
	fi;`
	// The hold's check that the commit before succeeded (prevInstalled).
	pipelineFailCheck = `		if
		:: !ok[pred] -> goto failed
		:: else -> skip
		fi
`
	// complete's reset of the stream after a failed commit.
	pipelineFailReset = ":: !res -> reset[s] = true; resetR[s] = true"
	// The hold taken away.
	pipelineNoHold = "\t:: else -> skip\n\tfi;"

	// The assertions the mutants violate, as pan prints them.
	pipelineP1 = "((pred==0)||(returned[pred]&&(ok[pred]||reset[s])))"
	pipelineP4 = "((predOf[c]==0)||durable[predOf[c]])"
	pipelineP5 = "(lost<=faults)"
)

// edits applies fs in order.
func edits(fs ...func(string) string) func(string) string {
	return func(src string) string {
		for _, f := range fs {
			src = f(src)
		}
		return src
	}
}

// reProperty is an assertion of pipeline.pml with the property it checks.
var reProperty = regexp.MustCompile(`assert\((.*)\)(;?) /\* (P\d) \*/`)

// onlyProperty turns off every assertion of pipeline.pml that checks
// another property than p (the untagged ones, that an honest stream
// delivers the notices in order, stay), so that a mutant shows that p
// alone catches it.
func onlyProperty(t *testing.T, p string) func(string) string {
	return func(src string) string {
		require.Contains(t, src, "/* "+p+" */")
		return reProperty.ReplaceAllStringFunc(src, func(a string) string {
			g := reProperty.FindStringSubmatch(a)
			if g[3] == p {
				return a
			}
			return "skip" + g[2] + " /* " + g[3] + " off */"
		})
	}
}

func requireSpin(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("spin's searches run without -race; the race detector has nothing to check in them")
	}
	if _, err := exec.LookPath("spin"); err != nil {
		t.Skip("spin not installed: apt-get install spin")
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler for spin's verifier: apt-get install gcc")
	}
}

// runSpin generates, compiles and runs the verifier for r in a temporary
// directory and returns pan's output. Cover enables the COVER printfs.
// Pan stops at the first error.
func runSpin(t *testing.T, r spinRun, cover bool) string {
	t.Helper()
	file := cmp.Or(r.file, modelFile)
	src, err := os.ReadFile(file)
	require.NoError(t, err)
	model := string(src)
	if r.edit != nil {
		model = r.edit(model)
	}
	dir := t.TempDir()
	name := filepath.Base(file)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(model), 0o644))
	run := func(name string, args ...string) string {
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
		return string(out)
	}
	run("spin", append(append([]string{}, r.defines...), "-a", name)...)
	cflags := []string{"-w", "-O0", "-DCOLLAPSE"}
	if r.big {
		cflags[1] = "-O1"
	}
	if cover {
		cflags = append(cflags, "-DPRINTF")
	}
	panArgs := []string{"-m10000", "-w22"}
	if r.ltl {
		cflags = append(cflags, "-DNFAIR=4")
		panArgs = append(panArgs, "-a", "-f")
		if r.edit != nil {
			panArgs = append(panArgs, "-A")
		}
	} else {
		cflags = append(cflags, "-DSAFETY", "-DNOCLAIM")
	}
	run("cc", append(cflags, "-o", "pan", "pan.c")...)
	// pan exits 0 whether or not it found an error; the output says.
	return run("./pan", panArgs...)
}

var (
	reErrors = regexp.MustCompile(`errors: (\d+)`)
	reStats  = regexp.MustCompile(`(?s)State-vector (\d+) byte, depth reached (\d+).*?\n\s*([\d.e+]+) states, stored.*?\n\s*([\d.e+]+) transitions.*?([\d.]+)\s+total actual memory usage.*?pan: elapsed time ([\d.e+]+) seconds`)
)

func panErrors(out string) (int, bool) {
	g := reErrors.FindStringSubmatch(out)
	if g == nil {
		return 0, false
	}
	n, err := strconv.Atoi(g[1])
	return n, err == nil
}

// requireVerified fails unless pan completed its search without an error,
// and logs its figures.
func requireVerified(t *testing.T, r spinRun, out string) {
	t.Helper()
	n, ok := panErrors(out)
	require.True(t, ok, "pan printed no error count:\n%s", out)
	require.Zero(t, n, "spin found an error; replay it with spin -t -p %s %s:\n%s", strings.Join(r.defines, " "), filepath.Base(cmp.Or(r.file, modelFile)), out)
	require.NotRegexp(t, `(?m)^pan:\d+: `, out, "an error report (assertion violated, invalid end state, acceptance cycle)")
	for _, bad := range []string{"Search not completed", "max search depth too small", "out of memory", "pan: error"} {
		require.NotContains(t, out, bad, "\n%s", out)
	}
	if r.ltl {
		require.Regexp(t, `never claim\s+\+ \(finish\)`, out)
		require.Regexp(t, `acceptance\s+cycles\s+\+ \(fairness enabled\)`, out)
	} else {
		require.Regexp(t, `assertion violations\s+\+`, out)
		require.Regexp(t, `invalid end states\s+\+`, out)
	}
	if g := reStats.FindStringSubmatch(out); g != nil {
		t.Logf("%s: %s states stored, %s transitions, depth %s, state vector %s bytes, %s MB, %s s",
			r.name, g[3], g[4], g[2], g[1], g[5], g[6])
	} else {
		t.Logf("%s:\n%s", r.name, out)
	}
}
