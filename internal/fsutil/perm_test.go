package fsutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is a uid that is neither root nor the test's user.
const nobody = 65534

// TestCheckNotWritableByOthers builds real trees under t.TempDir() (itself
// 0700 under the sticky /tmp: both pass) and holds the check to OpenSSH's
// StrictModes rule, sticky directories and read-only file systems
// allowed. Cases that give a file to another user (chown) or mount a file
// system run as root only (CI runs as root).
func TestCheckNotWritableByOthers(t *testing.T) {
	// no account files: no group is a user private group here (that rule
	// has TestUserPrivateGroup), so group-writable cases are refused
	// whatever the machine's groups
	setAccounts(t, "", "")
	for _, c := range []struct {
		name string
		root bool // needs root (chown, mount)
		// build makes the tree under top and returns the path to check
		build func(tr tree) string
		// want is a substring of the error ("" for none); %s is top
		want string
	}{
		{name: "ok 0644 in 0755", build: func(tr tree) string { return tr.file("d/f", 0o644, 0o755) }},
		{name: "ok 0600 in 0700", build: func(tr tree) string { return tr.file("d/f", 0o600, 0o700) }},
		{name: "ok a directory 0755", build: func(tr tree) string { tr.file("d/f", 0o644, 0o755); return tr.p("d") }},
		{name: "ok 0644 in a sticky 1777 directory", build: func(tr tree) string { return tr.file("d/f", 0o644, 0o1777) }},
		{name: "ok a relative path with ..", build: func(tr tree) string {
			p := tr.file("d/f", 0o644, 0o755)
			tr.t.Chdir(tr.p("d"))
			_ = p
			return "../d/./f"
		}},
		{name: "ok a chain of links through safe directories", build: func(tr tree) string {
			tr.file("real/f", 0o644, 0o755)
			tr.link("mid/l2", "../real/f", 0o755)
			tr.link("l1", tr.p("mid/l2"), 0)
			return tr.p("l1")
		}},
		{name: "ok a link to a directory on the way", build: func(tr tree) string {
			tr.file("real/certs/f", 0o644, 0o755)
			tr.link("gs", "real", 0)
			return tr.p("gs/certs/f")
		}},
		{name: "fail .. after a link to a directory is taken from the link's target", build: func(tr tree) string {
			// the kernel reads a/l/../x as b/x (b/c/..), not a/x
			tr.file("a/x", 0o644, 0o755)
			tr.file("b/c/y", 0o644, 0o755)
			tr.file("b/x", 0o644, 0o777)
			tr.link("a/l", tr.p("b/c"), 0)
			return tr.top + "/a/l/../x"
		}, want: "directory %[1]s/b is writable by every user (mode 0777"},
		{name: "fail .. after a relative link to a directory", build: func(tr tree) string {
			tr.file("a/x", 0o644, 0o755)
			tr.file("b/c/y", 0o644, 0o755)
			tr.file("b/x", 0o644, 0o777)
			tr.link("a/l", "../b/c", 0)
			return tr.top + "/a/l/../x"
		}, want: "directory %[1]s/b is writable by every user (mode 0777"},
		{name: "fail a relative path from a working directory reached through a link ($PWD)", build: func(tr tree) string {
			// $PWD is a/l (t.Chdir sets it), the kernel's working
			// directory b/c: ../x is b/x
			tr.file("a/x", 0o644, 0o755)
			tr.file("b/c/y", 0o644, 0o755)
			tr.file("b/x", 0o644, 0o777)
			tr.link("a/l", tr.p("b/c"), 0)
			tr.t.Chdir(tr.p("a/l"))
			return "../x"
		}, want: "directory %[1]s/b is writable by every user (mode 0777"},
		{name: "ok .. after a link to a directory, safe where it leads", build: func(tr tree) string {
			tr.file("a/x", 0o644, 0o777)
			tr.file("b/c/y", 0o644, 0o755)
			tr.file("b/x", 0o644, 0o755)
			tr.link("l", tr.p("b/c"), 0)
			return tr.top + "/l/../x"
		}},
		{name: "fail .. after a file", build: func(tr tree) string { tr.file("d/f", 0o644, 0); return tr.top + "/d/f/../f" }, want: "not a directory"},
		{name: "fail file 0666", build: func(tr tree) string { return tr.file("d/f", 0o666, 0o755) },
			want: "writable by every user (mode 0666, owner root, group root); chmod go-w %s/d/f"},
		{name: "fail file 0602", build: func(tr tree) string { return tr.file("d/f", 0o602, 0o755) },
			want: "writable by every user (mode 0602, owner root, group root); chmod o-w %s/d/f"},
		{name: "fail file 0664", build: func(tr tree) string { return tr.file("d/f", 0o664, 0o755) },
			want: "writable by group root (mode 0664, owner root, group root); chmod g-w %s/d/f"},
		{name: "fail its directory 0777", build: func(tr tree) string { return tr.file("d/f", 0o644, 0o777) },
			want: "directory %[1]s/d is writable by every user (mode 0777, owner root, group root): any of them could put another %[1]s/d/f in its place; chmod go-w %[1]s/d"},
		{name: "fail its directory 0775", build: func(tr tree) string { return tr.file("d/f", 0o644, 0o775) },
			want: "directory %[1]s/d is writable by group root (mode 0775"},
		{name: "fail an ancestor 0777 (the CA directory renamed away)", build: func(tr tree) string {
			p := tr.file("gs/certs/f", 0o644, 0o755)
			tr.chmod("gs", 0o777)
			return p
		}, want: "directory %[1]s/gs is writable by every user (mode 0777, owner root, group root): any of them could put another %[1]s/gs/certs in its place; chmod go-w %[1]s/gs"},
		{name: "fail an ancestor 0770", build: func(tr tree) string {
			p := tr.file("a/b/c/f", 0o644, 0o755)
			tr.chmod("a", 0o770)
			return p
		}, want: "directory %[1]s/a is writable by group root (mode 0770"},
		{name: "fail a directory 1777 itself (anyone may add a file)", build: func(tr tree) string {
			tr.file("d/f", 0o644, 0o1777)
			return tr.p("d")
		}, want: "writable by every user (mode 1777, owner root, group root); chmod go-w %s/d"},
		{name: "fail through a link to a file in a 0777 directory", build: func(tr tree) string {
			tr.file("d/f", 0o644, 0o777)
			return tr.link("l", "d/f", 0)
		}, want: "directory %[1]s/d is writable by every user (mode 0777"},
		{name: "fail through a link to a 0666 file", build: func(tr tree) string {
			tr.file("d/f", 0o666, 0o755)
			return tr.link("l", "d/f", 0)
		}, want: "the file it leads to, %s/d/f, is writable by every user (mode 0666"},
		{name: "fail a link in a 0777 directory to a safe file", build: func(tr tree) string {
			tr.file("d/f", 0o644, 0o755)
			return tr.link("open/l", "../d/f", 0o777)
		}, want: "directory %[1]s/open is writable by every user (mode 0777, owner root, group root): any of them could put another %[1]s/open/l in its place"},
		{name: "fail the middle link of a chain in a 0777 directory", build: func(tr tree) string {
			tr.file("real/f", 0o644, 0o755)
			tr.link("mid/l2", "../real/f", 0o777)
			return tr.link("l1", "mid/l2", 0)
		}, want: "directory %[1]s/mid is writable by every user (mode 0777, owner root, group root): any of them could put another %[1]s/mid/l2 in its place"},
		{name: "fail an ancestor of a link's target 0777", build: func(tr tree) string {
			tr.file("open/real/f", 0o644, 0o755)
			tr.chmod("open", 0o777)
			return tr.link("l", "open/real/f", 0)
		}, want: "directory %[1]s/open is writable by every user (mode 0777, owner root, group root): any of them could put another %[1]s/open/real in its place"},
		{name: "fail a link to a directory on the way, in a 0777 directory", build: func(tr tree) string {
			tr.file("real/certs/f", 0o644, 0o755)
			tr.link("open/gs", "../real", 0o777)
			return tr.p("open/gs/certs/f")
		}, want: "directory %[1]s/open is writable by every user (mode 0777"},
		{name: "fail missing", build: func(tr tree) string { return tr.p("none") }, want: "no such file or directory"},
		{name: "fail a link loop", build: func(tr tree) string {
			tr.link("a", "b", 0)
			return tr.link("b", "a", 0)
		}, want: "too many levels of symbolic links"},
		{name: "fail a file on the way", build: func(tr tree) string { tr.file("f", 0o644, 0); return tr.p("f/g") }, want: "not a directory"},

		{name: "fail a file of another user", root: true, build: func(tr tree) string {
			p := tr.file("d/f", 0o644, 0o755)
			tr.chown("d/f", nobody)
			return p
		}, want: "owned by nobody (uid 65534), not root (mode 0644, owner nobody, group root): its owner may change it at will; chown root %s/d/f"},
		{name: "fail an entry of another user in a sticky directory", root: true, build: func(tr tree) string {
			p := tr.file("tmp/d/f", 0o644, 0o755)
			tr.chmod("tmp", 0o1777)
			tr.chown("tmp/d", nobody)
			return p
		}, want: "directory %[1]s/tmp is writable by every user (mode 1777, owner root, group root): any of them could put another %[1]s/tmp/d in its place; chmod go-w %[1]s/tmp, or chown root %[1]s/tmp/d"},
		{name: "ok an entry of root in a sticky directory of root", root: true, build: func(tr tree) string {
			p := tr.file("tmp/d/f", 0o644, 0o755)
			tr.chmod("tmp", 0o1777)
			return p
		}},
		{name: "fail a sticky directory of another user", root: true, build: func(tr tree) string {
			p := tr.file("tmp/d/f", 0o644, 0o755)
			tr.chmod("tmp", 0o1777)
			tr.chown("tmp", nobody)
			return p
		}, want: "directory %[1]s/tmp is owned by nobody (uid 65534), not root (mode 1777, owner nobody, group root): its owner could put another %[1]s/tmp/d in its place; chown root %[1]s/tmp"},
		{name: "fail an ancestor of another user", root: true, build: func(tr tree) string {
			p := tr.file("a/b/f", 0o644, 0o755)
			tr.chown("a", nobody)
			return p
		}, want: "directory %[1]s/a is owned by nobody (uid 65534), not root (mode 0755"},
		{name: "ok 0777 everything on a read-only file system", root: true, build: func(tr tree) string {
			tr.mount("ro", "mode=0777")
			tr.file("ro/d/f", 0o666, 0o777)
			tr.chown("ro/d", nobody)
			tr.remount("ro", "ro")
			return tr.p("ro/d/f")
		}},
		{name: "fail 0777 through a read-only bind mount of a writable file system", root: true, build: func(tr tree) string {
			tr.mount("rw", "mode=0755")
			tr.file("rw/d/f", 0o644, 0o777)
			tr.bind("rw", "view")
			tr.remount("view", "bind,ro")
			return tr.p("view/d/f")
		}, want: "directory %[1]s/view/d is writable by every user (mode 0777"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				t.Skip("needs root (chown, mount)")
			}
			tr := tree{t: t, top: t.TempDir()}
			p := c.build(tr)
			err := CheckNotWritableByOthers(p)
			want := c.want
			if strings.Contains(want, "%") {
				want = strings.ReplaceAll(strings.ReplaceAll(want, "%[1]s", tr.top), "%s", tr.top)
			}
			// the messages above name root as the files' owner and group
			want = strings.ReplaceAll(want, "owner root", "owner "+name(uint32(os.Geteuid()), false))
			want = strings.ReplaceAll(want, "group root", "group "+name(uint32(os.Getegid()), true))
			switch {
			case want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case want != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", want)
			case want != "" && !strings.Contains(err.Error(), want):
				t.Fatalf("got  %v\nwant an error containing %q", err, want)
			}
		})
	}
}

// tree is a test's directory tree.
type tree struct {
	t   *testing.T
	top string
}

func (tr tree) p(rel string) string { return filepath.Join(tr.top, rel) }

// file writes rel (mode fm), its directories 0755 and its own directory
// dm (0: 0755), and returns its path.
func (tr tree) file(rel string, fm, dm os.FileMode) string {
	tr.t.Helper()
	p := tr.p(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		tr.t.Fatal(err)
	}
	tr.chmod(rel, fm)
	if dm != 0 {
		tr.chmod(filepath.Dir(rel), dm)
	}
	return p
}

// link makes rel a symbolic link to target in a directory of mode dm (0:
// 0755) and returns its path.
func (tr tree) link(rel, target string, dm os.FileMode) string {
	tr.t.Helper()
	p := tr.p(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		tr.t.Fatal(err)
	}
	if dm != 0 {
		tr.chmod(filepath.Dir(rel), dm)
	}
	return p
}

func (tr tree) chmod(rel string, m os.FileMode) {
	tr.t.Helper()
	if m&0o1000 != 0 {
		m = m&0o777 | os.ModeSticky
	}
	if err := os.Chmod(tr.p(rel), m); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) chown(rel string, uid int) {
	tr.t.Helper()
	if err := os.Lchown(tr.p(rel), uid, -1); err != nil {
		tr.t.Fatal(err)
	}
}

// mount mounts a tmpfs on rel, unmounted at cleanup.
func (tr tree) mount(rel, opts string) {
	tr.t.Helper()
	p := tr.p(rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", p, "tmpfs", 0, opts); err != nil {
		if errors.Is(err, syscall.EPERM) {
			tr.t.Skipf("cannot mount here: %v", err)
		}
		tr.t.Fatal(err)
	}
	tr.t.Cleanup(func() { _ = syscall.Unmount(p, syscall.MNT_DETACH) })
}

// bind bind-mounts rel from on rel to, unmounted at cleanup.
func (tr tree) bind(from, to string) {
	tr.t.Helper()
	p := tr.p(to)
	if err := os.MkdirAll(p, 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := syscall.Mount(tr.p(from), p, "", syscall.MS_BIND, ""); err != nil {
		tr.t.Fatal(err)
	}
	tr.t.Cleanup(func() { _ = syscall.Unmount(p, syscall.MNT_DETACH) })
}

// remount remounts rel with mount(8)'s options (ro; bind,ro).
func (tr tree) remount(rel, opts string) {
	tr.t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, tr.p(rel)).CombinedOutput(); err != nil {
		tr.t.Fatalf("remount %s: %v: %s", opts, err, out)
	}
}

// mkdev is glibc's gnu_dev_makedev.
func mkdev(major, minor uint64) uint64 {
	return minor&0xff | (major&0xfff)<<8 | (minor&^0xff)<<12 | (major&^0xfff)<<32
}

// TestMountinfoReadOnly: a file system is read-only when the superblock's
// flag, the first of mountinfo's super options, is "ro" (not an "ro" among
// the file system's own options, nor the mount's options); a FUSE one only
// when root or the running user mounted it (user_id), as another user's
// daemon answers what it likes; the device is matched as the kernel writes
// it, a major above 0xfff too.
func TestMountinfoReadOnly(t *testing.T) {
	const mountinfo = `22 27 0:21 / /proc rw,relatime - proc proc rw
30 27 8:1 / /srv/grid\040security ro,relatime shared:1 - ext4 /dev/sda1 ro,errors=remount-ro
31 27 8:2 / /srv/view ro,relatime - ext4 /dev/sda2 rw,errors=remount-ro
32 27 8:3 / /srv/odd rw - weirdfs none rw,opt=x,ro
40 27 0:50 / /cvmfs/grid.cern.ch ro,nodev,relatime - fuse cvmfs2 ro,user_id=0,group_id=0,default_permissions,allow_other
41 27 0:51 / /home/mallory/ca ro,nosuid,nodev,relatime - fuse.sshfs mallory@host: ro,user_id=1000,group_id=1000,allow_other
42 27 0:52 / /srv/mine ro,relatime - fuse.cvmfs2 cvmfs2 ro,user_id=500,group_id=500
43 27 4660:354185 / /srv/big ro - ext4 /dev/big ro
`
	for _, c := range []struct {
		name       string
		dev        uint64
		uid        int
		want       bool
		wantDevStr string
	}{
		{name: "rw proc", dev: mkdev(0, 21), want: false},
		{name: "ro superblock, a mount point with a space", dev: mkdev(8, 1), want: true},
		{name: "ro mount of a rw superblock (bind)", dev: mkdev(8, 2), want: false},
		{name: "ro only among the file system's own options", dev: mkdev(8, 3), want: false},
		{name: "CVMFS, FUSE of root", dev: mkdev(0, 50), uid: 500, want: true},
		{name: "FUSE of another user", dev: mkdev(0, 51), uid: 500, want: false},
		{name: "FUSE of the running user", dev: mkdev(0, 52), uid: 500, want: true},
		{name: "a major above 0xfff", dev: mkdev(0x1234, 0x56789), want: true, wantDevStr: "4660:354185"},
		{name: "not listed", dev: mkdev(9, 9), want: false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.wantDevStr != "" {
				if got := devName(c.dev); got != c.wantDevStr {
					t.Errorf("devName = %s, want %s", got, c.wantDevStr)
				}
			}
			if got := mountinfoReadOnly(strings.NewReader(mountinfo), c.dev, c.uid); got != c.want {
				t.Errorf("read-only = %v, want %v", got, c.want)
			}
		})
	}
}

// setAccounts points privateGroup at passwd and group files holding the
// given lines ("" for a file that does not exist) for the test's length.
func setAccounts(t *testing.T, passwd, group string) {
	t.Helper()
	dir := t.TempDir()
	saved := AccountFiles
	t.Cleanup(func() { AccountFiles = saved })
	AccountFiles.Passwd, AccountFiles.Group = filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	for f, text := range map[string]string{AccountFiles.Passwd: passwd, AccountFiles.Group: group} {
		if text == "" {
			continue
		}
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUserPrivateGroup: a file or directory writable by its group passes
// when that group is its owner's user private group (RHEL and Debian make
// one per user, and a umask of 002 then makes a user's own directories
// 0775), as Debian's OpenSSH allows; not when anyone else may be in it.
func TestUserPrivateGroup(t *testing.T) {
	uid, gid := os.Geteuid(), os.Getegid()
	me := fmt.Sprintf("me:x:%d:%d::/home/me:/bin/sh\n", uid, gid)
	other := fmt.Sprintf("other:x:%d:%d::/home/other:/bin/sh\n", uid+4242, gid)
	grp := func(members string) string { return fmt.Sprintf("mine:x:%d:%s\n", gid, members) }
	for _, c := range []struct {
		name, passwd, group, want string
	}{
		{name: "ok the owner's primary group, no members listed", passwd: me, group: grp("")},
		{name: "ok the owner's primary group, listing the owner", passwd: me, group: grp("me")},
		{name: "ok the group lists only the owner, not its primary group", passwd: fmt.Sprintf("me:x:%d:%d::/:/bin/sh\n", uid, gid+1), group: grp("me")},
		{name: "fail another member listed", passwd: me, group: grp("me,other"), want: "writable by group"},
		{name: "fail another user's primary group too", passwd: me + other, group: grp(""), want: "writable by group"},
		{name: "fail a group with no member", passwd: fmt.Sprintf("me:x:%d:%d::/:/bin/sh\n", uid, gid+1), group: grp(""), want: "writable by group"},
		{name: "fail a group the local files do not know (LDAP)", passwd: me, group: "", want: "writable by group"},
		{name: "fail a NIS line in the group file", passwd: me, group: grp("") + "+:::\n", want: "writable by group"},
	} {
		t.Run(c.name, func(t *testing.T) {
			setAccounts(t, c.passwd, c.group)
			tr := tree{t: t, top: t.TempDir()}
			p := tr.file("home/d/f", 0o664, 0o775)
			err := CheckNotWritableByOthers(p)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	t.Run("fail every user may write, private group or not", func(t *testing.T) {
		setAccounts(t, me, grp(""))
		tr := tree{t: t, top: t.TempDir()}
		if err := CheckNotWritableByOthers(tr.file("d/f", 0o666, 0o755)); err == nil || !strings.Contains(err.Error(), "writable by every user") {
			t.Fatalf("got %v", err)
		}
	})
}
