package main

import (
	"bytes"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// errUsage marks an error as a usage error (exit 2).
var errUsage = errors.New("usage")

// usageError is err as a usage or configuration error (exit 2), its text
// unchanged: errors.Is(usageError{err}, errUsage).
type usageError struct{ error }

func (u usageError) Is(target error) bool { return target == errUsage }
func (u usageError) Unwrap() error        { return u.error }

// readInput reads a file named on the command line (an argument or an
// option's value). One that can't be read is a usage error (exit 2), the
// same in every subcommand; what is read and found invalid is not.
func readInput(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{err}
	}
	return b, nil
}

// checkInput is readInput for a file read later (an image, hashed as a
// stream): one named on the command line that can't be opened is a usage
// error.
func checkInput(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return usageError{err}
	}
	return f.Close()
}

// newFlags makes a FlagSet that reports to e.stderr and doesn't exit.
func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: imagetrust %s %s\n", name, synopsis)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 { // a command without options (inspect) prints no empty heading
			fmt.Fprint(e.stderr, "\noptions:\n")
			fs.PrintDefaults()
		}
		if daemonCommands[name] {
			fmt.Fprint(e.stderr, daemonExitHelp)
		}
	}
	return fs
}

// daemonCommands are the commands that log in to Keystone at start.
var daemonCommands = map[string]bool{"sync": true, "crl": true, "proxy": true}

// daemonExitHelp ends the -h of sync, crl and proxy: the exit statuses
// they share (--once's own are in its option's text).
const daemonExitHelp = `
exit status: 2 usage or configuration error; 78 at start, Keystone refused
the credentials (HTTP 401): fix them before starting again, each start is
one more failed login towards a lockout (systemd: RestartPreventExitStatus=78);
1 any other failure.
`

// parseArgs parses flags that may come before, between or after the
// positional arguments, and returns the positional ones. It checks their
// count against min and max (max < 0: no limit).
func parseArgs(fs *flag.FlagSet, args []string, minN, maxN int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minN || (maxN >= 0 && len(pos) > maxN) {
		fs.Usage()
		return nil, errUsage
	}
	return pos, nil
}

// usageExit returns the exit code for a flag-parsing error.
func usageExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// passphrase returns a passphrase source: the first line of a file, or a
// prompt on the terminal.
func passphrase(e *env, file string) pki.Passphrase {
	return func() ([]byte, error) {
		if file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[:i]
			}
			return bytes.TrimRight(b, "\r"), nil
		}
		f, ok := e.stdin.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return nil, errors.New("the key is encrypted: give --key-pass-file (no terminal to prompt on)")
		}
		fmt.Fprint(e.stderr, "Key passphrase: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		return pw, err
	}
}

// parseHash reads a --hash value.
func parseHash(s string) (crypto.Hash, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "")) {
	case "sha256":
		return crypto.SHA256, nil
	case "sha384":
		return crypto.SHA384, nil
	case "sha512":
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("--hash %q: use sha256, sha384 or sha512 (MD5 and SHA-1 are refused)", s)
}

// minutesError is parseWhen's refusal of a duration in minutes ("6m"); a
// command with a shorter bound than six months (listing) says its own.
type minutesError string

func (m minutesError) Error() string {
	return fmt.Sprintf("%q: m is minutes, not months: write days (180d for six months) or hours (2160h)", string(m))
}

// parseWhen reads an absolute time (RFC 3339 or YYYY-MM-DD) or a duration
// from now ("90d", "2160h", "1y"; Go's units but for a last one of minutes,
// "6m", which a publisher means as months).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.Add(24*time.Hour - time.Second), nil
	}
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'y') {
		v, err := strconv.Atoi(s[:n-1])
		if err == nil && v > 0 {
			if s[n-1] == 'd' {
				return now.AddDate(0, 0, v), nil
			}
			return now.AddDate(v, 0, 0), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		// "6m" reads as six months to a Registrar and as six minutes to
		// Go: an image (or a CRL) that expires within minutes of being
		// issued. Minutes are never what --expires or --next-update mean.
		if strings.HasSuffix(s, "m") {
			return time.Time{}, minutesError(s)
		}
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a date (2027-01-31, RFC 3339) nor a duration (90d, 1y, 2160h)", s)
}

func fail(e *env, code int, format string, a ...any) int {
	fmt.Fprintf(e.stderr, "imagetrust: "+format+"\n", a...)
	return code
}

var _ io.Writer = (*bytes.Buffer)(nil)
