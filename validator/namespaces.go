package validator

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Namespaces are the IGTF name constraints of a trust store: for each
// issuing CA (by subject, in OpenSSL one-line form), the subject names it
// may issue. They come from the <hash>.namespaces files of an IGTF CA
// directory (EACL-style "TO Issuer ... PERMIT/DENY Subject ..." lines, POSIX
// regular expressions) or, for a CA without one, its <hash>.signing_policy
// (cond_subjects with shell-style '*' wildcards). A CA of the directory
// with neither file may issue no name (readCADir gives it an empty
// policy); a CA from trust.ca_files, or a sub-CA brought by a signature
// with no constrained ancestor, is unconstrained.
type Namespaces struct {
	policies []*nsPolicy
}

type nsPolicy struct {
	issuer   string
	issuerDN DN
	permit   []*regexp.Regexp
	deny     []*regexp.Regexp
	source   string
	// via, when set, are the CAs (name and key) whose policy file states
	// this rule for another issuer (a sub-CA it issued that the directory
	// does not ship): the rule applies only to a CA of that name in a
	// chain that passes through one of them above it (see policyIn).
	via []*x509.Certificate
}

// sameCAs reports whether a and b name the same CAs, in order.
func sameCAs(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameCA(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameCA reports whether a and b are certificates of one CA: the same name
// and key (a re-issued or cross-signed certificate of it still is).
func sameCA(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubject, b.RawSubject) && bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

// add merges the rules of one file. The issuer is compared as a name, not
// as a string; rules for the same issuer add up (those stated by other
// CAs' files, p.via, are kept apart: each applies below its CAs). A policy made for a
// certificate comes with its issuerDN already (the one-line text of a
// name does not always parse back to the same name: a backslash in a
// value, an empty subject); one read from a file is parsed here.
func (n *Namespaces) add(p *nsPolicy) error {
	dn := p.issuerDN
	if dn == nil {
		var err error
		if dn, err = ParseDN(p.issuer); err != nil {
			return fmt.Errorf("%s: issuer %q: %w", p.source, p.issuer, err)
		}
	}
	p.issuerDN = dn
	for _, old := range n.policies {
		if old.issuerDN.Equal(dn) && sameCAs(old.via, p.via) {
			old.permit = append(old.permit, p.permit...)
			old.deny = append(old.deny, p.deny...)
			return nil
		}
	}
	n.policies = append(n.policies, p)
	return nil
}

// Check reports whether a certificate's subject is within the namespace of
// its issuer. Subjects are matched in OpenSSL's one-line form, as IGTF
// writes its patterns. It returns nil when the issuer has no policy.
func (n *Namespaces) Check(issuer DN, subject string) error {
	spaced := ""
	if dn, err := ParseDN(subject); err == nil {
		spaced = dn.spaceFolded().OneLine()
	}
	return n.policyFor(issuer).check(issuer, subject, spaced)
}

// spaceFolded is d with the white space of each value folded as DN.Equal
// folds it (runs made one space, trimmed): the form of the name that a
// DENY must also be matched against (nsPolicy.check).
func (d DN) spaceFolded() DN {
	out := make(DN, len(d))
	for i, rdn := range d {
		out[i] = make([]Attr, len(rdn))
		for j, a := range rdn {
			out[i][j] = Attr{Type: a.Type, Value: strings.Join(strings.FieldsFunc(a.Value, unicode.IsSpace), " ")}
		}
	}
	return out
}

// policyFor is the policy of issuer (nil: none), every rule for it
// (wherever the chain goes: for a certificate judged alone).
func (n *Namespaces) policyFor(issuer DN) *nsPolicy {
	return n.policyIn(issuer, nil, true)
}

// policyIn is the policy of issuer, a CA of a chain below the CAs above
// (nil: none): its rules that no CA's file binds (p.via), and those stated
// by the file of a CA in above, by name and key (all: every rule). A rule
// another CA's file states for a sub-CA it issues speaks for that CA's
// sub-CA, not for a namesake another CA issued.
func (n *Namespaces) policyIn(issuer DN, above []*x509.Certificate, all bool) *nsPolicy {
	if n == nil {
		return nil
	}
	var out *nsPolicy
	merged := false
	for _, p := range n.policies {
		if !p.issuerDN.Equal(issuer) || !all && !passesThrough(p.via, above) {
			continue
		}
		switch {
		case out == nil:
			out = p
		case !merged:
			out = &nsPolicy{issuer: out.issuer, issuerDN: out.issuerDN, source: out.source,
				permit: slices.Clone(out.permit), deny: slices.Clone(out.deny)}
			merged = true
			fallthrough
		default:
			out.permit = append(out.permit, p.permit...)
			out.deny = append(out.deny, p.deny...)
			out.source += ", " + p.source
		}
	}
	return out
}

// hasUnbound reports whether issuer has a policy no CA's file binds.
func (n *Namespaces) hasUnbound(issuer DN) bool {
	return n.policyIn(issuer, nil, false) != nil
}

// passesThrough reports whether one of the CAs of via (none: the rule is
// not bound) is among chain.
func passesThrough(via, chain []*x509.Certificate) bool {
	if len(via) == 0 {
		return true
	}
	for _, v := range via {
		for _, c := range chain {
			if sameCA(v, c) {
				return true
			}
		}
	}
	return false
}

// check matches subject, a certificate issued by issuer, against p (nil:
// unconstrained).
//
// A DENY is matched against the subject as printed and against folded
// (the subject with each value's white space folded, as DN.Equal folds
// it; "" for none): the VO lists compare names so, and a subject that
// differs from a denied name only by a leading, trailing or doubled space
// is that name to them. A PERMIT is matched against the subject as
// printed only (a name with odd spaces gets no more than the name).
func (p *nsPolicy) check(issuer DN, subject, folded string) error {
	if p == nil {
		return nil
	}
	issuerName := issuer.OneLine()
	via := ""
	if !p.issuerDN.Equal(issuer) {
		via = fmt.Sprintf(", which has no policy of its own, under that of %q", p.issuerDN.OneLine())
	}
	for _, re := range p.deny {
		if re.MatchString(subject) || folded != "" && folded != subject && re.MatchString(folded) {
			return fmt.Errorf("subject %q is denied to issuer %q%s by %s", subject, issuerName, via, p.source)
		}
	}
	for _, re := range p.permit {
		if re.MatchString(subject) {
			return nil
		}
	}
	return fmt.Errorf("subject %q is outside the namespace of issuer %q%s (%s)", subject, issuerName, via, p.source)
}

// CheckChain checks every certificate of chain (leaf first, root last)
// against the namespace of its issuer, from the root down. A CA with no
// policy of its own below one that has a policy (a sub-CA an IGTF bundle
// does not ship, brought by a signature) is held to its nearest constrained
// ancestor's: otherwise a constrained CA could escape its namespace by
// issuing such a sub-CA within it. A self-issued CA certificate below
// the root (a link certificate) is not checked: it bears its issuer's
// name. Every policy applies to whoever bears
// its issuer's name: see checkChain for the Trust's rule.
func (n *Namespaces) CheckChain(chain []*x509.Certificate) error {
	return n.checkChain(chain, nil)
}

// checkChain is CheckChain where a CA's policy (its issuer name's) is its
// own only when owns says so: a CA that bears the name of a trust store CA
// but not its key is not that CA, and is held to its issuer's namespace
// like a CA with no policy (nil owns: every bearer of the name).
func (n *Namespaces) checkChain(chain []*x509.Certificate, owns func(c *x509.Certificate, subject DN) bool) error {
	if n == nil {
		return nil
	}
	own := func(i int, c *x509.Certificate, subject DN) *nsPolicy {
		p := n.policyIn(subject, chain[i+1:], false)
		if p != nil && owns != nil && !owns(c, subject) {
			return nil
		}
		return p
	}
	var inherited *nsPolicy
	for i := len(chain) - 1; i >= 0; i-- {
		c := chain[i]
		subject, err := DNFromRaw(c.RawSubject)
		if err != nil {
			return err
		}
		if i == len(chain)-1 && len(chain) > 1 {
			// the root: its own subject is not checked, only what it issues
			inherited = own(i, c, subject)
			continue
		}
		issuer, err := DNFromRaw(c.RawIssuer)
		if err != nil {
			return err
		}
		// the issuer's policy: its own (set as inherited when it was the
		// subject, the step before), else its constrained ancestor's
		p := inherited
		if i == len(chain)-1 {
			p = n.policyFor(issuer) // a lone certificate: its issuer is not in the chain
		}
		// a self-issued CA certificate within the chain (a key rollover's
		// link certificate: the old key certifying the new under the CA's
		// name) names no one new: its name is its issuer's, already
		// allowed. RFC 5280 6.1.4 (b), (g) skip it too, but when it is the
		// leaf (i == 0), which is checked.
		if i == 0 || !bytes.Equal(c.RawIssuer, c.RawSubject) {
			if err := p.check(issuer, subject.OneLine(), subject.spaceFolded().OneLine()); err != nil {
				return err
			}
		}
		if o := own(i, c, subject); o != nil {
			inherited = o
		} else {
			inherited = p
		}
	}
	return nil
}

// Len is the number of issuers with a policy.
func (n *Namespaces) Len() int {
	if n == nil {
		return 0
	}
	return len(n.policies)
}

// quoted returns the double- or single-quoted strings of s, in order.
func quoted(s string) []string {
	var out []string
	for _, q := range quotedSpans(s) {
		out = append(out, q.text)
	}
	return out
}

// span is a quoted string of a line: its text, and where the quoted string
// starts (its opening quote) and ends (after its closing quote) in the line.
type span struct {
	text       string
	start, end int
}

// quotedSpans returns the double- or single-quoted strings of s, in order.
// An unclosed quote ends the list.
func quotedSpans(s string) []span {
	var out []span
	for off := 0; ; {
		i := strings.IndexAny(s[off:], `"'`)
		if i < 0 {
			return out
		}
		i += off
		j := strings.IndexByte(s[i+1:], s[i])
		if j < 0 {
			return out
		}
		out = append(out, span{text: s[i+1 : i+1+j], start: i, end: i + 2 + j})
		off = i + 2 + j
	}
}

// logicalLines joins backslash-continued lines and drops comments.
func logicalLines(b []byte) []string {
	var out []string
	var cur strings.Builder
	// every line, however long: a scanner with a line limit would stop
	// at the first longer one, and the policies after it would be lost
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, " \t\r\n")
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// ParseNamespaces parses an IGTF <hash>.namespaces file:
//
//	TO Issuer "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth" \
//	  PERMIT Subject "/O=dutchgrid/O=(users|hosts|robots)/.*"
//
// Subject patterns are POSIX extended regular expressions matched against
// the whole one-line subject, ignoring case (subjectPattern).
func ParseNamespaces(b []byte, source string) ([]*nsPolicy, error) {
	var out []*nsPolicy
	for _, line := range logicalLines(b) {
		fields := strings.Fields(line)
		if len(fields) < 2 || !strings.EqualFold(fields[0], "TO") {
			return nil, fmt.Errorf("%s: %q: expected TO Issuer \"...\" PERMIT|DENY Subject \"...\"", source, shorten(line))
		}
		// TO Issuer "ISSUER" PERMIT|DENY Subject "PATTERN": the words are
		// read where they stand, never inside the quoted names (whose
		// upper-case form may differ in length, or hold the words)
		q := quotedSpans(line)
		if len(q) != 2 {
			return nil, fmt.Errorf("%s: %q: expected an issuer and a subject pattern", source, shorten(line))
		}
		before := strings.Fields(strings.ToUpper(line[:q[0].start]))
		between := strings.Fields(strings.ToUpper(line[q[0].end:q[1].start]))
		rest := strings.TrimSpace(line[q[1].end:])
		if len(before) != 2 || before[1] != "ISSUER" || len(between) != 2 || between[1] != "SUBJECT" ||
			rest != "" && !strings.HasPrefix(rest, "#") {
			return nil, fmt.Errorf("%s: %q: expected TO Issuer \"...\" PERMIT|DENY Subject \"...\"", source, shorten(line))
		}
		re, err := subjectPattern(q[1].text)
		if err != nil {
			return nil, fmt.Errorf("%s: subject pattern %q: %w", source, q[1].text, err)
		}
		p := &nsPolicy{issuer: q[0].text, source: source}
		switch between[0] {
		case "DENY":
			p.deny = append(p.deny, re)
		case "PERMIT":
			p.permit = append(p.permit, re)
		default:
			return nil, fmt.Errorf("%s: %q: neither PERMIT nor DENY", source, shorten(line))
		}
		out = append(out, p)
	}
	return out, nil
}

// subjectPattern compiles a namespaces subject pattern, a POSIX extended
// regular expression (refused if it is not one), to match a whole one-line
// subject, case-insensitively: names are compared ignoring case (RFC 5280
// 7.1, caseIgnoreMatch; DN.Equal, the VO lists, the policies' issuers),
// so a subject that differs from a pattern only in case is the same name,
// permitted or denied alike (a DENY matched case-sensitively let the same
// name through in another case; canl-java, the IGTF relying-party library,
// compiles these patterns case-insensitively too). ^ and $ are the ends of
// the subject, not of a line of it: POSIX syntax made them line anchors,
// so a value with a newline could bring a permitted line into a subject
// outside the namespace.
func subjectPattern(pat string) (*regexp.Regexp, error) {
	if _, err := regexp.CompilePOSIX(pat); err != nil {
		return nil, err
	}
	// (every POSIX pattern reads the same in Go's Perl syntax, but for its
	// anchors, which are then the text's, and for newlines: a negated class
	// matches one there, so "." must too (s), or a DENY ".*" would miss a
	// subject with a newline that a PERMIT "[^/]*" takes)
	return regexp.Compile("(?is)^(?:" + pat + ")$")
}

// ParseSigningPolicy parses a Globus <hash>.signing_policy file:
//
//	access_id_CA  X509    '/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth'
//	pos_rights    globus  CA:sign
//	cond_subjects globus  '"/O=dutchgrid/O=users/*" "/O=dutchgrid/O=hosts/*"'
//
// '*' in a subject pattern matches any characters; case is ignored, as
// in namespaces patterns.
func ParseSigningPolicy(b []byte, source string) ([]*nsPolicy, error) {
	var out []*nsPolicy
	var cur *nsPolicy
	for _, line := range logicalLines(b) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToLower(fields[0]) {
		case "access_id_ca":
			q := quoted(line)
			if len(q) != 1 {
				return nil, fmt.Errorf("%s: %q: expected one quoted CA name", source, shorten(line))
			}
			cur = &nsPolicy{issuer: q[0], source: source}
			out = append(out, cur)
		case "pos_rights":
		case "cond_subjects":
			if cur == nil {
				return nil, fmt.Errorf("%s: cond_subjects before access_id_CA", source)
			}
			outer := quoted(line)
			if len(outer) != 1 {
				return nil, fmt.Errorf("%s: %q: expected one quoted list of subjects", source, shorten(line))
			}
			for _, pat := range quoted(outer[0]) {
				re, err := regexp.Compile("(?is)^" + strings.ReplaceAll(regexp.QuoteMeta(pat), `\*`, ".*") + "$")
				if err != nil {
					return nil, fmt.Errorf("%s: subject pattern %q: %w", source, pat, err)
				}
				cur.permit = append(cur.permit, re)
			}
		default:
			return nil, fmt.Errorf("%s: %q: unknown keyword", source, shorten(line))
		}
	}
	return out, nil
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
