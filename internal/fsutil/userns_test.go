package fsutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// envUserNSCheck makes the test binary, run by
// TestUnmappedOwnerInUserNamespace in a user namespace, check the path it
// names and print the error.
const envUserNSCheck = "IMAGETRUST_FSUTIL_USERNS_CHECK"

// TestUnmappedOwnerInUserNamespace: a file whose owner a user namespace
// does not map shows there as the kernel's overflow uid (65534, nobody);
// the check, run in such a namespace (this test binary, started in a new
// user namespace that maps uids 0-999 as themselves), refuses it saying
// that the owner is unmapped (the overflow uid, /proc/sys/kernel/
// overflowuid) and what to do, not only "owned by nobody ... chown root",
// which cannot work from in there. Outside, the same file is refused as
// another user's, as before. Needs root (chown, a uid map).
func TestUnmappedOwnerInUserNamespace(t *testing.T) {
	if p := os.Getenv(envUserNSCheck); p != "" {
		fmt.Print("RESULT:", CheckNotWritableByOthers(p))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, a uid map)")
	}
	setAccounts(t, "", "")
	tr := tree{t: t, top: t.TempDir()}
	p := tr.file("d/ca.pem", 0o644, 0o755)
	if err := os.Lchown(p, 2000, 2000); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
		var st syscall.Stat_t
		if err := syscall.Stat(d, &st); err != nil || st.Uid >= 1000 {
			t.Skipf("%s is not owned by a uid the namespace maps (%v)", d, err)
		}
	}
	// outside: another user's file
	if err := CheckNotWritableByOthers(p); err == nil || !strings.Contains(err.Error(), "owned by uid 2000") || strings.Contains(err.Error(), "not mapped") {
		t.Fatalf("outside the namespace: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnmappedOwnerInUserNamespace$")
	cmd.Env = append(os.Environ(), envUserNSCheck+"="+p)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1000}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1000}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "RESULT:") {
		t.Skipf("cannot start a process in a new user namespace here: %v\n%s", err, out)
	}
	got := string(out)
	t.Logf("in the namespace: %s", got)
	for _, want := range []string{
		"RESULT:owned by nobody (uid 65534)",
		"its owner is not mapped into this process's user namespace",
		"overflow uid 65534 (/proc/sys/kernel/overflowuid",
		"map the file's owner into this user namespace",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("in the namespace: no %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "RESULT:<nil>") || strings.Contains(got, "chown root") {
		t.Errorf("in the namespace: accepted, or told to chown root:\n%s", got)
	}
}

// TestUnmappedOwnerMessages: what the error says of an owner that is the
// overflow uid, by the namespace's uid map: the initial namespace's (all
// uids: nobody is nobody, no word of mapping), one that does not map the
// overflow uid (unmapped, for sure), one that maps it too (rootless
// podman's 0-65535: maybe unmapped).
func TestUnmappedOwnerMessages(t *testing.T) {
	dir := t.TempDir()
	saved := UserNSFiles
	t.Cleanup(func() { UserNSFiles = saved })
	UserNSFiles.OverflowUID = filepath.Join(dir, "overflowuid")
	UserNSFiles.UIDMap = filepath.Join(dir, "uid_map")
	if err := os.WriteFile(UserNSFiles.OverflowUID, []byte("65534\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		uidMap string
		uid    uint32
		want   string // "" for no explanation
	}{
		{"         0          0 4294967295\n", 65534, ""},
		{"         0       1000          1\n         1     100000      65533\n", 65534, "its owner is not mapped into this process's user namespace"},
		{"         0     100000      65536\n", 65534, "which is also what this process's user namespace shows for an owner it does not map"},
		{"         0     100000      65536\n", 1000, ""},
	} {
		if err := os.WriteFile(UserNSFiles.UIDMap, []byte(c.uidMap), 0o644); err != nil {
			t.Fatal(err)
		}
		got := unmappedOwner(c.uid)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("uid %d, map %q: %q, want %q", c.uid, c.uidMap, got, c.want)
		}
	}
}
