// Package netnstest makes network namespaces for tests that must not touch
// the machine's own network, such as mDNS, which announces to every host on
// a link.
//
// Pair creates two namespaces joined by a veth pair whose ends exist only
// inside them, with the private addresses 10.77.0.1/24 and 10.77.0.2/24,
// and removes both namespaces when the test ends, passed or failed. It
// skips the test, with one line saying why, unless the test runs as root
// with ip (iproute2) on the PATH. Run commands inside with Command.
package netnstest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Addresses of the two ends of a Pair, without the /24.
const (
	AddrA = "10.77.0.1"
	AddrB = "10.77.0.2"
)

var seq atomic.Uint32

// staleName matches the namespaces this package makes: "p2pkex-", the
// process ID of the test that made them, then a letter or "-".
var staleName = regexp.MustCompile(`^p2pkex-([0-9]+)[a-z-]`)

var sweepOnce sync.Once

// removeStale deletes the namespaces that a test process which no longer
// runs left behind: t.Cleanup removes them when a test passes, fails or
// panics, but not when the process is killed (go test -timeout, SIGKILL).
// Namespaces of a process that still runs, such as a test running beside
// this one, are left alone.
func removeStale(ip string) {
	sweepOnce.Do(func() {
		out, err := exec.Command(ip, "netns", "list").Output()
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			m := staleName.FindStringSubmatch(f[0])
			if m == nil {
				continue
			}
			if _, err := os.Stat("/proc/" + m[1]); err == nil {
				continue
			}
			exec.Command(ip, "netns", "delete", f[0]).Run()
		}
	})
}

// Pair creates two namespaces joined by a veth pair and returns their names:
// AddrA is in the first, AddrB in the second. Both have lo up and the veth
// up with multicast on. They are removed in t.Cleanup.
func Pair(t testing.TB) (nsA, nsB string) {
	t.Helper()
	ip := IP(t)
	// Unique per process and call; interface names stay within 15 bytes.
	id := fmt.Sprintf("%d%c", os.Getpid(), 'a'+rune(seq.Add(1)%26))
	nsA, nsB = "p2pkex-"+id+"-a", "p2pkex-"+id+"-b"
	vethA, vethB := "pk"+id+"a", "pk"+id+"b"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{nsA, nsB} {
		run("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput(); err != nil {
				t.Errorf("remove network namespace %s: %v: %s", ns, err, out)
			}
		})
	}
	// Made inside the namespaces: no interface ever appears outside them.
	run("link", "add", vethA, "netns", nsA, "type", "veth", "peer", "name", vethB, "netns", nsB)
	for _, s := range []struct{ ns, dev, addr string }{{nsA, vethA, AddrA}, {nsB, vethB, AddrB}} {
		run("-n", s.ns, "link", "set", "lo", "up")
		run("-n", s.ns, "addr", "add", s.addr+"/24", "dev", s.dev)
		run("-n", s.ns, "link", "set", s.dev, "multicast", "on", "up")
	}
	return nsA, nsB
}

// IP returns the path of ip, skipping the test unless it runs as root with
// ip available.
func IP(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs ip (iproute2) to create network namespaces")
	}
	removeStale(ip)
	return ip
}

// Command returns a command that runs name with args inside namespace ns.
func Command(t testing.TB, ns, name string, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(IP(t), append([]string{"netns", "exec", ns, name}, args...)...)
}

// Proc is a started command whose standard output is read line by line.
type Proc struct {
	name   string
	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
	done   chan struct{}
	stdin  io.WriteCloser
	cmd    *exec.Cmd
}

// Start starts cmd (standard output and error must be unset) and stops it
// when the test ends: it closes its standard input, sends SIGINT and kills
// it after 15 s. The output is logged when the test failed or runs with -v.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{name: name, done: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin, p.cmd = stdin, cmd
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.stderr.Write(b)
	})
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		cmd.Wait()
		if t.Failed() || testing.Verbose() {
			p.mu.Lock()
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", name, strings.Join(p.lines, "\n"), name, p.stderr.String())
			p.mu.Unlock()
		}
	})
	return p
}

// Await waits up to timeout for an output line that starts with prefix
// and ends with suffix, and returns what is between.
func (p *Proc) Await(t testing.TB, timeout time.Duration, prefix, suffix string) string {
	t.Helper()
	return p.AwaitFrom(t, 0, timeout, prefix, suffix)
}

// Mark returns the number of output lines read so far, for AwaitFrom.
func (p *Proc) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// AwaitFrom is Await over the lines after the first mark ones (see Mark):
// it waits for a line printed after the mark was taken.
func (p *Proc) AwaitFrom(t testing.TB, mark int, timeout time.Duration, prefix, suffix string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.lines[min(mark, len(p.lines)):] {
			if strings.HasPrefix(l, prefix) && strings.HasSuffix(l, suffix) && len(l) >= len(prefix)+len(suffix) {
				p.mu.Unlock()
				return l[len(prefix) : len(l)-len(suffix)]
			}
		}
		p.mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("%s ended without printing %q...%q", p.name, prefix, suffix)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q...%q within %v", p.name, prefix, suffix, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Send writes one line to the command's standard input.
func (p *Proc) Send(t testing.TB, format string, args ...any) {
	t.Helper()
	if _, err := fmt.Fprintf(p.stdin, format+"\n", args...); err != nil {
		t.Fatalf("write to %s: %v", p.name, err)
	}
}

// Kill kills the command at once (SIGKILL), as a crash or power cut would.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
