package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const swarmJSON = `{"tool":"swarm","config":{"nodes":30,"bootstrap":3,"churn_period_s":20,"churn_fraction":0.1,"down_s":5,"k":5,"op_interval_s":2},
"run_s":40,"timeline":[
 {"t_s":10,"dur_s":10,"live_nodes":30,"exchanges_ok":20,"failed_peer_gone":0,"failed_between_live_peers":0,"cpu_cores":0.5,"rss_bytes":2.1e8},
 {"t_s":20,"dur_s":10,"live_nodes":27,"exchanges_ok":70,"failed_peer_gone":5,"failed_between_live_peers":1,"cpu_cores":0.4,"rss_bytes":2.2e8}],
"discoveries":[{"gen":0,"first_s":9,"k_s":9.5},{"gen":0,"first_s":10,"k_s":-1},{"gen":1,"first_s":1.7,"k_s":1.8}],
"churn":{"rounds_t_s":[12]},"verdict":"FAIL: 1 exchanges failed between live peers (timeout 1). 30 nodes, 40 s: exchanges between live peers 70/71; first discovery p50 9 s"}`

func TestDrawSwarm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "swarm.json")
	if err := os.WriteFile(path, []byte(swarmJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := readSwarm([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := drawSwarm(&out, s, ""); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(out.String()))
	for {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
	}
	for _, want := range []string{"discovery", "exchanges over time", "class=\"churn\"", "class=\"live\"", "5 peers (after churn)",
		"exchanges between live peers 70/71", "10% of the nodes away for 5s", ">FAIL: 1 exchanges failed between live peers (timeout 1)<"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "NaN") || strings.Contains(out.String(), "Inf") {
		t.Error("SVG has NaN or Inf coordinates")
	}

	if err := os.WriteFile(path, []byte(`{"tool":"soak"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSwarm([]string{path}); err == nil {
		t.Error("a soak report read as a swarm report")
	}
}
