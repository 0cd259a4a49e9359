// Command imagetrust publishes, verifies, mirrors and gates signed virtual
// machine images for OpenStack sites (the HEPiX image distribution model).
//
// Each subcommand lives in its own file and registers itself with register.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0
	exitInvalid = 1 // verification failed / operation failed
	exitUsage   = 2 // usage or configuration error
	exitExpired = 3 // valid but expired (verify only)
	exitRefused = 4 // sync --once: a clean pass that refused a bundle for a reason other than expiry or revocation; crl --once: a clean run that refused a CRL (a fetch that failed included), used a stale one, found a revoked image still being written into Glance, or had a change undone by a concurrent Glance write
	// exitCredentials: sync, crl and proxy, at start: Keystone refused the
	// configured credentials (HTTP 401 to the login). EX_CONFIG of
	// sysexits.h, and used for nothing else, so that the systemd units
	// stop on it (RestartPreventExitStatus=78): each restart would be one
	// more failed login towards a Keystone lockout.
	exitCredentials = 78
)

// env is what a subcommand gets from main: its streams and the process context.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// getenv reads the environment (tests replace it).
	getenv func(string) string
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

var commands = map[string]command{}

// register adds a subcommand; called from the init functions of its file.
func register(name, summary string, run func(ctx context.Context, e *env, args []string) int) {
	commands[name] = command{name: name, summary: summary, run: run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: imagetrust COMMAND [options] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'imagetrust COMMAND -h' for a command's options.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	handleOtherSignals()
	code := run(ctx, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// processLogger is the process's logger once a command made it
// (newLogger), for handleOtherSignals' lines.
var processLogger atomic.Pointer[slog.Logger]

// handleOtherSignals catches, for the process's life:
//
//   - SIGPIPE. Go's default kills the process when a write to its stdout
//     or stderr finds the reader gone (`imagetrust crl --once
//     --report-json | head -1`): exit 141 once the run had done its work,
//     whatever its outcome, and a --dry-run's plan cut short. Caught, the
//     write fails (EPIPE: the rest of the output is lost) and the run's
//     own exit status stands: it is what cron and scripts must act on.
//     Nothing is logged (stderr may be the closed end). Daemons give it
//     back (daemonSIGPIPE).
//   - SIGUSR1, which is what many sites' logrotate configurations and
//     habits send to make a daemon reopen its log. Go's runtime already
//     catches and ignores it when nothing asks for it (os/signal: "Other
//     signals will be caught but no action will be taken"), so it never
//     killed imagetrust; but silently, and a daemon that logs to stderr
//     (journald) has nothing to reopen: a WARN now says it was received
//     and ignored, and that SIGHUP is the reload.
func handleOtherSignals() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGPIPE, syscall.SIGUSR1)
	go func() {
		for sig := range c {
			if sig != syscall.SIGUSR1 {
				continue
			}
			if l := processLogger.Load(); l != nil {
				l.Warn("SIGUSR1 ignored: there is no log file to reopen (logs go to stderr); SIGHUP reloads the configuration")
			}
		}
	}()
}

// daemonSIGPIPE gives a long-running daemon (sync and crl without --once
// or --dry-run, the proxy) back Go's default for SIGPIPE, which
// handleOtherSignals catches for the runs that end: a daemon whose stderr
// (its log, the proxy's audit lines) has lost its reader dies at its next
// line, and systemd restarts it with a working one, instead of going on
// deciding with nothing logged. Under systemd that takes a journald whose
// stream broke; journald keeps its streams across its own restarts.
func daemonSIGPIPE() { signal.Reset(syscall.SIGPIPE) }

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "imagetrust: unknown command %q\n", args[0])
		usage(e.stderr)
		return exitUsage
	}
	return c.run(ctx, e, args[1:])
}

// newLogger builds the one logger of the process.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	var l *slog.Logger
	if format == "json" {
		l = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		l = slog.New(slog.NewTextHandler(w, opts))
	}
	processLogger.Store(l)
	return l
}
