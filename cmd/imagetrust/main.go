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
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0
	exitInvalid = 1 // verification failed / operation failed
	exitUsage   = 2 // usage or configuration error
	exitExpired = 3 // valid but expired (verify only)
	exitRefused = 4 // sync --once: a clean pass that refused a bundle for a reason other than expiry or revocation; crl --once: a clean run that refused a CRL (a fetch that failed included) or found a revoked image still being written into Glance
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
	code := run(ctx, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

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
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
