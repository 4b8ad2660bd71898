package main

import (
	"math"
	"runtime/metrics"
)

// schedSampler reads, between two samples, how long goroutines waited to
// run once they were ready (the runtime's /sched/latencies histogram) and
// what share of the process's CPU the garbage collector took. Both say
// whether the process is starved: an exchange's phase 1 is three notices,
// each of which must wait its turn on the nodes' goroutines.
type schedSampler struct {
	samples []metrics.Sample
	last    []uint64 // the latency histogram's counts at the last sample
	lastGC  float64
	lastCPU float64
}

func newSchedSampler() *schedSampler {
	s := &schedSampler{samples: []metrics.Sample{
		{Name: "/sched/latencies:seconds"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
	}}
	s.read()
	return s
}

// schedFigures are the figures of one interval.
type schedFigures struct {
	// P50Ms, P99Ms: the time a ready goroutine waited to run, in
	// milliseconds (upper bounds of the histogram's buckets); -1 when no
	// goroutine was scheduled.
	P50Ms, P99Ms float64
	// GCShare: the garbage collector's share of the CPU time the runtime
	// counted (its estimate, idle time excluded).
	GCShare float64
}

// read takes the interval since the last read.
func (s *schedSampler) read() schedFigures {
	metrics.Read(s.samples)
	var f schedFigures
	if s.samples[0].Value.Kind() == metrics.KindFloat64Histogram {
		h := s.samples[0].Value.Float64Histogram()
		delta := make([]uint64, len(h.Counts))
		var total uint64
		for i, c := range h.Counts {
			if i < len(s.last) {
				delta[i] = c - s.last[i]
			} else {
				delta[i] = c
			}
			total += delta[i]
		}
		s.last = append(s.last[:0], h.Counts...)
		f.P50Ms, f.P99Ms = ms(histQuantile(h.Buckets, delta, total, 0.50)), ms(histQuantile(h.Buckets, delta, total, 0.99))
	}
	if s.samples[1].Value.Kind() == metrics.KindFloat64 && s.samples[2].Value.Kind() == metrics.KindFloat64 {
		gc, cpu := s.samples[1].Value.Float64(), s.samples[2].Value.Float64()
		if d := cpu - s.lastCPU; d > 0 {
			f.GCShare = (gc - s.lastGC) / d
		}
		s.lastGC, s.lastCPU = gc, cpu
	}
	return f
}

// ms converts seconds to milliseconds, keeping -1 (none) as it is.
func ms(s float64) float64 {
	if s < 0 {
		return s
	}
	return s * 1000
}

// histQuantile is the upper bound of the bucket that holds quantile q of
// counts (buckets has one more entry than counts); -1 without counts.
func histQuantile(buckets []float64, counts []uint64, total uint64, q float64) float64 {
	if total == 0 {
		return -1
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= want {
			hi := buckets[i+1]
			if math.IsInf(hi, 1) {
				hi = buckets[i]
			}
			return hi
		}
	}
	return buckets[len(buckets)-1]
}
