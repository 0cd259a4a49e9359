package main

import (
	"fmt"
	"os"
)

// secretFile is a file a daemon reads a secret from, and the setting (a
// configuration key, an environment variable) that names it.
type secretFile struct{ setting, path string }

// secretFileWarnings are the warnings a daemon logs at start about files
// holding its secrets (credentials, a private key) that every user of the
// host may read. They are warnings, not errors: the secret is out already,
// and refusing to start would not take it back.
func secretFileWarnings(files ...secretFile) []string {
	var out []string
	for _, f := range files {
		if f.path == "" {
			continue
		}
		fi, err := os.Stat(f.path)
		if err != nil {
			continue // reported by whoever reads it
		}
		if m := fi.Mode().Perm(); m&0o004 != 0 {
			out = append(out, fmt.Sprintf("%s %s is readable by every user (mode %04o): it holds a secret; chmod o-r it (0640 root:imagetrust) and consider the secret disclosed", f.setting, f.path, m))
		}
	}
	return out
}

// cloudsYAML is the clouds.yaml that OS_CLIENT_CONFIG_FILE names, the one
// the documented installation uses.
func cloudsYAML(getenv func(string) string) secretFile {
	return secretFile{"OS_CLIENT_CONFIG_FILE", getenv("OS_CLIENT_CONFIG_FILE")}
}
