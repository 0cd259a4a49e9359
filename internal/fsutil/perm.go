package fsutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// maxLinks is how many symbolic links one check follows (Linux's
// MAXSYMLINKS) before it gives up, as the kernel does, with ELOOP.
const maxLinks = 40

// stRDONLY is statfs(2)'s ST_RDONLY: the mount is read-only.
const stRDONLY = 0x1

// CheckNotWritableByOthers returns an error naming the first file or
// directory through which a user other than root and the user this
// process runs as (its effective uid) could change path or put another
// file in its place, and saying what to change. It holds path to what
// OpenSSH's StrictModes (safe_path) holds a key file to, with the sticky
// directories of shared systems allowed:
//
//   - the file path leads to (symbolic links followed) must be owned by
//     root or the running user, and be writable neither by its group nor
//     by every user (its owner may change the mode; a group that may
//     write it is as good as its owner), unless the group is its owner's
//     user private group (privateGroup), whose one member is the owner;
//   - every directory from / down to it, and down to each symbolic link
//     on the way (a link in the middle of path, or a link to a link),
//     must be owned by root or the running user and be writable neither
//     by its group nor by every user: whoever may write a directory may
//     rename an entry of it (an ancestor of the CA directory: the whole
//     directory) and put their own in its place. One exception: a sticky
//     directory (as /tmp, mode 1777) may be writable by others when the
//     entry of it on the way is owned by root or the running user, as
//     only they (and the directory's owner, held to the rule) may rename
//     or remove it;
//   - none of this applies on a read-only file system (a CVMFS
//     repository; its superblock read-only, not only the mount): no mode
//     bit lets anyone write there, and only root, who may write anything
//     anyway, can remount it. A read-only bind mount of a writable file
//     system is held to the rule, as it is writable from where it came,
//     and so is a FUSE file system that neither root nor the running
//     user mounted: its daemon, another user's, serves what it likes.
//
// The error does not repeat path when path itself is the cause (callers
// name it); it names every other file or directory. It is ErrWritable
// (errors.Is) when the modes or owners are the cause, not an error of
// reading them (a missing file).
func CheckNotWritableByOthers(path string) error {
	c := &permCheck{uid: os.Geteuid()}
	return c.path(path)
}

// ErrWritable is what CheckNotWritableByOthers's errors are when another
// user could change the file.
var ErrWritable = errors.New("writable by others")

// writableError is a CheckNotWritableByOthers error: ErrWritable, its text
// what is writable, by whom, and what to change.
type writableError struct{ msg string }

func (e *writableError) Error() string        { return e.msg }
func (e *writableError) Is(target error) bool { return target == ErrWritable }

type permCheck struct {
	uid   int
	links int
	// private caches privateGroup's answers, by owner and group
	private map[[2]uint32]bool
	// superRO caches, by device, whether its file system is read-only
	superRO map[uint64]bool
}

// path resolves p one component at a time, as the kernel does, checking
// each directory it passes through against the entry it takes from it.
func (c *permCheck) path(p string) error {
	// The walk starts from the path as given, not filepath.Abs's (Clean's)
	// lexical reduction of it: the kernel takes a ".." after a symbolic
	// link from where the link led (/a/l/../x, l a link to /b/c, is
	// /b/x, not /a/x), and so must the walk, or it checks another file
	// than the one read. A relative path starts from the kernel's working
	// directory (getcwd(2): no link in it), not $PWD (os.Getwd's).
	if p == "" {
		return syscall.ENOENT
	}
	full := p
	if !filepath.IsAbs(p) {
		wd, err := syscall.Getwd()
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		full = wd + "/" + p
	}
	// abs names path in errors (one that is not path's own cause)
	abs := filepath.Clean(full)
	root, err := os.Lstat("/")
	if err != nil {
		return unwrapPath(err)
	}
	if err := c.node("/", root, "directory /", ""); err != nil {
		return err
	}
	rest := split(full)
	cur, fi := "/", root
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if !fi.IsDir() {
			return fmt.Errorf("%s: %w", cur, syscall.ENOTDIR)
		}
		switch name {
		case ".":
			continue
		case "..":
			// cur holds no symbolic link (each was followed): its
			// parent is lexical
			cur = filepath.Dir(cur)
			if fi, err = os.Lstat(cur); err != nil {
				return fmt.Errorf("%s: %w", cur, unwrapPath(err))
			}
			continue
		}
		next := filepath.Join(cur, name)
		nfi, err := os.Lstat(next)
		if err != nil {
			if next == abs {
				return unwrapPath(err)
			}
			return fmt.Errorf("%s: %w", next, unwrapPath(err))
		}
		if err := c.parent(cur, fi, next, nfi); err != nil {
			return err
		}
		if nfi.Mode()&fs.ModeSymlink != 0 {
			if c.links++; c.links > maxLinks {
				return fmt.Errorf("%s: %w", abs, syscall.ELOOP)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("%s: %w", next, unwrapPath(err))
			}
			if filepath.IsAbs(target) {
				cur, fi = "/", root
			}
			rest = append(split(target), rest...)
			continue
		}
		cur, fi = next, nfi
	}
	what := ""
	if cur != abs {
		what = "the file it leads to, " + cur + ","
		if fi.IsDir() {
			what = "the directory it leads to, " + cur + ","
		}
	}
	return c.node(cur, fi, what, "")
}

func split(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parent checks directory dir (fi) as the one holding entry child (cfi):
// whoever may write dir may put another file in child's place.
func (c *permCheck) parent(dir string, fi fs.FileInfo, child string, cfi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSticky != 0 && c.trusted(cfi) && c.trusted(fi) {
		// others may add entries, not rename or remove this one
		return nil
	}
	return c.node(dir, fi, "directory "+dir, child)
}

// node checks that only root or the running user may change p (fi): its
// owner, and the write bits of its group and of every user. what names p
// in the error ("" for the checked path itself); child, when p is a
// directory on the way, is the entry of it that could be replaced.
func (c *permCheck) node(p string, fi fs.FileInfo, what, child string) error {
	m := fi.Mode().Perm()
	w := m & 0o022
	if w == 0o020 && c.trusted(fi) {
		if uid, gid := owner(fi); c.privateGroup(uid, gid) {
			w = 0 // the group's one member is the owner
		}
	}
	if c.trusted(fi) && w == 0 {
		return nil
	}
	if c.readOnly(p) {
		return nil
	}
	is := ""
	if what != "" {
		is = what + " is "
	}
	uid, gid := owner(fi)
	mode := fmt.Sprintf("%04o", m)
	if fi.Mode()&fs.ModeSticky != 0 {
		mode = fmt.Sprintf("%04o", m|0o1000)
	}
	desc := fmt.Sprintf("(mode %s, owner %s, group %s)", mode, name(uid, false), name(gid, true))
	if !c.trusted(fi) {
		not := "not root"
		if c.uid != 0 {
			not = "neither root nor " + userName(uint32(c.uid)) + ", the user this runs as"
		}
		if why := unmappedOwner(uid); why != "" {
			// an owner the user namespace does not map: chown from in
			// here cannot help, and who may change it cannot be told
			return &writableError{fmt.Sprintf("%sowned by %s, %s %s: %s", is, userName(uid), not, desc, why)}
		}
		then := ": its owner may change it at will"
		if child != "" {
			then = ": its owner could put another " + child + " in its place"
		}
		return &writableError{fmt.Sprintf("%sowned by %s, %s %s%s; chown root %s", is, userName(uid), not, desc, then, p)}
	}
	then := ""
	if child != "" {
		then = ": any of them could put another " + child + " in its place"
	}
	var who, bits string
	switch {
	case m&0o002 != 0 && m&0o020 != 0:
		who, bits = "by every user", "go-w"
	case m&0o002 != 0:
		who, bits = "by every user", "o-w"
	default:
		who, bits = "by group "+name(gid, true), "g-w"
	}
	fix := "chmod " + bits + " " + p
	if child != "" && fi.Mode()&fs.ModeSticky != 0 {
		// a sticky directory: the entry is not the running user's or root's
		fix += ", or chown root " + child
	}
	return &writableError{fmt.Sprintf("%swritable %s %s%s; %s", is, who, desc, then, fix)}
}

// AccountFiles are the local user and group databases the check reads to
// tell a user private group. Tests point them elsewhere (files that do not
// exist: no group is private) so that a group-writable case is refused
// whatever the machine's groups; nothing else should change them.
var AccountFiles = struct{ Passwd, Group string }{"/etc/passwd", "/etc/group"}

// privateGroup reports whether gid is user uid's user private group: the
// convention (RHEL's, Debian's, Ubuntu's) of a group of one user, under
// which a umask of 002 (RHEL's /etc/bashrc, pam_umask's usergroups) makes
// every directory a user makes 0775, so that refusing its group write bit
// would refuse the user's own files for nothing. It holds, as Debian's
// OpenSSH holds it for StrictModes, when the local group database knows
// the group and its one member is uid: every local user whose primary
// group it is is uid, its member list names no one else, and at least one
// of the two makes uid a member. A group only a directory service (LDAP,
// SSSD) knows is not taken as private: its members can't be counted here.
func (c *permCheck) privateGroup(uid, gid uint32) bool {
	k := [2]uint32{uid, gid}
	if v, ok := c.private[k]; ok {
		return v
	}
	v := isPrivateGroup(AccountFiles.Passwd, AccountFiles.Group, uid, gid)
	if c.private == nil {
		c.private = map[[2]uint32]bool{}
	}
	c.private[k] = v
	return v
}

func isPrivateGroup(passwd, group string, uid, gid uint32) bool {
	members, ownerName := 0, ""
	ok := eachAccount(passwd, func(f []string) bool {
		// name:password:uid:gid:gecos:home:shell
		if len(f) < 4 {
			return true
		}
		u, uerr := strconv.ParseUint(f[2], 10, 32)
		g, gerr := strconv.ParseUint(f[3], 10, 32)
		if uerr != nil || gerr != nil {
			return true
		}
		if uint32(u) == uid && ownerName == "" {
			ownerName = f[0]
		}
		if uint32(g) == gid {
			if uint32(u) != uid {
				return false // another user's primary group too
			}
			members++
		}
		return true
	})
	if !ok {
		return false
	}
	known := false
	ok = eachAccount(group, func(f []string) bool {
		// name:password:gid:member,member
		if len(f) < 4 {
			return true
		}
		if g, err := strconv.ParseUint(f[2], 10, 32); err != nil || uint32(g) != gid {
			return true
		}
		known = true
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m == "" {
				continue
			}
			if m != ownerName || ownerName == "" {
				return false
			}
			members++
		}
		return true
	})
	return ok && known && members > 0
}

// eachAccount calls fn with the colon-separated fields of each line of an
// account file (/etc/passwd, /etc/group) until fn returns false; it
// reports whether every call returned true and the file was read whole.
// NIS "+" and "-" lines, which stand for other users, make it false.
func eachAccount(path string, fn func([]string) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			return false
		}
		if !fn(strings.Split(line, ":")) {
			return false
		}
	}
	return sc.Err() == nil
}

// UserNSFiles are where the check reads the kernel's overflow uid and this
// process's uid map. Tests point them elsewhere; nothing else should
// change them.
var UserNSFiles = struct{ OverflowUID, UIDMap string }{"/proc/sys/kernel/overflowuid", "/proc/self/uid_map"}

// unmappedOwner explains, for the error, an owner uid that is the kernel's
// overflow uid (/proc/sys/kernel/overflowuid, 65534: nobody) while this
// process runs in a user namespace that does not map every uid (a
// container, a unit with PrivateUsers=, rootless podman): stat(2) shows
// every owner the namespace does not map as the overflow uid, so the file
// may be root's, or anyone's, outside. "" when uid is not the overflow uid
// or the namespace maps every uid (the initial one: nobody is nobody).
// The file is refused either way: who may change it cannot be told.
func unmappedOwner(uid uint32) string {
	overflow := uint64(65534)
	if b, err := os.ReadFile(UserNSFiles.OverflowUID); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil {
			overflow = v
		}
	}
	if uint64(uid) != overflow {
		return ""
	}
	b, err := os.ReadFile(UserNSFiles.UIDMap)
	if err != nil {
		return ""
	}
	all, mapped := false, false
	for _, line := range strings.Split(string(b), "\n") {
		// inside outside count
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 33)
		if err1 != nil || err2 != nil {
			continue
		}
		if in == 0 && n == 1<<32-1 {
			all = true
		}
		if overflow >= in && overflow < in+n {
			mapped = true
		}
	}
	if all {
		return ""
	}
	fix := "map the file's owner into this user namespace (the uid_map of the container or unit: systemd's PrivateUsers= maps only root and the unit's user; podman's --userns, LXC's lxc.idmap), or give the file, and each directory above it, to an owner this namespace maps (root, or the user this runs as); refused meanwhile"
	if mapped {
		return fmt.Sprintf("uid %d is the kernel's overflow uid (/proc/sys/kernel/overflowuid), which is also what this process's user namespace shows for an owner it does not map (a file root owns outside, say): either way another user may change it; %s", overflow, fix)
	}
	return fmt.Sprintf("its owner is not mapped into this process's user namespace: the kernel shows every unmapped owner as the overflow uid %d (/proc/sys/kernel/overflowuid; this namespace's /proc/self/uid_map does not map it), so the file may be root's or anyone's outside and who may change it cannot be told; %s", overflow, fix)
}

// trusted reports whether fi is owned by root or the running user.
func (c *permCheck) trusted(fi fs.FileInfo) bool {
	uid, _ := owner(fi)
	return uid == 0 || int(uid) == c.uid
}

func owner(fi fs.FileInfo) (uid, gid uint32) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid
	}
	return 0, 0
}

// userName is a user's name and uid.
func userName(uid uint32) string {
	n := name(uid, false)
	if strings.HasPrefix(n, "uid ") {
		return n
	}
	return n + " (uid " + strconv.FormatUint(uint64(uid), 10) + ")"
}

// name is a user's (or group's) name, else "uid N" ("gid N").
func name(id uint32, group bool) string {
	s := strconv.FormatUint(uint64(id), 10)
	if group {
		if g, err := user.LookupGroupId(s); err == nil {
			return g.Name
		}
		return "gid " + s
	}
	if u, err := user.LookupId(s); err == nil {
		return u.Username
	}
	return "uid " + s
}

// readOnly reports whether p lies on a read-only file system: its mount
// is read-only (statfs) and so is the file system itself (the super
// options of /proc/self/mountinfo), not only this view of it. Anything
// it cannot tell is not read-only.
func (c *permCheck) readOnly(p string) bool {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(p, &sfs); err != nil || sfs.Flags&stRDONLY == 0 {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return false
	}
	if ro, ok := c.superRO[st.Dev]; ok {
		return ro
	}
	ro := c.superblockReadOnly(st.Dev)
	if c.superRO == nil {
		c.superRO = map[uint64]bool{}
	}
	c.superRO[st.Dev] = ro
	return ro
}

// superblockReadOnly reports whether /proc/self/mountinfo shows the file
// system of device dev read-only (mountinfoReadOnly).
func (c *permCheck) superblockReadOnly(dev uint64) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	return mountinfoReadOnly(f, dev, c.uid)
}

// devName is device dev as mountinfo writes it, major:minor, decoded as
// glibc's gnu_dev_major and gnu_dev_minor do (their unsigned int casts
// included: a major above 0xfff is not part of the minor).
func devName(dev uint64) string {
	major := uint32(dev>>8)&0xfff | uint32(dev>>32)&^0xfff
	minor := uint32(dev)&0xff | uint32(dev>>12)&^0xff
	return fmt.Sprintf("%d:%d", major, minor)
}

// mountinfoReadOnly reports whether mountinfo (the text of
// /proc/self/mountinfo) shows the file system of device dev read-only:
// its super options (the kernel writes the superblock's "ro" or "rw"
// first, then the file system's own options, which are not looked at)
// begin with "ro". A FUSE file system counts only when mounted by root or
// by uid (its user_id option): another user's FUSE daemon answers every
// read and stat as it likes, its mount read-only or not.
func mountinfoReadOnly(r io.Reader, dev uint64, uid int) bool {
	want := devName(dev)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		// (spaces in paths are written \040: a field holds none)
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != want {
			continue
		}
		for i, f := range fields {
			if f != "-" || i+3 >= len(fields) {
				continue
			}
			fstype, opts := fields[i+1], strings.Split(fields[i+3], ",")
			if opts[0] != "ro" {
				return false
			}
			if fstype == "fuse" || fstype == "fuseblk" || strings.HasPrefix(fstype, "fuse.") {
				return slices.Contains(opts, "user_id=0") || slices.Contains(opts, "user_id="+strconv.Itoa(uid))
			}
			return true
		}
		return false
	}
	return false
}
