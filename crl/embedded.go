package crl

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
)

// PropSignature is the record's CMS SignedData (base64 DER), whose embedded
// certificates EmbeddedCAs reads (validator.PropSignature).
const PropSignature = "imagetrust_signature"

// MaxEmbeddedCAs bounds how many distinct embedded CA certificates that
// chain to an anchor one run takes, whatever the catalogue holds.
const MaxEmbeddedCAs = 1024

// maxCollected bounds how many distinct embedded CA certificates one run
// reads before it looks for their chains, and maxPerRecord how many of one
// record's (real ones carry a handful: the chains of three signers).
// Certificates that chain to no anchor count here but never against
// MaxEmbeddedCAs, so certificate bags stuffed with made-up CAs (a bag is
// not signed) must fill maxCollected, from a thousand records, to push
// out a real intermediate.
const (
	maxCollected = 16 * MaxEmbeddedCAs
	maxPerRecord = 16
)

// maxSignatureB64 is the largest imagetrust_signature EmbeddedCAs decodes:
// the size bound of a SignedData (1 MiB), in base64.
const maxSignatureB64 = (cms.MaxInputSize + 2) / 3 * 4

// Embedded is what EmbeddedCAs found.
type Embedded struct {
	// CAs are the embedded CA certificates that chain to an anchor and are
	// not anchors themselves, each once.
	CAs []*x509.Certificate
	// Unreadable counts records whose imagetrust_signature is not a
	// SignedData EmbeddedCAs can read; Unchained counts embedded CA
	// certificates that chain to no anchor (ignored).
	Unreadable, Unchained int
	// Truncated is set when more than MaxEmbeddedCAs distinct chaining CA
	// certificates, or more than maxCollected in all, were embedded: the
	// rest were not considered.
	Truncated bool
}

// EmbeddedCAs returns the intermediate CA certificates that the records of
// imgs embed in their imagetrust_signature and that chain to anchors (the
// configured CAs, each one an anchor), so that the CRLs those intermediates
// sign, and the CRL that revokes one of them, can be accepted although the
// site's trust files hold only the roots: every certificate a record's
// imagetrust_chain names then has the CRL of its issuer within reach.
//
// A certificate is taken only when it is a CA (basic constraints) and
// x509.Verify builds a path from it to an anchor through the CA
// certificates of every record (a record may carry only part of a long
// chain), valid at now or, for a CA that has since expired, at its own
// notBefore: revocations it signed still matter for images registered
// while it was valid. Records are untrusted bytes: a certificate that does
// not chain is ignored, however it is named, so a forged record cannot add
// a CA whose CRLs the job would accept.
//
// Each distinct imagetrust_signature is parsed once a call; the job also
// keeps what each signature holds across its runs (sigMemo), never whether
// a certificate chains: that is decided again every call.
func EmbeddedCAs(imgs []Image, anchors []*x509.Certificate, now time.Time) Embedded {
	return embeddedCAs(imgs, anchors, now, nil)
}

// maxSigMemo bounds how many signatures a sigMemo remembers (about a
// hundred bytes each, the certificates shared).
const maxSigMemo = 1 << 18

// sigMemo remembers, by SHA-256 of an imagetrust_signature, what
// EmbeddedCAs read from it: whether cms.Parse refused it, and else its CA
// certificates (IsCA with basic constraints), in order, at most
// maxPerRecord+1 of them (enough to tell a record with more). It holds
// only what parsing gives, a function of the bytes: the anchors, the time
// and so every chain are looked at again each call. A call keeps only the
// signatures its records carry, at most maxSigMemo.
type sigMemo struct {
	m map[[32]byte]sigContent
}

type sigContent struct {
	unreadable bool
	cas        []sigCert
}

type sigCert struct {
	sum  [32]byte // sha256 of c.Raw
	cert *x509.Certificate
}

// read returns what the signature s (base64, at most maxSignatureB64
// long) holds; intern shares the certificates of one call.
func readSignature(s string, intern map[[32]byte]*x509.Certificate) sigContent {
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return sigContent{unreadable: true}
	}
	sd, err := cms.Parse(der)
	if err != nil {
		return sigContent{unreadable: true}
	}
	var out sigContent
	for _, c := range sd.Certificates {
		if !c.IsCA || !c.BasicConstraintsValid {
			continue
		}
		if len(out.cas) == maxPerRecord+1 {
			break
		}
		sum := sha256.Sum256(c.Raw)
		if have, ok := intern[sum]; ok {
			c = have
		} else {
			intern[sum] = c
		}
		out.cas = append(out.cas, sigCert{sum: sum, cert: c})
	}
	return out
}

// embeddedCAs is EmbeddedCAs remembering the signatures' contents in memo
// across calls (nil: within this call only).
func embeddedCAs(imgs []Image, anchors []*x509.Certificate, now time.Time, memo *sigMemo) Embedded {
	var out Embedded
	isAnchor := map[[32]byte]bool{}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		isAnchor[sha256.Sum256(a.Raw)] = true
		roots.AddCert(a)
	}
	seen := map[[32]byte]bool{}
	var collected []*x509.Certificate
	var prev map[[32]byte]sigContent
	if memo != nil {
		prev = memo.m
	}
	cur := map[[32]byte]sigContent{}
	intern := map[[32]byte]*x509.Certificate{}
	for _, img := range imgs {
		s := img.Properties[PropSignature]
		if s == "" || !isRecord(img.Properties) {
			continue
		}
		if len(s) > maxSignatureB64 {
			out.Unreadable++
			continue
		}
		key := sha256.Sum256([]byte(s))
		sc, ok := cur[key]
		if !ok {
			if sc, ok = prev[key]; !ok {
				sc = readSignature(s, intern)
			}
			if len(cur) < maxSigMemo {
				cur[key] = sc
			}
		}
		if sc.unreadable {
			out.Unreadable++
			continue
		}
		taken := 0
		for _, c := range sc.cas {
			if taken == maxPerRecord {
				out.Truncated = true
				break
			}
			taken++
			if seen[c.sum] || isAnchor[c.sum] {
				continue
			}
			if len(collected) == maxCollected {
				out.Truncated = true
				break
			}
			seen[c.sum] = true
			collected = append(collected, c.cert)
		}
	}
	if memo != nil {
		memo.m = cur
	}
	candidates, unlinked := linkedToAnchors(collected, anchors)
	out.Unchained = unlinked
	if len(candidates) > MaxEmbeddedCAs {
		candidates, out.Truncated = candidates[:MaxEmbeddedCAs], true
	}
	inter := x509.NewCertPool()
	for _, c := range candidates {
		inter.AddCert(c)
	}
	for _, c := range candidates {
		if chainsTo(c, roots, inter, now) {
			out.CAs = append(out.CAs, c)
		} else {
			out.Unchained++
		}
	}
	return out
}

// linkedToAnchors returns the certificates of certs that a chain of
// signatures links to an anchor (each signed by an anchor or by one
// already linked: CheckSignatureFrom, which also wants the signer to be a
// CA that may sign certificates), nearest the anchors first, and how many
// are not linked. Only a signature check per name match is spent on a
// certificate that links to nothing; x509.Verify then judges the linked
// ones' paths and validity (chainsTo).
func linkedToAnchors(certs, anchors []*x509.Certificate) (linked []*x509.Certificate, unlinked int) {
	// Each pass checks the pending certificates against the signers the
	// pass before added (the anchors first), so no pair is checked twice.
	bySubject := func(cs []*x509.Certificate) map[string][]*x509.Certificate {
		m := map[string][]*x509.Certificate{}
		for _, c := range cs {
			m[string(c.RawSubject)] = append(m[string(c.RawSubject)], c)
		}
		return m
	}
	signers, pending := bySubject(anchors), certs
	for len(signers) > 0 {
		var next, added []*x509.Certificate
		for _, c := range pending {
			ok := false
			for _, p := range signers[string(c.RawIssuer)] {
				if c.CheckSignatureFrom(p) == nil {
					ok = true
					break
				}
			}
			if ok {
				added = append(added, c)
			} else {
				next = append(next, c)
			}
		}
		linked = append(linked, added...)
		signers, pending = bySubject(added), next
	}
	return linked, len(pending)
}

// chainsTo reports whether x509.Verify finds a path from c to roots, at now
// or at c's notBefore.
func chainsTo(c *x509.Certificate, roots, inter *x509.CertPool, now time.Time) bool {
	for _, at := range []time.Time{now, c.NotBefore} {
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			return true
		}
	}
	return false
}
