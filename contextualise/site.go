package contextualise

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// maxFragment bounds one fragment file: nothing larger could fit Nova's limit.
const maxFragment = 256 << 10

// Site holds the site context fragments loaded from a directory:
//
//	DIR/all/*            applied to every boot
//	DIR/vo/<VO>/*        applied to that VO's images
//	DIR/tag/<VO>/<TAG>/* applied to that tag's images
//
// Files ending .yaml, .yml or .cfg are cloud-config fragments (they must start
// with a #cloud-config line); files starting with "#!" are scripts. Files are
// taken in name order; names starting with "." are skipped. A Site is
// immutable and safe for concurrent use.
type Site struct {
	all  layer
	vo   map[string]layer
	tags map[string]map[string]layer // VO -> tag -> fragments
}

// layer is the fragments of one directory.
type layer struct {
	configs []*cloudConfig
	scripts []*script
}

// script is one site script fragment.
type script struct {
	path string // relative to the site directory, for messages
	base string // file name made safe for a MIME filename
	tmpl template
}

// LoadSite reads and checks every fragment under dir. Any file that is
// neither a cloud-config fragment nor a script, any malformed YAML and any
// unknown template variable is an error naming the file.
func LoadSite(dir string) (*Site, error) {
	s := &Site{vo: map[string]layer{}, tags: map[string]map[string]layer{}}
	top, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("contextualise: site directory: %w", err)
	}
	for _, e := range top {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue // README.md and the like
		}
		switch e.Name() {
		case "all", "vo", "tag":
		default:
			return nil, fmt.Errorf("contextualise: %s: unexpected directory (want all/, vo/<VO>/ or tag/<VO>/<TAG>/)", filepath.Join(dir, e.Name()))
		}
	}
	if s.all, err = loadLayer(dir, "all", true); err != nil {
		return nil, err
	}
	vos, err := subdirs(dir, "vo")
	if err != nil {
		return nil, err
	}
	for _, vo := range vos {
		if s.vo[vo], err = loadLayer(dir, filepath.Join("vo", vo), false); err != nil {
			return nil, err
		}
	}
	tagVOs, err := subdirs(dir, "tag")
	if err != nil {
		return nil, err
	}
	for _, vo := range tagVOs {
		tags, err := subdirs(dir, filepath.Join("tag", vo))
		if err != nil {
			return nil, err
		}
		s.tags[vo] = map[string]layer{}
		for _, tag := range tags {
			if s.tags[vo][tag], err = loadLayer(dir, filepath.Join("tag", vo, tag), false); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// subdirs lists the directories in dir/rel; a missing dir/rel is empty, a
// plain file there is an error.
func subdirs(dir, rel string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, rel))
	if errorsIsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("contextualise: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if !isDir(filepath.Join(dir, rel, e.Name()), e) {
			return nil, fmt.Errorf("contextualise: %s: want only directories in %s/", filepath.Join(dir, rel, e.Name()), rel)
		}
		names = append(names, e.Name())
	}
	return names, nil
}

func isDir(path string, e fs.DirEntry) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink != 0 {
		fi, err := os.Stat(path)
		return err == nil && fi.IsDir()
	}
	return false
}

func errorsIsNotExist(err error) bool { return err != nil && os.IsNotExist(err) }

// loadLayer reads the fragment files of dir/rel.
func loadLayer(dir, rel string, optional bool) (layer, error) {
	var l layer
	entries, err := os.ReadDir(filepath.Join(dir, rel))
	if optional && errorsIsNotExist(err) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("contextualise: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, rel, e.Name())
		relPath := filepath.ToSlash(filepath.Join(rel, e.Name()))
		if isDir(path, e) {
			return l, fmt.Errorf("contextualise: %s: unexpected directory", path)
		}
		src, err := readFragment(path)
		if err != nil {
			return l, err
		}
		switch ext := strings.ToLower(filepath.Ext(e.Name())); {
		case ext == ".yaml" || ext == ".yml" || ext == ".cfg":
			c, err := parseCloudConfig(relPath, src)
			if err != nil {
				return l, fmt.Errorf("contextualise: %w", err)
			}
			l.configs = append(l.configs, c)
		case bytes.HasPrefix(src, []byte("#!")):
			t, err := parseTemplate(src)
			if err != nil {
				return l, fmt.Errorf("contextualise: %s: %w", relPath, err)
			}
			l.scripts = append(l.scripts, &script{path: relPath, base: safeFilename(e.Name()), tmpl: t})
		default:
			return l, fmt.Errorf("contextualise: %s: neither a cloud-config fragment (.yaml, .yml or .cfg starting with #cloud-config) nor a script (starting with #!)", path)
		}
	}
	return l, nil
}

func readFragment(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("contextualise: %w", err)
	}
	if fi.Size() > maxFragment {
		return nil, fmt.Errorf("contextualise: %s: %d bytes, over the %d-byte limit for a fragment", path, fi.Size(), maxFragment)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("contextualise: %w", err)
	}
	return b, nil
}

var unsafeFilename = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// safeFilename keeps a script's name readable in cloud-init's scripts/
// directory and harmless in a MIME header.
func safeFilename(name string) string {
	return unsafeFilename.ReplaceAllString(name, "_")
}

// fragments returns the fragments for a VO and tag: all, then vo, then tag.
func (s *Site) fragments(vo, tag string) (configs []*cloudConfig, scripts []*script) {
	layers := []layer{s.all}
	if vo != "" {
		if l, ok := s.vo[vo]; ok {
			layers = append(layers, l)
		}
		if tag != "" {
			if l, ok := s.tags[vo][tag]; ok {
				layers = append(layers, l)
			}
		}
	}
	for _, l := range layers {
		configs = append(configs, l.configs...)
		scripts = append(scripts, l.scripts...)
	}
	return configs, scripts
}

// Applies reports whether the site has any fragment for a VO and tag, that
// is whether Merge would change the user data.
func (s *Site) Applies(vo, tag string) bool {
	c, sc := s.fragments(vo, tag)
	return len(c) > 0 || len(sc) > 0
}

// eachTemplate calls f with the path and the variable references of every
// fragment of every layer (all, then each VO's and each tag's, in name
// order), until f returns an error.
func (s *Site) eachTemplate(f func(path string, names []string) error) error {
	layers := []layer{s.all}
	for _, vo := range slices.Sorted(maps.Keys(s.vo)) {
		layers = append(layers, s.vo[vo])
	}
	for _, vo := range slices.Sorted(maps.Keys(s.tags)) {
		for _, tag := range slices.Sorted(maps.Keys(s.tags[vo])) {
			layers = append(layers, s.tags[vo][tag])
		}
	}
	for _, l := range layers {
		for _, c := range l.configs {
			if err := f(c.path, c.names); err != nil {
				return err
			}
		}
		for _, sc := range l.scripts {
			if err := f(sc.path, sc.tmpl.names); err != nil {
				return err
			}
		}
	}
	return nil
}

// UnusedVars lists, sorted, the names of extra that no fragment refers to
// as {{ var.NAME }}: a variable no boot can use is most likely a setting
// written after the [contextualise.vars] header of the configuration,
// where TOML makes it a variable (every key up to the next header).
func (s *Site) UnusedVars(extra map[string]string) []string {
	used := map[string]bool{}
	_ = s.eachTemplate(func(_ string, names []string) error {
		for _, n := range names {
			if extraName.MatchString(n) {
				used[n[len("var."):]] = true
			}
		}
		return nil
	})
	var out []string
	for n := range extra {
		if !used[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// CheckSiteVars checks, once at start-up, the values the site supplies
// (site_name, and var.NAME from Extra) for every reference any fragment
// makes to them: missing, empty or unsafe, they would fail every boot that
// fragment applies to (a 500); the error names the fragment and the
// variable (the first in layer and name order). Values that come with each
// boot (image, project, server name...) are checked then.
func (s *Site) CheckSiteVars(v Vars) error {
	return s.eachTemplate(func(path string, names []string) error {
		for _, name := range names {
			if name != "site_name" && !extraName.MatchString(name) {
				continue
			}
			if _, err := v.lookup(name); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		return nil
	})
}
