package crl

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"slices"

	"github.com/imagetrust/imagetrust/internal/cms"
)

// The CRL job judges a catalogue record, whose imagetrust_chain names each
// certificate by issuer, serial and key identifier only; which
// distribution points a certificate names (Ref.DistributionPoints) it reads
// from the certificates the record's imagetrust_signature embeds. It does
// so only on runs whose index holds a CRL that names a distribution point
// (Index.namesPoints): for every other CRL the points change nothing
// (takesPoints), and a site whose CAs publish complete CRLs, as IGTF CAs
// do, parses no signature for them.

// sigPoints is what the certificates of one signature say of their
// distribution points, by pointsKey of their issuer and serial.
type sigPoints map[string][]certPoints

// certPoints is what one embedded certificate says of its distribution
// points: its authorityKeyIdentifier, to tell namesakes apart, and its
// cRLDistributionPoints URIs.
type certPoints struct {
	aki    string
	points []string
}

// pointsKey names a certificate by its issuer (as pkix.Name.String()
// prints it, as imagetrust_chain names it) and serial.
func pointsKey(issuer string, serial *big.Int) string {
	return issuer + "\x00" + serial.Text(16)
}

// readPoints reads the certificates of the signature s (base64, at most
// maxSignatureB64 long: the caller checks); nil when it is no SignedData.
func readPoints(s string) sigPoints {
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil
	}
	sd, err := cms.Parse(der)
	if err != nil {
		return nil
	}
	return certsPoints(sd.Certificates)
}

// certsPoints is what certificates say of their distribution points.
func certsPoints(certs []*x509.Certificate) sigPoints {
	out := sigPoints{}
	for _, c := range certs {
		k := pointsKey(c.Issuer.String(), c.SerialNumber)
		out[k] = append(out[k], certPoints{aki: string(c.AuthorityKeyId), points: c.CRLDistributionPoints})
	}
	return out
}

// pointsOf fills in the distribution points of the refs a record's
// imagetrust_chain names (RecordRefs) from the certificates its
// imagetrust_signature embeds (sp): the certificate of the same issuer
// and serial, and authorityKeyIdentifier when both have one. A Ref whose
// certificate is not embedded keeps PointsKnown false (every CRL of its
// kind speaks for it, as before partitions were told apart). Embedded
// namesakes that disagree on their points are no legitimate signature's
// (a CA issues one certificate per serial, RFC 5280 4.1.2.2), but a
// forgery's: the certificate bag is covered by no signature, so whoever
// can write the record can append a certificate of their own making with
// the signer's issuer name and serial, which the verifier never takes for
// the signer (it finds the real one first, or fails), naming a point whose
// CRLs are fresh. Falling back on every CRL of the kind then let that
// point's CRL speak for a certificate whose own point's CRLs were
// withheld; pointsOf returns a description of the first such conflict
// instead, and the job judges the record unknown (fail closed). The
// certificates are the record's untrusted bytes; the proxy judges the
// certificates it verifies (ChainRefs), not these.
func pointsOf(refs []Ref, sp sigPoints) (conflict string) {
	for i := range refs {
		r := &refs[i]
		if r.Serial == nil {
			continue
		}
		var found []string
		known := false
		for _, cp := range sp[pointsKey(r.Issuer, r.Serial)] {
			if len(r.AKI) > 0 && cp.aki != "" && cp.aki != string(r.AKI) {
				continue
			}
			if known && !slices.Equal(found, cp.points) {
				if conflict == "" {
					conflict = "imagetrust_signature embeds certificates of issuer " + r.Issuer + " and serial " + r.Serial.Text(16) +
						" that name different CRL distribution points: one is not that CA's"
				}
				found, known = nil, false
				break
			}
			found, known = cp.points, true
		}
		r.DistributionPoints, r.PointsKnown = found, known
	}
	return conflict
}

// knownPoints fills in, from the CA certificates the job knows (known:
// the configured CAs, those of the IGTF directory sources and the
// embedded intermediates that chain to them, all verified or the site's
// own), the distribution points of the refs whose certificate is one of
// them (same issuer and serial, and authorityKeyIdentifier when both have
// one): an intermediate the trust files hold, which a signature need not
// embed, is judged by the points its certificate names, as the verifier
// judges it (ChainRefs), not by every CRL of its kind. These certificates
// outrank the record's own (pointsOf), whose bag no signature covers.
// Known namesakes that disagree on their points leave the ref as it was.
func knownPoints(refs []Ref, known sigPoints) {
	for i := range refs {
		r := &refs[i]
		if r.Serial == nil {
			continue
		}
		var found []string
		n := 0
		for _, cp := range known[pointsKey(r.Issuer, r.Serial)] {
			if len(r.AKI) > 0 && cp.aki != "" && cp.aki != string(r.AKI) {
				continue
			}
			if n > 0 && !slices.Equal(found, cp.points) {
				n = -1
				break
			}
			found, n = cp.points, n+1
		}
		if n > 0 {
			r.DistributionPoints, r.PointsKnown = found, true
		}
	}
}

// pointsMemo remembers readPoints by the SHA-256 of a signature from one
// run of a Job to the next (as sigMemo does for EmbeddedCAs): a run keeps
// only the signatures it read, at most maxSigMemo, so a run that reads
// none (no CRL names a point) keeps nothing.
type pointsMemo struct {
	prev, cur map[[32]byte]sigPoints
}

func (p *pointsMemo) begin() { p.cur = map[[32]byte]sigPoints{} }

func (p *pointsMemo) end() { p.prev, p.cur = p.cur, nil }

// read is readPoints(s), remembered.
func (p *pointsMemo) read(s string) sigPoints {
	key := sha256.Sum256([]byte(s))
	if sp, ok := p.cur[key]; ok {
		return sp
	}
	sp, ok := p.prev[key]
	if !ok {
		sp = readPoints(s)
	}
	if p.cur != nil && len(p.cur) < maxSigMemo {
		p.cur[key] = sp
	}
	return sp
}

// namesPoints reports whether a CRL of the index names a distribution
// point in its issuingDistributionPoint.
func (ix *Index) namesPoints() bool {
	for _, cs := range ix.byRaw {
		for _, c := range cs {
			if _, names := c.idpPoints(); names {
				return true
			}
		}
	}
	return false
}
