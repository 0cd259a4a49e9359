package ostest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// EnvBinary names an imagetrust binary for the tests to run instead of
// building one (for example one built with -race).
const EnvBinary = "IMAGETRUST_TEST_BINARY"

var (
	binOnce sync.Once
	binPath string
	binDir  string // removed by Main
	binErr  error
)

// Binary returns the imagetrust command under test: $IMAGETRUST_TEST_BINARY,
// or cmd/imagetrust built once per test binary (into a directory Main
// removes at the end).
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv(EnvBinary); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "imagetrust-bin-")
		if err != nil {
			binErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "imagetrust")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/imagetrust/imagetrust/cmd/imagetrust").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func removeBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}
