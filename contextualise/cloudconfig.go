package contextualise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// The cloud-config fragments are kept as YAML node trees, not decoded into Go
// values: cloud-init reads YAML 1.1 (PyYAML), and a round trip through Go
// types would turn 0644 into 644 and yes into "yes". Nodes keep each scalar's
// source text and tag, so the emitted document means what the author wrote.

const cloudConfigHeader = "#cloud-config"

// placeholder stands in for a template reference while the YAML is parsed: a
// plain word, so `path: /etc/{{ vo }}.conf` parses without quoting.
const placeholderPrefix = "__imagetrust_var_"

var placeholderRef = regexp.MustCompile(`__imagetrust_var_([0-9]+)__`)

// cloudConfig is one parsed site cloud-config fragment.
type cloudConfig struct {
	path  string     // relative to the site directory, for messages
	root  *yaml.Node // a MappingNode; template references as placeholders
	names []string   // placeholder index -> variable name
}

// parseCloudConfig checks and parses one fragment file's content.
func parseCloudConfig(path string, src []byte) (*cloudConfig, error) {
	first, _, _ := bytes.Cut(src, []byte("\n"))
	if string(bytes.TrimRight(first, " \t\r")) != cloudConfigHeader {
		return nil, fmt.Errorf("%s: a cloud-config fragment must start with a %s line", path, cloudConfigHeader)
	}
	if bytes.Contains(src, []byte(placeholderPrefix)) {
		return nil, fmt.Errorf("%s: the text %q is reserved", path, placeholderPrefix)
	}
	t, err := parseTemplate(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	text := t.render(func(i int, _ string) string { return placeholderPrefix + strconv.Itoa(i) + "__" })

	// One document, as cloud-init's yaml.safe_load demands.
	var doc, second yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(text))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: YAML: %w", path, err)
	}
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: YAML: want exactly one document", path)
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: a cloud-config fragment must be a mapping of module keys", path)
	}
	for i := 0; i < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "merge_how", "merge_type":
			return nil, fmt.Errorf("%s: %s is not allowed in a site fragment: the site part's merge rule is fixed (lists appended, the user's scalars kept)", path, root.Content[i].Value)
		}
	}
	if err := checkNode(root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cloudConfig{path: path, root: root, names: t.names}, nil
}

// safeTags are the tags cloud-init's YAML loader (PyYAML's safe_load, YAML
// 1.1) constructs: any other, explicit (!foo, !!python/object) or implied,
// makes it refuse the whole site part at every boot.
var safeTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!map": true, "!!seq": true, "!!binary": true, "!!timestamp": true,
	"!!set": true, "!!omap": true, "!!pairs": true, "!": true,
}

// checkNode refuses what the merge cannot carry faithfully: anchors and
// aliases (they would dangle across fragments), non-scalar or duplicate
// mapping keys, template references in keys, and what cloud-init's YAML
// 1.1 loader cannot construct though Go's YAML 1.2 parser takes it: a tag
// outside safeTags, and a plain = or << as a value (YAML 1.1's value and
// merge types, which PyYAML's safe loader refuses: so would cloud-init,
// dropping the site's cloud-config on every boot).
func checkNode(n *yaml.Node) error {
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return fmt.Errorf("line %d: YAML anchors and aliases are not supported in site fragments", n.Line)
	}
	if !safeTags[n.Tag] {
		return fmt.Errorf("line %d: YAML tag %s is not one cloud-init's YAML loader takes (safe_load: str, int, float, bool, null, map, seq, binary, timestamp, set, omap, pairs)", n.Line, n.Tag)
	}
	if err := checkPlainValues(n); err != nil {
		return err
	}
	if n.Kind == yaml.MappingNode {
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: mapping keys must be scalars", k.Line)
			}
			if k.Tag == "!!merge" || k.Value == "<<" {
				return fmt.Errorf("line %d: YAML merge keys are not supported in site fragments", k.Line)
			}
			if strings.Contains(k.Value, placeholderPrefix) {
				return fmt.Errorf("line %d: template references are allowed in values only, not in keys", k.Line)
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
		}
	}
	for _, c := range n.Content {
		if err := checkNode(c); err != nil {
			return err
		}
	}
	return nil
}

// checkPlainValues refuses a plain = or << among n's values (a mapping's
// values, a sequence's items): YAML 1.1 reads them as its value and merge
// types, which PyYAML's safe loader cannot construct. Quoted, they are
// strings.
func checkPlainValues(n *yaml.Node) error {
	var values []*yaml.Node
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			values = append(values, n.Content[i])
		}
	case yaml.SequenceNode:
		values = n.Content
	}
	for _, v := range values {
		if v.Kind == yaml.ScalarNode && v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle|yaml.TaggedStyle) == 0 && (v.Value == "=" || v.Value == "<<") {
			return fmt.Errorf("line %d: a plain %s is a YAML 1.1 type cloud-init's YAML loader refuses; quote it: '%s'", v.Line, v.Value, v.Value)
		}
	}
	return nil
}

// render returns a copy of the fragment's tree with its template references
// replaced by their values. Substituted scalars are always strings and are
// emitted quoted (or as the block scalar they were).
func (c *cloudConfig) render(v Vars) (*yaml.Node, error) {
	vals := make([]string, len(c.names))
	for i, name := range c.names {
		val, err := v.lookup(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.path, err)
		}
		vals[i] = val
	}
	return cloneSubst(c.root, vals), nil
}

// cloneSubst deep-copies n, dropping comments and substituting placeholders.
func cloneSubst(n *yaml.Node, vals []string) *yaml.Node {
	c := *n
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, placeholderPrefix) {
		c.Value = placeholderRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			i, err := strconv.Atoi(placeholderRef.FindStringSubmatch(m)[1])
			if err != nil || i >= len(vals) {
				return m // cannot happen: placeholders are numbered at load
			}
			return vals[i]
		})
		c.Tag = "!!str"
		if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			c.Style = yaml.DoubleQuotedStyle
		}
	}
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			c.Content[i] = cloneSubst(k, vals)
		}
	}
	return &c
}

// mergeInto merges mapping src into mapping dst the way the site's own
// fragments combine (all, then vo, then tag): mappings recurse, sequences
// append, anything else is replaced by the later fragment.
func mergeInto(dst, src *yaml.Node) {
	for i := 0; i < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		j := keyIndex(dst, k.Value)
		if j < 0 {
			dst.Content = append(dst.Content, k, v)
			continue
		}
		old := dst.Content[j+1]
		switch {
		case old.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode:
			mergeInto(old, v)
		case old.Kind == yaml.SequenceNode && v.Kind == yaml.SequenceNode:
			old.Content = append(old.Content, v.Content...)
		default:
			dst.Content[j+1] = v
		}
	}
}

func keyIndex(m *yaml.Node, key string) int {
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// siteCloudConfig renders and merges the fragments into one document, or
// returns nil when they hold no keys.
func siteCloudConfig(frags []*cloudConfig, v Vars) ([]byte, error) {
	merged := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, f := range frags {
		n, err := f.render(v)
		if err != nil {
			return nil, err
		}
		mergeInto(merged, n)
	}
	if len(merged.Content) == 0 {
		return nil, nil
	}
	merged.Style = 0 // block style at the top, whatever the first fragment used
	var b bytes.Buffer
	b.WriteString(cloudConfigHeader + "\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(merged); err != nil {
		return nil, fmt.Errorf("encode site cloud-config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode site cloud-config: %w", err)
	}
	return b.Bytes(), nil
}
