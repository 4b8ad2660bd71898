package main

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestDraw(t *testing.T) {
	in := `{"suite":"MLKEM768X25519","keys":"known","concurrency":4,"exchanges_per_s":700,"p50_ms":5,"p99_ms":9,"floor_rate_per_s":1500,"gomaxprocs":2}
{"suite":"MLKEM768X25519","keys":"known","concurrency":1,"exchanges_per_s":400,"p50_ms":2.4,"p99_ms":4,"floor_rate_per_s":1500,"gomaxprocs":2}`
	runs, err := readRunsFrom(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].Concurrency != 1 {
		t.Fatalf("runs not sorted by concurrency: %+v", runs)
	}
	var out strings.Builder
	if err := drawRuns(&out, runs, ""); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(out.String()))
	for {
		_, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("not well-formed XML: %v\n%s", err, out.String())
		}
	}
	for _, want := range []string{"<svg", "polyline", "exchange time", "throughput"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}
