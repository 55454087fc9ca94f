package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// DefaultListen is the address nvmectl serves metrics on unless told
// otherwise: loopback only, the counters are not for the whole network.
const DefaultListen = "127.0.0.1:9111"

// Handler returns the HTTP handler of Serve: /metrics from gatherer and
// /healthz from health (nil: always healthy). Any goroutine.
func Handler(gatherer prometheus.Gatherer, health func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Serve listens on addr (host:port; port 0 picks one) and serves Handler
// until ctx ends, then shuts the server down (waiting up to 5 s for
// requests in progress) and returns nil. Errors: listening, or the server
// failing. Any goroutine; it blocks.
func Serve(ctx context.Context, addr string, gatherer prometheus.Gatherer, health func() error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen: %w", err)
	}
	return ServeListener(ctx, ln, gatherer, health)
}

// ServeListener is Serve on a listener the caller opened (to learn the
// port before serving). It closes ln.
func ServeListener(ctx context.Context, ln net.Listener, gatherer prometheus.Gatherer, health func() error) error {
	srv := &http.Server{
		Handler:           Handler(gatherer, health),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("metrics: shut down %s: %w", ln.Addr(), err)
	}
	return nil
}

// Healthy returns a health function for Serve: nil when every controller
// is ready, else an error naming each one that is not and its state. names
// label the controllers (nil: "controller N"). Any goroutine.
func Healthy(names []string, ctrls ...*nvme.Controller) func() error {
	return func() error {
		var bad []string
		for i, c := range ctrls {
			if st := c.State(); st != nvme.StateReady {
				name := fmt.Sprintf("controller %d", i)
				if i < len(names) {
					name = names[i]
				}
				bad = append(bad, fmt.Sprintf("%s is %s", name, st))
			}
		}
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, ", "))
		}
		return nil
	}
}
