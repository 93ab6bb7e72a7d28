// Command handler serves one Sluice function behind of-watchdog (mode=http,
// upstream_url=http://127.0.0.1:8082). The template owns main so that
// functions only export Handle.
package main

import (
	"context"
	"errors"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	function "github.com/sluice-ai/sluice"
)

const defaultTimeout = 10 * time.Second

func main() {
	if err := run(); err != nil {
		log.Printf("handler: %v", err)
		os.Exit(1)
	}
}

func run() error {
	read := timeout("read_timeout")
	write := timeout("write_timeout")
	srv := &http.Server{
		Addr:              listenAddr(),
		Handler:           http.HandlerFunc(function.Handle),
		ReadHeaderTimeout: read,
		ReadTimeout:       read,
		WriteTimeout:      write, // also bounds a streamed response: size it to the longest stream
		MaxHeaderBytes:    1 << 20,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process at once
	// In-flight requests may run as long as write_timeout lets them.
	sctx, cancel := context.WithTimeout(context.Background(), write)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}

// listenAddr is where of-watchdog's upstream_url points (the Dockerfile sets
// http://127.0.0.1:8082), so the watchdog and the handler agree by
// construction; `sluice gateway` sets it to run several functions side by
// side.
func listenAddr() string {
	u, err := url.Parse(os.Getenv("upstream_url"))
	if err != nil || u.Host == "" {
		return ":8082"
	}
	return u.Host
}

// timeout reads an of-watchdog style value: whole seconds ("30") or a Go
// duration ("30s"). Unset means the default; a bad value is logged, not fatal,
// so a typo in the stack file cannot stop the function from starting.
func timeout(env string) time.Duration {
	v := os.Getenv(env)
	if v == "" {
		return defaultTimeout
	}
	d, err := time.ParseDuration(v)
	if n, aerr := strconv.Atoi(v); aerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d <= 0 {
		log.Printf("handler: %s=%q is not a positive number of seconds or duration; using %s", env, v, defaultTimeout)
		return defaultTimeout
	}
	return d
}
