package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/validator"
)

// envBenchChild, set to an upstream URL, makes the test binary run as a
// gate process instead of running tests (see TestMain).
const envBenchChild = "IMAGETRUST_PROXY_BENCH_UPSTREAM"

// envBenchChildProcs, when set, is the GOMAXPROCS of the gate process.
const envBenchChildProcs = "IMAGETRUST_PROXY_BENCH_GOMAXPROCS"

// envBenchChildGOGC, when set, is the GOGC of the gate process.
const envBenchChildGOGC = "IMAGETRUST_PROXY_BENCH_GOGC"

// envBenchChildNetHTTP, when set, makes the gate process serve with
// net/http's server alone (ServerOptions.NetHTTPOnly).
const envBenchChildNetHTTP = "IMAGETRUST_PROXY_BENCH_NETHTTP"

// envBenchChildNoDirect, when set, makes the gate process read and write
// its sockets through Go's net package alone, without directConn
// (directio_linux.go).
const envBenchChildNoDirect = "IMAGETRUST_PROXY_BENCH_NODIRECT"

// envBenchChildTLS, set to "CERTFILE,KEYFILE", gives the gate process a
// TLS listener.
const envBenchChildTLS = "IMAGETRUST_PROXY_BENCH_TLS"

// envBenchChildProfile, set to a file name, makes the gate process write a
// CPU profile there (go tool pprof validator/proxy.test FILE), and the one
// served by net/http alone to FILE.nethttp.
const envBenchChildProfile = "IMAGETRUST_PROXY_BENCH_CPUPROFILE"

// startGateProcess runs the gate in a process of its own (this test binary,
// re-executed), as nginx runs in its own: so that the gate does not share
// its Go runtime (scheduler, GC) with the benchmark's clients and stand-in
// upstream. The gate is built and served as `imagetrust proxy` does it
// (New, then Serve with its http.Server settings), with metrics, but with an
// empty catalogue: the process serves pass-through benchmarks only. env
// is added to its environment (envBenchChildNetHTTP=1, say).
func startGateProcess(tb testing.TB, upstream string, env ...string) string {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), envBenchChild+"="+upstream), env...)
	if v := os.Getenv(envBenchChildProcs); v != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+v)
	}
	if v := os.Getenv(envBenchChildGOGC); v != "" {
		cmd.Env = append(cmd.Env, "GOGC="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		tb.Fatal("the gate process did not start")
		return ""
	}
}

// nobodyDecides is the Decider of the gate process, which judges nothing.
type nobodyDecides struct{}

func (nobodyDecides) DecideBoot(validator.CatalogImage, validator.BootPolicy, time.Time) validator.Decision {
	return validator.Decision{}
}

func (nobodyDecides) DecideTag([]validator.CatalogImage, validator.BootPolicy, time.Time) (validator.Decision, []validator.Decision) {
	return validator.Decision{}, nil
}

// benchChild serves the gate in front of upstream until SIGTERM and prints
// "LISTEN host:port" once it listens.
func benchChild(upstream string) int {
	u, err := url.Parse(upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := New(Options{Upstream: u, Lookup: newMemGlance(), Decider: nobodyDecides{}, MirrorProject: mirrorProject,
		Logger: log, Metrics: m})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if os.Getenv(envBenchChildNoDirect) != "" {
		directIOEnabled = false
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if path := os.Getenv(envBenchChildProfile); path != "" {
		switch {
		case os.Getenv(envBenchChildNetHTTP) != "":
			path += ".nethttp" // (the other gate processes write path and path.nodirect)
		case os.Getenv(envBenchChildNoDirect) != "":
			path += ".nodirect"
		}
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	certFile, keyFile, _ := strings.Cut(os.Getenv(envBenchChildTLS), ",")
	err = Serve(ctx, p, ServerOptions{Listen: "127.0.0.1:0", Logger: log, ShutdownTimeout: 5 * time.Second,
		TLSCert: certFile, TLSKey: keyFile,
		NetHTTPOnly: os.Getenv(envBenchChildNetHTTP) != "",
		Ready:       func(gate, _ net.Addr) { fmt.Printf("LISTEN %s\n", gate) }})
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		// (a shutdown that outlasts its timeout, with the benchmark's
		// clients still connected, is not worth a word)
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
