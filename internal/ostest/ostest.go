// Package ostest gives tests a real Keystone and Glance (and optionally
// nova-api with placement) running on 127.0.0.1, started once per test binary
// by the scripts in tests/openstack.
//
// Use it from TestMain so that the stack stops when the binary exits:
//
//	func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		c := ostest.Start(t, ostest.Options{})
//		img := c.ImageClient(t, "mirror")
//		...
//	}
//
// Environment:
//   - IMAGETRUST_OPENSTACK_STATE: STATE_DIR of a stack already started with
//     tests/openstack/start.sh; it is reused and never stopped by the tests.
//   - IMAGETRUST_SKIP_OPENSTACK=1: skip (instead of fail) the tests that need
//     the stack when its Debian packages are not installed.
//   - IMAGETRUST_OPENSTACK_KEEP=1: keep the stack's state directory (logs,
//     databases) after the binary exits.
//   - IMAGETRUST_OPENSTACK_STRICT=1 (tests/run-tests.sh, so `make test`,
//     sets it): a reused stack that lacks Cinder fails the tests that ask
//     for it instead of skipping them.
package ostest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variable names understood by this package.
const (
	// EnvState names the STATE_DIR of an already running stack to reuse.
	EnvState = "IMAGETRUST_OPENSTACK_STATE"
	// EnvSkip, set to 1, turns "packages not installed" into a skip.
	EnvSkip = "IMAGETRUST_SKIP_OPENSTACK"
	// EnvKeep, set to 1, keeps the state directory of a stack this package
	// started.
	EnvKeep = "IMAGETRUST_OPENSTACK_KEEP"
	// EnvStrict, set to 1, makes a reused stack without Cinder a failure of
	// the tests that want it, not a skip.
	EnvStrict = "IMAGETRUST_OPENSTACK_STRICT"
)

// startTimeout bounds start.sh; it normally takes 12 s (26 s with nova).
const startTimeout = 5 * time.Minute

// Options choose what the stack runs besides Keystone and Glance.
type Options struct {
	// WithNova also runs placement-api and nova-api.
	WithNova bool
	// WithCinder also runs cinder-api (the API alone: no scheduler, no
	// cinder-volume). A reused stack (IMAGETRUST_OPENSTACK_STATE) without
	// it skips the test, unless IMAGETRUST_OPENSTACK_STRICT=1.
	WithCinder bool
	// TokenExpiration, in seconds, is Keystone's [token] expiration
	// (start.sh's IMAGETRUST_TOKEN_EXPIRATION); 0 is Keystone's default, an
	// hour. Only StartPrivate takes it: Start's shared stack keeps the
	// default, since other tests' clients need not outlive their tokens.
	TokenExpiration int
	// LockoutAttempts is Keystone's [security_compliance]
	// lockout_failure_attempts (start.sh's IMAGETRUST_LOCKOUT_ATTEMPTS): a
	// user is locked out for half an hour after that many failed logins in
	// a row; 0: never. StartPrivate only, as TokenExpiration.
	LockoutAttempts int
	// GlanceStorageQuota is Glance's user_storage_quota (start.sh's
	// IMAGETRUST_GLANCE_STORAGE_QUOTA), such as "1MB": the most image data
	// one project may hold; "": none. StartPrivate only, as TokenExpiration.
	GlanceStorageQuota string
	// GlanceLimits, when not nil, runs Glance with Keystone unified limits
	// (use_keystone_limits and [oslo_limit], start.sh's
	// IMAGETRUST_GLANCE_LIMITS): each entry is a registered limit (the
	// default of every project) of service glance, such as
	// "image_count_total": 3; sizes (image_size_total, image_stage_total)
	// are in MiB. Glance's resources not named (all of them for an empty
	// map) are registered at 1000000. SetGlanceLimit sets one for the
	// mirror project. StartPrivate only, as TokenExpiration.
	GlanceLimits map[string]int
	// GlanceImageSizeCap is Glance's image_size_cap in bytes (start.sh's
	// IMAGETRUST_GLANCE_IMAGE_SIZE_CAP): Glance refuses a larger image;
	// 0: Glance's default, 1 TiB. StartPrivate only, as TokenExpiration.
	GlanceImageSizeCap int64
}

// private reports whether opts set anything only StartPrivate takes.
func (opts Options) private() bool {
	return opts.TokenExpiration != 0 || opts.LockoutAttempts != 0 || opts.GlanceStorageQuota != "" ||
		opts.GlanceLimits != nil || opts.GlanceImageSizeCap != 0
}

// Cloud is a running stack.
type Cloud struct {
	// StateDir is the STATE_DIR the stack runs in.
	StateDir string
	// CloudsYAML is the path of its clouds.yaml (clouds admin, mirror, demo).
	CloudsYAML string
	// Env holds the variables of STATE_DIR/env (see tests/openstack/README.md).
	Env map[string]string
	// KeystoneURL is the identity v3 URL, http://127.0.0.1:PORT/v3.
	KeystoneURL string
	// GlanceURL is Glance's root URL, http://127.0.0.1:PORT.
	GlanceURL string
	// NovaURL is nova-api's own compute URL, http://127.0.0.1:PORT/v2.1, or
	// empty when the stack runs without nova.
	NovaURL string
	// CinderURL is cinder-api's block-storage URL, http://127.0.0.1:PORT/v3
	// (the catalog's endpoints add /{project_id}), or empty when the stack
	// runs without cinder.
	CinderURL string

	scripts string
	owned   bool // started by this process, to be stopped by it
	watch   *os.Process
}

var (
	mu         sync.Mutex
	current    *Cloud
	currentErr error // a failed start, reported again to every later caller
	inMain     bool
)

// Main runs the tests and then stops the stack if one was started. Call it
// from TestMain: os.Exit(ostest.Main(m)).
func Main(m *testing.M) int {
	mu.Lock()
	inMain = true
	mu.Unlock()
	code := m.Run()
	removeBinary()
	runAtExit(os.Stderr)
	mu.Lock()
	defer mu.Unlock()
	if current != nil {
		if err := current.stop(code != 0); err != nil {
			fmt.Fprintf(os.Stderr, "ostest: %v\n", err)
		}
		current = nil
	}
	return code
}

var (
	exitMu sync.Mutex
	atExit []func() error
)

// AtExit registers f to run when the tests are done (Main, before it stops
// a stack it started): the clean-up of what outlives a test, such as a
// test process's own projects on a shared stack. The functions run last
// registered first; each one's error is written to stderr and the others
// still run. Best effort: the tests' exit status stays theirs (a failed
// clean-up leaves objects behind, said, and fails no test).
func AtExit(f func() error) {
	exitMu.Lock()
	defer exitMu.Unlock()
	atExit = append(atExit, f)
}

// runAtExit runs and forgets the AtExit functions, unless
// IMAGETRUST_OPENSTACK_KEEP=1 (everything is kept for inspection, said on
// w), writing their errors to w.
func runAtExit(w io.Writer) {
	exitMu.Lock()
	fs := atExit
	atExit = nil
	exitMu.Unlock()
	if len(fs) == 0 {
		return
	}
	if os.Getenv(EnvKeep) == "1" {
		fmt.Fprintf(w, "ostest: %s=1: kept what the tests made on the stack (%d clean-ups not run)\n", EnvKeep, len(fs))
		return
	}
	for i := len(fs) - 1; i >= 0; i-- {
		if err := fs[i](); err != nil {
			fmt.Fprintf(w, "ostest: clean-up after the tests failed (left behind): %v\n", err)
		}
	}
}

// Start returns the stack, starting it on the first call of the test binary.
// It skips t when the packages are missing and IMAGETRUST_SKIP_OPENSTACK=1,
// and fails it when they are missing otherwise or the stack does not start.
// Without Main in TestMain, the stack stops when t ends.
func Start(t testing.TB, opts Options) *Cloud {
	t.Helper()
	if opts.private() {
		t.Fatalf("ostest: Options.TokenExpiration, LockoutAttempts, GlanceStorageQuota, GlanceLimits and GlanceImageSizeCap need a stack of the test's own: use StartPrivate")
	}
	mu.Lock()
	defer mu.Unlock()

	if current != nil {
		needNova := opts.WithNova && current.NovaURL == ""
		needCinder := opts.WithCinder && current.CinderURL == ""
		if (needNova || needCinder) && !current.owned {
			if needNova {
				t.Fatalf("ostest: the stack in %s=%s runs without nova; start it with tests/openstack/start.sh --with-nova", EnvState, current.StateDir)
			}
			noCinder(t, current.StateDir)
		}
		if needNova || needCinder {
			// Restart with what it ran and what t wants; the next Start
			// calls share it.
			opts.WithNova = opts.WithNova || current.NovaURL != ""
			opts.WithCinder = opts.WithCinder || current.CinderURL != ""
			if err := current.stop(false); err != nil {
				t.Fatalf("ostest: %v", err)
			}
			current = nil
		}
	}
	if current != nil {
		return current
	}
	if currentErr != nil {
		t.Fatalf("ostest: %v", currentErr)
	}

	if dir := os.Getenv(EnvState); dir != "" {
		c, err := reuse(dir)
		if err != nil {
			currentErr = err
			t.Fatalf("ostest: %v", err)
		}
		if opts.WithNova && c.NovaURL == "" {
			t.Fatalf("ostest: the stack in %s=%s runs without nova; start it with tests/openstack/start.sh --with-nova", EnvState, dir)
		}
		current = c
		if opts.WithCinder && c.CinderURL == "" {
			noCinder(t, dir)
		}
		return c
	}

	requirePrograms(t, opts)

	c, err := start(opts)
	if err != nil {
		currentErr = err
		t.Fatalf("ostest: %v", err)
	}
	current = c
	if !inMain {
		t.Logf("ostest: no ostest.Main in TestMain: the stack stops when %s ends", t.Name())
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			if current == c {
				if err := c.stop(t.Failed()); err != nil {
					t.Errorf("ostest: %v", err)
				}
				current = nil
			}
		})
	}
	return c
}

// requirePrograms skips t (under IMAGETRUST_SKIP_OPENSTACK=1) or fails it
// when the OpenStack packages opts needs are not installed.
func requirePrograms(t testing.TB, opts Options) {
	t.Helper()
	if missing := missingPrograms(opts); len(missing) > 0 {
		msg := fmt.Sprintf("OpenStack packages not installed (%s not found): run tests/openstack/install.sh (make test does)", strings.Join(missing, ", "))
		if os.Getenv(EnvSkip) == "1" {
			t.Skipf("ostest: %s; skipping because %s=1", msg, EnvSkip)
		}
		t.Fatalf("ostest: %s", msg)
	}
}

// StartPrivate starts a stack of t's own, shared with no other test and
// never the one of IMAGETRUST_OPENSTACK_STATE, which stops when t ends (its
// state kept when t failed, as Main keeps the shared one's). It skips or
// fails t as Start does when the packages are missing.
func StartPrivate(t testing.TB, opts Options) *Cloud {
	t.Helper()
	requirePrograms(t, opts)
	c, err := start(opts)
	if err != nil {
		t.Fatalf("ostest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.stop(t.Failed()); err != nil {
			t.Errorf("ostest: %v", err)
		}
	})
	return c
}

// noCinder ends a test that wants Cinder on a reused stack without it:
// a skip, or a failure under IMAGETRUST_OPENSTACK_STRICT=1.
func noCinder(t testing.TB, dir string) {
	t.Helper()
	msg := fmt.Sprintf("ostest: the stack in %s=%s runs without cinder-api; start it with tests/openstack/start.sh --with-cinder (tests/run-tests.sh does)", EnvState, dir)
	if os.Getenv(EnvStrict) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// missingPrograms lists the programs start.sh needs that are not in PATH.
func missingPrograms(opts Options) []string {
	progs := []string{"keystone-manage", "glance-api", "glance-manage", "uwsgi"}
	if opts.WithNova {
		progs = append(progs, "nova-api", "nova-manage", "placement-manage")
	}
	if opts.WithCinder {
		progs = append(progs, "cinder-api", "cinder-manage")
	}
	var missing []string
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if _, err := os.Stat("/usr/lib/uwsgi/plugins/python3_plugin.so"); err != nil {
		missing = append(missing, "uwsgi-plugin-python3")
	}
	return missing
}

// start runs start.sh in a fresh temporary directory and a watchdog that
// stops the stack should this process die without running Main's cleanup.
func start(opts Options) (*Cloud, error) {
	scripts, err := scriptsDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "imagetrust-openstack-")
	if err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	args := []string{dir}
	if opts.WithNova {
		args = append(args, "--with-nova")
	}
	if opts.WithCinder {
		args = append(args, "--with-cinder")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(scripts, "start.sh"), args...)
	cmd.Env = os.Environ()
	if opts.TokenExpiration > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("IMAGETRUST_TOKEN_EXPIRATION=%d", opts.TokenExpiration))
	}
	if opts.GlanceStorageQuota != "" {
		cmd.Env = append(cmd.Env, "IMAGETRUST_GLANCE_STORAGE_QUOTA="+opts.GlanceStorageQuota)
	}
	if opts.GlanceLimits != nil {
		names := slices.Sorted(maps.Keys(opts.GlanceLimits))
		spec := make([]string, 0, len(names)+1)
		for _, n := range names {
			spec = append(spec, fmt.Sprintf("%s=%d", n, opts.GlanceLimits[n]))
		}
		if len(spec) == 0 {
			// on, every limit at start.sh's default
			spec = append(spec, "image_count_total=1000000")
		}
		cmd.Env = append(cmd.Env, "IMAGETRUST_GLANCE_LIMITS="+strings.Join(spec, " "))
	}
	if opts.GlanceImageSizeCap > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("IMAGETRUST_GLANCE_IMAGE_SIZE_CAP=%d", opts.GlanceImageSizeCap))
	}
	if opts.LockoutAttempts > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("IMAGETRUST_LOCKOUT_ATTEMPTS=%d", opts.LockoutAttempts))
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		_ = runStop(scripts, dir)
		return nil, fmt.Errorf("tests/openstack/start.sh %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	c, err := load(dir)
	if err != nil {
		_ = runStop(scripts, dir)
		return nil, err
	}
	c.scripts = scripts
	c.owned = true
	c.watch = startWatchdog(scripts, dir)
	return c, nil
}

// startWatchdog starts, in its own session, a shell that runs stop.sh once
// this process has exited. Main kills it after stopping the stack itself.
func startWatchdog(scripts, dir string) *os.Process {
	cmd := exec.Command("/bin/sh", "-c",
		`while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" "$3"`,
		"ostest-watchdog", fmt.Sprint(os.Getpid()), filepath.Join(scripts, "stop.sh"), dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil
	}
	p := cmd.Process
	go func() { _ = cmd.Wait() }()
	return p
}

// reuse loads a stack someone else started and checks that Keystone answers.
func reuse(dir string) (*Cloud, error) {
	c, err := load(dir)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", EnvState, dir, err)
	}
	scripts, err := scriptsDir()
	if err == nil {
		c.scripts = scripts
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(c.KeystoneURL)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: Keystone does not answer: %w", EnvState, dir, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s=%s: Keystone answers %s", EnvState, dir, resp.Status)
	}
	return c, nil
}

// load reads STATE_DIR/env.
func load(dir string) (*Cloud, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	env, err := readEnv(filepath.Join(abs, "env"))
	if err != nil {
		return nil, err
	}
	c := &Cloud{
		StateDir:    abs,
		CloudsYAML:  filepath.Join(abs, "clouds.yaml"),
		Env:         env,
		KeystoneURL: env["KEYSTONE_URL"],
		GlanceURL:   env["GLANCE_URL"],
		NovaURL:     env["NOVA_URL"],
		CinderURL:   env["CINDER_URL"],
	}
	if c.KeystoneURL == "" || c.GlanceURL == "" {
		return nil, fmt.Errorf("%s lacks KEYSTONE_URL or GLANCE_URL", filepath.Join(abs, "env"))
	}
	if _, err := os.Stat(c.CloudsYAML); err != nil {
		return nil, fmt.Errorf("clouds.yaml: %w", err)
	}
	return c, nil
}

// readEnv parses the KEY=VALUE lines start.sh writes (values unquoted).
func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the stack's env: %w", err)
	}
	defer f.Close()
	env := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return env, nil
}

// stop stops a stack this process started and removes its state directory,
// unless keep (or IMAGETRUST_OPENSTACK_KEEP=1) asks to keep it for its logs.
// A reused stack is left alone.
func (c *Cloud) stop(keep bool) error {
	if !c.owned {
		return nil
	}
	err := runStop(c.scripts, c.StateDir)
	if c.watch != nil {
		_ = c.watch.Kill()
	}
	if keep || os.Getenv(EnvKeep) == "1" {
		fmt.Fprintf(os.Stderr, "ostest: kept the OpenStack state and logs in %s\n", c.StateDir)
		return err
	}
	if rmErr := os.RemoveAll(c.StateDir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("removing %s: %w", c.StateDir, rmErr))
	}
	return err
}

func runStop(scripts, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(scripts, "stop.sh"), dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tests/openstack/stop.sh %s: %w\n%s", dir, err, out)
	}
	return nil
}

// scriptsDir finds tests/openstack: above the working directory (go test
// runs in the package directory), else relative to this source file.
func scriptsDir() (string, error) {
	var tried []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			p := filepath.Join(d, "tests", "openstack")
			tried = append(tried, p)
			if isFile(filepath.Join(p, "start.sh")) && isFile(filepath.Join(d, "go.mod")) {
				return p, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "..", "..", "tests", "openstack")
		tried = append(tried, p)
		if isFile(filepath.Join(p, "start.sh")) {
			return filepath.Clean(p), nil
		}
	}
	return "", fmt.Errorf("tests/openstack/start.sh not found (looked in %s)", strings.Join(tried, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
