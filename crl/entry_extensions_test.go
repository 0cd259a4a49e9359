package crl

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// handEntry is one revokedCertificates entry as it goes on the wire, its
// entry extensions in order (duplicates, unknown critical ones: whatever a
// CA, or an attacker with a CA's key, may write; x509.CreateRevocationList
// refuses some of them).
type handEntry struct {
	Serial     *big.Int
	Time       time.Time        `asn1:"utc"`
	Extensions []pkix.Extension `asn1:"optional"`
}

// handTBS is a TBSCertList (RFC 5280 5.1) built field by field.
type handTBS struct {
	Version    int
	Signature  pkix.AlgorithmIdentifier
	Issuer     asn1.RawValue
	ThisUpdate time.Time        `asn1:"utc"`
	NextUpdate time.Time        `asn1:"utc"`
	Revoked    []handEntry      `asn1:"optional"`
	Extensions []pkix.Extension `asn1:"optional,explicit,tag:0"`
}

type handCRL struct {
	TBS       asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

var oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}

// handSignedCRL builds a v2 CRL of ca (an ECDSA P-256 test CA) with the
// entries and CRL extensions given and signs it with ca's key. number nil
// leaves out the cRLNumber extension.
func handSignedCRL(t *testing.T, ca *testpki.CA, number *big.Int, entries ...handEntry) []byte {
	t.Helper()
	alg := pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}
	tbs := handTBS{Version: 1, Signature: alg, Issuer: asn1.RawValue{FullBytes: ca.Cert.RawSubject},
		ThisUpdate: t0, NextUpdate: t0.Add(7 * 24 * time.Hour), Revoked: entries}
	if aki := ca.Cert.SubjectKeyId; len(aki) > 0 {
		v, err := asn1.Marshal(struct {
			ID []byte `asn1:"optional,tag:0"`
		}{aki})
		if err != nil {
			t.Fatal(err)
		}
		tbs.Extensions = append(tbs.Extensions, pkix.Extension{Id: oidExtAKI, Value: v})
	}
	if number != nil {
		v, err := asn1.Marshal(number)
		if err != nil {
			t.Fatal(err)
		}
		tbs.Extensions = append(tbs.Extensions, pkix.Extension{Id: oidExtCRLNumber, Value: v})
	}
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ca.Key.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("handSignedCRL signs with ECDSA keys, not %T", ca.Key)
	}
	sum := sha256.Sum256(tbsDER)
	sig, err := ca.Key.Sign(rand.Reader, sum[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(handCRL{TBS: asn1.RawValue{FullBytes: tbsDER}, Algorithm: alg, Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func entryExt(t *testing.T, oid asn1.ObjectIdentifier, critical bool, value any) pkix.Extension {
	t.Helper()
	v, err := asn1.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oid, Critical: critical, Value: v}
}

// TestEntryExtensions: a CRL entry may carry one reasonCode and one
// invalidityDate, and any non-critical extension imagetrust does not know;
// a second reasonCode (which of them holds?) makes the CRL unreadable, and
// a certificateIssuer (an indirect CRL: the entries after it name
// certificates of another CA), critical or not, or an unknown critical
// extension makes it unsupported. A CRL without a cRLNumber is refused when
// added to the index: its rollback could not be seen.
func TestEntryExtensions(t *testing.T) {
	ca := testpki.NewRoot(t, "Entry Ext CA")
	reason := func(code int) pkix.Extension {
		return entryExt(t, asn1.ObjectIdentifier{2, 5, 29, 21}, false, asn1.Enumerated(code))
	}
	invalidity := entryExt(t, asn1.ObjectIdentifier{2, 5, 29, 24}, false, t0.Add(-2*time.Hour))
	otherCA := entryExt(t, asn1.ObjectIdentifier{2, 5, 29, 29}, true,
		[]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: ca.Cert.RawSubject}})
	unknown := func(critical bool) pkix.Extension {
		return entryExt(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, critical, "x")
	}
	entry := func(serial int64, exts ...pkix.Extension) handEntry {
		return handEntry{Serial: big.NewInt(serial), Time: t0.Add(-time.Hour), Extensions: exts}
	}
	nonCritical := otherCA
	nonCritical.Critical = false

	for _, tc := range []struct {
		name    string
		number  *big.Int
		entries []handEntry
		reason  string // "" accepted
		revoked int64  // a serial then found with reason 1
	}{
		{name: "ok reasonCode and invalidityDate", number: big.NewInt(3),
			entries: []handEntry{entry(7, reason(1), invalidity)}, revoked: 7},
		{name: "ok unknown non-critical entry extension", number: big.NewInt(3),
			entries: []handEntry{entry(7, unknown(false), reason(1))}, revoked: 7},
		{name: "ok entry without extensions next to one with", number: big.NewInt(3),
			entries: []handEntry{entry(8), entry(7, reason(1))}, revoked: 7},
		{name: "fail duplicate reasonCode", number: big.NewInt(3),
			entries: []handEntry{entry(7, reason(1), reason(6))}, reason: ReasonParse},
		{name: "fail duplicate reasonCode, same value", number: big.NewInt(3),
			entries: []handEntry{entry(7, reason(1), reason(1))}, reason: ReasonParse},
		{name: "fail duplicate invalidityDate", number: big.NewInt(3),
			entries: []handEntry{entry(7, invalidity, reason(1), invalidity)}, reason: ReasonParse},
		{name: "fail certificateIssuer entry extension", number: big.NewInt(3),
			entries: []handEntry{entry(7, reason(1)), entry(9, otherCA, reason(1))}, reason: ReasonUnsupported},
		{name: "fail non-critical certificateIssuer entry extension", number: big.NewInt(3),
			entries: []handEntry{entry(9, nonCritical, reason(1))}, reason: ReasonUnsupported},
		{name: "fail unknown critical entry extension", number: big.NewInt(3),
			entries: []handEntry{entry(7, reason(1), unknown(true))}, reason: ReasonUnsupported},
		{name: "fail no cRLNumber", number: nil,
			entries: []handEntry{entry(7, reason(1))}, reason: ReasonParse},
		{name: "fail no cRLNumber, no entries", number: nil, reason: ReasonParse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := handSignedCRL(t, ca, tc.number, tc.entries...)
			ix := &Index{}
			l, err := ParseList(der)
			if err == nil {
				if err = l.Header.CheckSignatureFrom(ca.Cert); err != nil {
					t.Fatalf("hand-built CRL's signature does not verify: %v", err)
				}
				_, err = ix.AddList(l, ca.Cert, t0.Add(time.Hour), "test")
			}
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				e, _, ok := ix.Lookup(ca.Cert.RawSubject, big.NewInt(tc.revoked))
				if !ok || e.ReasonCode != 1 {
					t.Fatalf("serial %d: found %v, entry %+v", tc.revoked, ok, e)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Fatalf("want a refusal for %s, got %v", tc.reason, err)
			}
		})
	}
}
