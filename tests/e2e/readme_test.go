package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADMEPublisherRecipe runs the README's publisher how-to exactly as
// written, as a new user would paste it, in a fresh copy of the repository.
func TestREADMEPublisherRecipe(t *testing.T) {
	r := root(t)
	readme, err := os.ReadFile(filepath.Join(r, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// the first ```sh block that builds the binary
	var script string
	for _, block := range strings.Split(string(readme), "```sh\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		if strings.Contains(body, "go build") {
			script = body
			break
		}
	}
	if script == "" {
		t.Fatal("README has no publisher recipe")
	}
	work := t.TempDir()
	cp := exec.Command("cp", "-r", r+"/.", work)
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README recipe failed: %v\n%s", err, out)
	}
	for _, want := range []string{"VALID until", "serial", "revoked serial"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("recipe output lacks %q:\n%s", want, out)
		}
	}
}
