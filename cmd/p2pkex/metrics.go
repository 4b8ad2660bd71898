package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The daemon's metrics endpoint (--metrics-addr): the default Prometheus
// registry, where libp2p and the node record.
var metricsAt atomic.Pointer[string]

// metricsURL is the URL the daemon serves metrics at, or "".
func metricsURL() string {
	if p := metricsAt.Load(); p != nil {
		return *p
	}
	return ""
}

// checkMetricsAddr rejects a --metrics-addr that is not HOST:PORT.
func checkMetricsAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("--metrics-addr %q: want HOST:PORT, such as 127.0.0.1:9464", addr)
	}
	return nil
}

// serveMetrics serves /metrics on addr (HOST:PORT; port 0 picks one).
func serveMetrics(addr string) (stop func(), err error) {
	if err := checkMetricsAddr(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	u := "http://" + l.Addr().String() + "/metrics"
	metricsAt.Store(&u)
	return func() {
		metricsAt.Store(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
