package crl

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestRevocationAppliesEdges: aACompromise applies to a person whatever
// the dates; a date-bound reason applies to an image registered at the very
// revocation time ("at or after").
func TestRevocationAppliesEdges(t *testing.T) {
	reg := t0
	if !RevocationApplies(RoleCreator, ReasonAACompromise, reg.Add(time.Hour), reg, false) {
		t.Error("aACompromise after registration does not apply")
	}
	if !RevocationApplies(RoleApprover, ReasonSuperseded, reg, reg, false) {
		t.Error("superseded at exactly the registration time does not apply")
	}
	if RevocationApplies(RoleApprover, ReasonSuperseded, reg.Add(time.Second), reg, false) {
		t.Error("superseded a second after registration applies")
	}
}

// TestVerifyRefusesMore: a CRL whose issuer name is not the CA's is refused
// even when the CA holds the key that signed it; unknown critical
// extensions and partitioned (onlySomeReasons) or indirect CRLs are refused.
func TestVerifyRefusesMore(t *testing.T) {
	root := testpki.NewRoot(t, "Verify Root")
	ca := root.Intermediate("Verify CA")
	sameKey := root.Intermediate("Renamed CA", testpki.WithSigner(ca.Key))
	good := ca.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: t0})
	critical, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(3), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{0x05, 0x00}}},
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		der    []byte
		ca     *x509.Certificate
		reason string
	}{
		{"ok signed by its CA", good, ca.Cert, ""},
		{"fail another CA name with the same key", good, sameKey.Cert, ReasonWrongIssuer},
		{"fail unknown critical extension", critical, ca.Cert, ReasonUnsupported},
		{"fail onlySomeReasons", ca.CRL(pki.CRLTemplate{Number: 4, ThisUpdate: t0, IDP: []byte{0x30, 0x04, 0x83, 0x02, 0x06, 0x40}}), ca.Cert, ReasonUnsupported},
		{"fail indirectCRL", ca.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0, IDP: []byte{0x30, 0x03, 0x84, 0x01, 0xff}}), ca.Cert, ReasonUnsupported},
		{"fail onlyContainsAttributeCerts", ca.CRL(pki.CRLTemplate{Number: 7, ThisUpdate: t0, IDP: []byte{0x30, 0x03, 0x85, 0x01, 0xff}}), ca.Cert, ReasonUnsupported},
		// (mutation testing: checkIDP's refusal of both flags dropped)
		{"fail both onlyContainsUserCerts and onlyContainsCACerts", ca.CRL(pki.CRLTemplate{Number: 6, ThisUpdate: t0, IDP: []byte{0x30, 0x06, 0x81, 0x01, 0xff, 0x82, 0x01, 0xff}}), ca.Cert, ReasonParse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rl, err := Parse(tc.der)
			if err != nil {
				t.Fatal(err)
			}
			if got := reasonOf(Verify(rl, tc.ca)); got != tc.reason {
				t.Fatalf("reason %q, want %q", got, tc.reason)
			}
		})
	}
}

// TestCheckRevocationBeatsHold: an image whose creator is on hold and whose
// approver is revoked is revoked (final), not on hold (liftable).
func TestCheckRevocationBeatsHold(t *testing.T) {
	root := testpki.NewRoot(t, "Hold Root")
	ca := root.Intermediate("Hold People CA")
	creator := ca.Leaf(testpki.Name("Held Creator"), testpki.WithSerial(11))
	approver := ca.Leaf(testpki.Name("Revoked Approver"), testpki.WithSerial(12))
	reg := t0.Add(-30 * 24 * time.Hour)
	rl, err := Parse(ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(24 * time.Hour), Entries: []pki.Revoked{
		{Serial: big.NewInt(11), Time: t0.Add(-2 * time.Hour), Reason: ReasonCertificateHold},
		{Serial: big.NewInt(12), Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	ix := &Index{}
	if err := ix.Add(rl, ca.Cert, t0); err != nil {
		t.Fatal(err)
	}
	refs := append(ChainRefs([]*x509.Certificate{creator.Cert, ca.Cert, root.Cert}, RoleCreator),
		ChainRefs([]*x509.Certificate{approver.Cert, ca.Cert, root.Cert}, RoleApprover)...)
	rev := ix.Check(refs, reg, false)
	if rev == nil || rev.Hold() || rev.Role != RoleApprover {
		t.Fatalf("got %+v, want the approver's keyCompromise", rev)
	}
}

// TestCoveringByKey: a CRL of another CA of the same name (another key)
// does not revoke a certificate whose authorityKeyIdentifier names this CA.
func TestCoveringByKey(t *testing.T) {
	root := testpki.NewRoot(t, "Key Root")
	ca := root.Intermediate("Same Name CA")
	twin := testpki.NewRoot(t, "Same Name CA")
	leaf := ca.Leaf(testpki.Name("Signer"), testpki.WithSerial(77))
	rl, err := Parse(twin.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), Entries: []pki.Revoked{{Serial: big.NewInt(77), Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise}}}))
	if err != nil {
		t.Fatal(err)
	}
	ix := &Index{}
	if err := ix.Add(rl, twin.Cert, t0); err != nil {
		t.Fatal(err)
	}
	if rev := ix.CheckChain([]*x509.Certificate{leaf.Cert, ca.Cert, root.Cert}, RoleCreator, t0.Add(-30*24*time.Hour), false); rev != nil {
		t.Fatalf("revoked by the CRL of another key: %+v", rev)
	}
}

// TestHasCRLForScope: a user-certificates-only CRL does not count as a CRL
// for a CA certificate (require_crl).
func TestHasCRLForScope(t *testing.T) {
	root := testpki.NewRoot(t, "Scope Root")
	ca := root.Intermediate("Scope CA")
	sub := ca.Intermediate("Scope Sub CA")
	leaf := ca.Leaf(testpki.Name("User"))
	rl, err := Parse(ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), IDP: pki.IDPOnlyUserCerts}))
	if err != nil {
		t.Fatal(err)
	}
	ix := &Index{}
	if err := ix.Add(rl, ca.Cert, t0); err != nil {
		t.Fatal(err)
	}
	if !ix.HasCRLFor(leaf.Cert) {
		t.Error("user-only CRL not counted for a user certificate")
	}
	if ix.HasCRLFor(sub.Cert) {
		t.Error("user-only CRL counted for a CA certificate")
	}
}

// TestPlanNeverReactivatesOperatorDeactivation: only images the CRL job
// deactivated for a hold are reactivated when valid.
func TestPlanNeverReactivatesOperatorDeactivation(t *testing.T) {
	img := Image{ID: "i", Status: StatusDeactivated, Properties: map[string]string{PropGlobalValidity: StateValid}}
	if c := Plan(img, StateValid, nil, "no revocation applies"); c != nil && c.Reactivate {
		t.Fatalf("operator-deactivated image reactivated: %+v", c)
	}
	img.Properties[PropGlobalValidity] = StateHold
	img.Properties[PropDeactivatedBy] = DeactivatedByHold
	if c := Plan(img, StateValid, nil, "hold lifted"); c == nil || !c.Reactivate {
		t.Fatalf("hold-deactivated image not reactivated: %+v", c)
	}
}

// TestEntryReasonCodeRange: reason codes outside RFC 5280's (7 is unused,
// above 10 undefined) make the CRL unreadable rather than date-bound.
func TestEntryReasonCodeRange(t *testing.T) {
	ca := testpki.NewRoot(t, "Reason CA")
	for _, code := range []int{7, 11} {
		der := ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0, Entries: []pki.Revoked{{Serial: big.NewInt(5), Time: t0, Reason: code}}})
		if _, err := ParseList(der); err == nil {
			t.Errorf("reason code %d accepted", code)
		}
	}
}

// TestStaleWithoutNextUpdate: a CRL without nextUpdate (which RFC 5280
// 5.1.2.5 requires of conforming issuers) is stale once it is older than
// the index's MaxAge (DefaultMaxAge when unset), plus grace, for the
// stale warning as for refuse_stale: it was never stale, however long its
// CA had stopped publishing.
func TestStaleWithoutNextUpdate(t *testing.T) {
	ca := testpki.NewRoot(t, "NoNext CA")
	der := ca.CRLWithoutNextUpdate(pki.CRLTemplate{Number: 1, ThisUpdate: t0})
	l := mustList(t, der)
	if !l.Header.NextUpdate.IsZero() {
		t.Fatal("the CRL has a nextUpdate")
	}
	add := func(maxAge time.Duration) (*Index, *CRL) {
		ix := &Index{MaxAge: maxAge}
		c, err := ix.AddList(mustList(t, der), ca.Cert, t0.Add(time.Hour), "")
		if err != nil {
			t.Fatal(err)
		}
		return ix, c
	}
	for _, c := range []struct {
		name   string
		maxAge time.Duration
		at     time.Duration
		grace  time.Duration
		stale  bool
	}{
		{"ok within the default maximum age", 0, DefaultMaxAge - time.Hour, 0, false},
		{"fail past the default maximum age", 0, DefaultMaxAge + time.Hour, 0, true},
		{"ok past the default maximum age, within grace", 0, DefaultMaxAge + time.Hour, 2 * time.Hour, false},
		{"fail past a configured maximum age", 2 * time.Hour, 3 * time.Hour, 0, true},
		{"ok within a configured maximum age", 60 * 24 * time.Hour, 40 * 24 * time.Hour, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix, crl := add(c.maxAge)
			if got := crl.Stale(t0.Add(c.at), c.grace); got != c.stale {
				t.Fatalf("stale %v", got)
			}
			// and under refuse_stale, an image whose CA it is becomes unknown
			leaf := ca.Leaf(testpki.Name("Creator"))
			ref := ChainRefs([]*x509.Certificate{leaf.Cert, ca.Cert}, RoleCreator)
			if got := ix.StaleFor(ref[0], t0.Add(c.at), c.grace) != nil; got != c.stale {
				t.Fatalf("StaleFor %v", got)
			}
		})
	}
}

// TestKeepFuture: an index with KeepFuture (the verifier's trust store,
// which has no previous CRL of a CA to fall back on) takes a CRL dated
// beyond now plus ClockSkew, marked Future, instead of refusing it; its
// entries revoke, but its date outranks no CRL of its CA dated in time:
// it lifts none of their holds, supersedes none, and does not stand for
// the CA's freshness over them. Without KeepFuture it is refused
// (ReasonFuture), as the CRL job does.
func TestKeepFuture(t *testing.T) {
	ca := testpki.NewRoot(t, "Ahead CA")
	leaf := ca.Leaf(testpki.Name("Creator"))
	ref := ChainRefs([]*x509.Certificate{leaf.Cert, ca.Cert}, RoleCreator)
	now := t0
	ahead := now.Add(24 * time.Hour)
	// a complete CRL dated a day ahead, and the CA's user-only CRL dated
	// in time, which puts the creator on hold and goes stale in 2 hours
	complete := ca.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: ahead, NextUpdate: ahead.AddDate(0, 0, 7)})
	hold := pki.Revoked{Serial: leaf.Cert.SerialNumber, Time: now.Add(-2 * time.Hour), Reason: ReasonCertificateHold}
	users := ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(2 * time.Hour), IDP: pki.IDPOnlyUserCerts, Entries: []pki.Revoked{hold}})

	t.Run("fail refused without KeepFuture", func(t *testing.T) {
		ix := &Index{ClockSkew: 5 * time.Minute}
		var e *Error
		if _, err := ix.AddList(mustList(t, complete), ca.Cert, now, ""); !errors.As(err, &e) || e.Reason != ReasonFuture {
			t.Fatalf("%v", err)
		}
	})
	ix := &Index{ClockSkew: 5 * time.Minute, KeepFuture: true}
	c, err := ix.AddList(mustList(t, complete), ca.Cert, now, "")
	if err != nil || !c.Future {
		t.Fatalf("%v, future %v", err, c != nil && c.Future)
	}
	u, err := ix.AddList(mustList(t, users), ca.Cert, now, "")
	if err != nil || u.Future {
		t.Fatalf("%v, future %v", err, u != nil && u.Future)
	}
	t.Run("fail the hold stands", func(t *testing.T) {
		if r := ix.Check(ref, now.AddDate(0, -1, 0), false); r == nil || !r.Hold() {
			t.Fatalf("revocation %+v", r)
		}
	})
	t.Run("ok the CRL dated in time is not superseded", func(t *testing.T) {
		if ix.Superseded(u) {
			t.Fatal("superseded by a CRL dated ahead")
		}
	})
	t.Run("fail the CRL dated in time goes stale", func(t *testing.T) {
		if s := ix.StaleFor(ref[0], now.Add(3*time.Hour), 0); s != u {
			t.Fatalf("StaleFor %v", s)
		}
	})
	t.Run("fail its entries revoke", func(t *testing.T) {
		ix := &Index{ClockSkew: 5 * time.Minute, KeepFuture: true}
		e := pki.Revoked{Serial: leaf.Cert.SerialNumber, Time: now.Add(-2 * time.Hour), Reason: ReasonKeyCompromise}
		if _, err := ix.AddList(mustList(t, ca.CRL(pki.CRLTemplate{Number: 3, ThisUpdate: ahead, NextUpdate: ahead.AddDate(0, 0, 7), Entries: []pki.Revoked{e}})), ca.Cert, now, ""); err != nil {
			t.Fatal(err)
		}
		if r := ix.Check(ref, now.AddDate(0, -1, 0), false); r == nil || r.Reason != ReasonKeyCompromise {
			t.Fatalf("revocation %+v", r)
		}
	})
}

// TestEntryTimeBoundaries: an entry's revocationDate reads as RFC 5280
// 4.1.2.5 says: UTCTime 49 is 2049 and 50 is 1950 (a CA writes 2050 and
// later as GeneralizedTime, as crypto/x509 does), and a GeneralizedTime
// with fractional seconds, or without its Z, is no time (the CRL is
// refused, its CA's last good CRL kept). A revocation time read a century
// off would turn a date-bound reason (RevocationApplies) on or off.
func TestEntryTimeBoundaries(t *testing.T) {
	ca := testpki.NewRoot(t, "Entry Time CA")
	for _, tc := range []struct {
		name string
		at   time.Time
	}{
		{"ok last second of 2049 (UTCTime 49)", time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"ok first second of 2050 (GeneralizedTime)", time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"ok 1950 (UTCTime 50)", time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustList(t, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0, NextUpdate: t0.Add(time.Hour),
				Entries: []pki.Revoked{{Serial: big.NewInt(9), Time: tc.at, Reason: ReasonSuperseded}}}))
			e, ok := l.Find(big.NewInt(9))
			if !ok || !e.RevocationTime.Equal(tc.at) {
				t.Fatalf("revocation time %v (found %v), want %v", e, ok, tc.at)
			}
		})
	}
	for _, tc := range []struct {
		name string
		tag  byte
		v    string
		want time.Time
	}{
		{"ok UTCTime 49", tagUTCTime, "491231235959Z", time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"ok UTCTime 50", tagUTCTime, "500101000000Z", time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"ok GeneralizedTime 2050", tagGeneralizedTime, "20500101000000Z", time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"fail GeneralizedTime with fractional seconds", tagGeneralizedTime, "20500101000000.5Z", time.Time{}},
		{"fail GeneralizedTime without Z", tagGeneralizedTime, "20500101000000", time.Time{}},
		{"fail UTCTime with an offset", tagUTCTime, "4912312359+0100", time.Time{}},
		{"fail UTCTime without seconds", tagUTCTime, "4912312359Z", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseTime(tc.tag, []byte(tc.v))
			if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
				t.Fatalf("%v %v, want %v", got, ok, tc.want)
			}
		})
	}
}
