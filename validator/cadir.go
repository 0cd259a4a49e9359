package validator

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/fsutil"
)

// MaxCADirFile is the largest certificate or policy file of a trust.ca_dirs
// directory that is read (an IGTF certificate is about 2 KB, a policy file
// a few): a larger one is skipped, with a warning. Its CRLs (<hash>.rN)
// may be as large as crl.MaxSize.
const MaxCADirFile = 1 << 20

// readCACert reads one <hash>.N file of a CA directory: exactly one PEM
// certificate of a CA (basicConstraints CA:TRUE, keyCertSign if it has a key
// usage) with a non-empty subject whose OpenSSL hash (new or old) is hash,
// the name OpenSSL, fetch-crl and the grid tools look it up by. The error
// says which check failed. note, if not empty, is a warning about a CA
// that loads (outside its validity now).
func readCACert(path, hash string, now time.Time) (c *x509.Certificate, note string, err error) {
	b, err := fsutil.ReadRegular(path, MaxCADirFile)
	if err != nil {
		return nil, "", fmt.Errorf("unreadable: %w", err)
	}
	if err := fsutil.CheckNotWritableByOthers(path); errors.Is(err, fsutil.ErrWritable) {
		return nil, "", fmt.Errorf("a user other than root and the one this runs as could put another CA in it: %w", err)
	} else if err != nil {
		return nil, "", fmt.Errorf("its owner and mode could not be checked: %w", err)
	}
	return parseCACert(b, hash, now)
}

// parseCACert holds the contents of a <hash>.N file to readCACert's checks.
func parseCACert(b []byte, hash string, now time.Time) (c *x509.Certificate, note string, err error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, "", errors.New("empty file")
	}
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		return nil, "", errors.New("not PEM (DER?): OpenSSL and the grid tools read <hash>.N files as PEM only")
	}
	// text around the PEM blocks is ignored, as OpenSSL ignores it; a
	// block that does not decode is not
	var blocks []*pem.Block
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		blocks = append(blocks, blk)
	}
	if begins := bytes.Count(b, []byte("-----BEGIN ")); begins != len(blocks) {
		return nil, "", fmt.Errorf("malformed PEM: %d BEGIN lines, %d blocks that decode", begins, len(blocks))
	}
	var der []*pem.Block
	for _, blk := range blocks {
		if blk.Type == "CERTIFICATE" || blk.Type == "TRUSTED CERTIFICATE" {
			der = append(der, blk)
		}
	}
	if len(der) != 1 {
		return nil, "", fmt.Errorf("%d certificates: a <hash>.N file holds exactly one CA certificate", len(der))
	}
	c, err = parsePEMCertificate(der[0])
	if err != nil {
		return nil, "", fmt.Errorf("certificate does not parse: %w", err)
	}
	if dn, err := DNFromRaw(c.RawSubject); err != nil || len(dn) == 0 {
		return nil, "", errors.New("empty subject: a CA must have a name (RFC 5280 4.1.2.6), and no policy file can name it")
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, "", errors.New("not a CA certificate (no basicConstraints CA:TRUE)")
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, "", fmt.Errorf("not a CA certificate (key usage %#x without keyCertSign)", int(c.KeyUsage))
	}
	h, old, err := subjectHashes(c.RawSubject)
	if err != nil {
		return nil, "", fmt.Errorf("subject: %w", err)
	}
	if hash != h && hash != old {
		return nil, "", fmt.Errorf("subject %q hashes to %s (old hash %s), not %s: OpenSSL would never find it under this name", SubjectName(c), h, old, hash)
	}
	switch {
	case !now.IsZero() && now.After(c.NotAfter):
		note = fmt.Sprintf("expired %s: only chains judged at a registration time before then verify", c.NotAfter.UTC().Format(time.RFC3339))
	case !now.IsZero() && now.Before(c.NotBefore):
		note = fmt.Sprintf("not valid before %s: no chain judged at an earlier registration time verifies", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return c, note, nil
}

// parsePEMCertificate parses the certificate of a PEM block of type
// CERTIFICATE or TRUSTED CERTIFICATE. The latter (OpenSSL's `x509
// -addtrust`, `-trustout`) is the certificate's DER followed by its
// X509_CERT_AUX trust settings (trusted and rejected uses, alias): only
// the leading certificate is parsed, and the trust settings are ignored:
// every CA of the trust store is trusted for what the configuration says,
// never for a use its file claims or rejects. Anything after them is
// refused.
func parsePEMCertificate(blk *pem.Block) (*x509.Certificate, error) {
	if blk.Type != "TRUSTED CERTIFICATE" {
		return x509.ParseCertificate(blk.Bytes)
	}
	var cert, aux asn1.RawValue
	rest, err := asn1.Unmarshal(blk.Bytes, &cert)
	if err != nil {
		return nil, fmt.Errorf("TRUSTED CERTIFICATE: %w", err)
	}
	if len(rest) > 0 {
		if rest, err = asn1.Unmarshal(rest, &aux); err != nil || aux.Class != asn1.ClassUniversal || aux.Tag != asn1.TagSequence || len(rest) > 0 {
			return nil, errors.New("TRUSTED CERTIFICATE: trailing data after the certificate that is not one X509_CERT_AUX SEQUENCE")
		}
	}
	return x509.ParseCertificate(cert.FullBytes)
}

// readPolicyFile reads and parses one .namespaces or .signing_policy file,
// each policy with its issuer's name parsed: one issuer that does not parse
// fails the whole file, as a syntax error does.
func readPolicyFile(path string) ([]*nsPolicy, error) {
	b, err := fsutil.ReadRegular(path, MaxCADirFile)
	if err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	if err := fsutil.CheckNotWritableByOthers(path); errors.Is(err, fsutil.ErrWritable) {
		return nil, fmt.Errorf("a user other than root and the one this runs as could widen what its CA may issue: %w", err)
	} else if err != nil {
		return nil, fmt.Errorf("its owner and mode could not be checked: %w", err)
	}
	parse := ParseNamespaces
	if strings.HasSuffix(path, ".signing_policy") {
		parse = ParseSigningPolicy
	}
	pols, err := parse(b, path)
	if err != nil {
		return nil, err
	}
	for _, p := range pols {
		if p.issuerDN, err = ParseDN(p.issuer); err != nil {
			return nil, fmt.Errorf("%s: issuer %q: %w", path, p.issuer, err)
		}
	}
	return pols, nil
}

// readCADir reads an IGTF-style directory: <hash>.N certificates, <hash>.rN
// CRLs (as fetch-crl writes them), and each CA's name constraints into ns:
// <hash>.namespaces, or <hash>.signing_policy where there is no namespaces
// entry. Other names (CAname.pem, .info, .crl_url, anything not named
// <8 hex digits>.<ext>) are not read. It is scanCADir and applyCADirs of
// one directory; LoadTrust scans all of trust.ca_dirs first, so that
// "own" and "foreign" are decided across them.
//
// One bad file never fails the directory, and never widens what is trusted:
//   - a <hash>.N file that fails readCACert is skipped, with a warning
//     naming the file and the check; the same certificate under two
//     hashes (the new and the old one, as IGTF ships) is one CA;
//   - a CA's own policy files (those of the hashes it is filed under, in
//     any of the directories) alone constrain it: rules for it in other
//     files are not used. One that cannot be read or parsed, or names no
//     policy for the CA, gives it an empty policy (it may issue no name),
//     with a warning, as has a CA with no policy file that no other file
//     names;
//   - rules of a CA's file for another issuer (a sub-CA no directory
//     holds, a CA without policy files) are used for that issuer;
//   - a policy file for a hash with no certificate file is not read (a
//     warning says so);
//   - that of a hash whose certificates were all skipped is: the CA may
//     still come as an intermediate of a signature, and another CA's
//     rules must not stand in for its own. Every issuer it names takes
//     no other file's rules; its rules are used for those issuers whose
//     subject hashes to the file's hash and that no loaded CA's own file
//     constrains (others get an empty policy). One that cannot be read or
//     parsed gives every issuer whose subject hashes to it an empty
//     policy, with a warning.
//
// now (zero: not checked) is when the CAs outside their validity are
// warned of; they load, as Verify judges chains at registration time.
// A directory from which no CA loads returns no error here: LoadTrust
// decides whether that is one.
func readCADir(dir string, ns *Namespaces, enforce bool, now time.Time) ([]*x509.Certificate, []string, []string, error) {
	d, err := scanCADir(dir, enforce, now)
	if err != nil {
		return nil, nil, nil, err
	}
	if enforce {
		if err := applyCADirs([]*caDir{d}, ns); err != nil {
			return nil, nil, nil, err
		}
	}
	return d.certs, d.crls, d.warnings, nil
}

// caDir is what scanCADir found in one directory, before its policies go
// into a Namespaces.
type caDir struct {
	dir            string
	certs          []*x509.Certificate
	crls, warnings []string
	// own: the issuers constrained by their own policy file here;
	// ownPolicies their policies, foreign the rules of those files for
	// other issuers
	own                  []DN
	ownPolicies, foreign []*nsPolicy
	// the policy files of hashes whose certificates were all skipped:
	// their policies (empty for an issuer not of that hash), and the
	// hashes of those that could not be used
	skippedPolicies []*nsPolicy
	skippedHashes   []string
	// bare: the CAs filed under a hash without a policy file
	bare []bareCA
}

type bareCA struct {
	base    string
	subject DN
}

// scanCADir reads one directory of readCADir (the policy files only if
// enforce).
func scanCADir(dir string, enforce bool, now time.Time) (*caDir, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	present := map[string]bool{}
	for _, e := range ents {
		names = append(names, e.Name())
		present[e.Name()] = true
	}
	sort.Strings(names)
	d := &caDir{dir: dir}
	loaded := map[string]bool{}                 // certificate DER
	certsOf := map[string][]*x509.Certificate{} // by hash
	certFile := map[string]bool{}               // hashes with a <hash>.N name
	policyFile := map[string]string{}           // by hash
	for _, n := range names {
		ext := filepath.Ext(n)
		base := strings.TrimSuffix(n, ext)
		if len(base) != 8 || !isHexString(base) || len(ext) < 2 {
			continue
		}
		p := filepath.Join(dir, n)
		switch {
		case ext == ".namespaces" || (ext == ".signing_policy" && !present[base+".namespaces"]):
			policyFile[base] = p
		case ext[1] == 'r' && isDigits(ext[2:]):
			d.crls = append(d.crls, p)
		case isDigits(ext[1:]):
			certFile[base] = true
			c, note, err := readCACert(p, strings.ToLower(base), now)
			if err != nil {
				d.warnings = append(d.warnings, fmt.Sprintf("%s: skipped: %v", p, err))
				continue
			}
			certsOf[base] = append(certsOf[base], c)
			if loaded[string(c.Raw)] {
				continue // the same CA under its other hash
			}
			loaded[string(c.Raw)] = true
			d.certs = append(d.certs, c)
			if note != "" {
				d.warnings = append(d.warnings, fmt.Sprintf("%s: CA %q %s", p, SubjectName(c), note))
			}
		}
	}
	if !enforce {
		return d, nil
	}
	bases := make([]string, 0, len(certsOf))
	for base := range certsOf {
		bases = append(bases, base)
	}
	sort.Strings(bases)
	subjectsOf := func(base string) []DN {
		var out []DN
	next:
		for _, c := range certsOf[base] {
			dn, err := DNFromRaw(c.RawSubject)
			if err != nil {
				continue // readCACert parsed it
			}
			for _, o := range out {
				if o.Equal(dn) {
					continue next
				}
			}
			out = append(out, dn)
		}
		return out
	}
	// Each CA's own files: a CA filed under a hash with a policy file is
	// constrained by its own file(s) alone.
	for _, base := range bases {
		file, ok := policyFile[base]
		if !ok {
			continue
		}
		subjects := subjectsOf(base)
		d.own = append(d.own, subjects...)
		pols, err := readPolicyFile(file)
		for _, s := range subjects {
			// every CA of the hash has a policy, empty unless its file names it
			d.ownPolicies = append(d.ownPolicies, &nsPolicy{issuer: s.OneLine(), issuerDN: s, source: file})
		}
		if err != nil {
			why := strings.TrimPrefix(err.Error(), file+": ") // the parsers name the file
			for _, s := range subjects {
				d.warnings = append(d.warnings, fmt.Sprintf("%s: not used: %s: CA %q may issue no name until the file is fixed", file, why, s.OneLine()))
			}
			continue
		}
		named := make([]bool, len(subjects))
		for _, p := range pols {
			mine := false
			for i, s := range subjects {
				if p.issuerDN.Equal(s) {
					named[i], mine = true, true
				}
			}
			if mine {
				d.ownPolicies = append(d.ownPolicies, p)
			} else {
				// a rule for a sub-CA: it speaks for the sub-CA these
				// CAs issue, not for a namesake (Namespaces.policyIn)
				p.via = certsOf[base]
				d.foreign = append(d.foreign, p)
			}
		}
		for i, s := range subjects {
			if !named[i] {
				d.warnings = append(d.warnings, fmt.Sprintf("CA %q: %s names no policy for its subject: it may issue no name until the file is fixed", s.OneLine(), file))
			}
		}
	}
	for _, base := range sortedKeys(policyFile) {
		file := policyFile[base]
		if !certFile[base] {
			d.warnings = append(d.warnings, fmt.Sprintf("%s: not read: there is no certificate %s.0 for it", file, base))
			continue
		}
		if len(certsOf[base]) > 0 {
			continue
		}
		// every certificate of the hash was skipped
		pols, err := readPolicyFile(file)
		if err != nil {
			why := strings.TrimPrefix(err.Error(), file+": ")
			d.skippedHashes = append(d.skippedHashes, strings.ToLower(base))
			d.warnings = append(d.warnings, fmt.Sprintf("%s: not used: %s: no certificate of %s loaded; a CA of that hash may issue no name until the file is fixed", file, why, base))
			continue
		}
		for _, p := range pols {
			if h, err := dnHash(p.issuerDN); err != nil || h != strings.ToLower(base) {
				p = &nsPolicy{issuer: p.issuer, issuerDN: p.issuerDN, source: file}
			}
			d.skippedPolicies = append(d.skippedPolicies, p)
		}
	}
	for _, base := range bases {
		if _, ok := policyFile[base]; ok {
			continue
		}
		for _, subject := range subjectsOf(base) {
			d.bare = append(d.bare, bareCA{base, subject})
		}
	}
	return d, nil
}

// applyCADirs puts the policies scanCADir found in dirs into ns: the own
// policies of every directory first, then the rules for other issuers
// that no directory gives a policy file of their own, then an empty
// policy for each CA that no file names. Its warnings go to the
// directory's.
func applyCADirs(dirs []*caDir, ns *Namespaces) error {
	var own []DN
	for _, d := range dirs {
		own = append(own, d.own...)
		for _, p := range d.ownPolicies {
			if err := ns.add(p); err != nil {
				return fmt.Errorf("%s: %w", d.dir, err)
			}
		}
	}
	isOwn := func(dn DN) bool {
		for _, o := range own {
			if o.Equal(dn) {
				return true
			}
		}
		return false
	}
	// The files of the hashes whose certificates were all skipped: never
	// for a loaded CA's own, always instead of other files' rules.
	var standIn []DN
	skipped := map[string]bool{}
	for _, d := range dirs {
		for _, p := range d.skippedPolicies {
			if isOwn(p.issuerDN) {
				continue
			}
			standIn = append(standIn, p.issuerDN)
			if err := ns.add(p); err != nil {
				return fmt.Errorf("%s: %w", d.dir, err)
			}
		}
		for _, h := range d.skippedHashes {
			skipped[h] = true
		}
	}
	own = append(own, standIn...)
	// Rules for other issuers: a sub-CA no directory holds, or a CA
	// without policy files; never a CA that has its own, in any directory.
	for _, d := range dirs {
		for _, p := range d.foreign {
			if isOwn(p.issuerDN) {
				continue
			}
			if h, err := dnHash(p.issuerDN); err == nil && skipped[h] {
				// its own file is there, unusable: it may issue no name
				if err := ns.add(&nsPolicy{issuer: p.issuer, issuerDN: p.issuerDN, source: p.source}); err != nil {
					return fmt.Errorf("%s: %w", d.dir, err)
				}
				continue
			}
			if err := ns.add(p); err != nil {
				return fmt.Errorf("%s: %w", d.dir, err)
			}
		}
	}
	// A CA with neither file is not left unconstrained either (IGTF ships
	// both for every CA; one copied in by hand during a rollover would
	// otherwise issue any name): it may issue no name. CAs meant to be
	// unconstrained belong in trust.ca_files.
	for _, d := range dirs {
		var bare []string
		for _, b := range d.bare {
			if ns.hasUnbound(b.subject) {
				continue // its own file under its other hash names it
			}
			// another CA's file that names it speaks for it only in the
			// chains through that CA: elsewhere it issues no name (no
			// warning then: its issuer's file gives it its namespace)
			named := ns.policyFor(b.subject) != nil
			if err := ns.add(&nsPolicy{issuer: b.subject.OneLine(), issuerDN: b.subject, source: filepath.Join(d.dir, b.base) + ".* (no .namespaces or .signing_policy file)"}); err != nil {
				return fmt.Errorf("%s: %w", d.dir, err)
			}
			if !named {
				bare = append(bare, fmt.Sprintf("%q (%s)", b.subject.OneLine(), b.base))
			}
		}
		if len(bare) > 0 {
			shown := bare
			if len(shown) > 5 {
				shown = append(shown[:5:5], fmt.Sprintf("and %d more", len(bare)-5))
			}
			d.warnings = append(d.warnings, fmt.Sprintf("%s: %d CAs have no .namespaces or .signing_policy file, so they may issue no name (trust.namespaces = \"enforce\"; a CA meant to be unconstrained goes in trust.ca_files and out of the directory): %s",
				d.dir, len(bare), strings.Join(shown, ", ")))
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readCRLFile reads a CRL file of trust.crl_files or of a CA directory,
// refusing what is not a regular file or is larger than crl.MaxSize.
func readCRLFile(path string) ([]byte, error) {
	return fsutil.ReadRegular(path, crl.MaxSize)
}
