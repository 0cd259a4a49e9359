package crl

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
)

// TestNameKey: names RFC 5280 7.1 makes equal (string type, case, white
// space runs, the order of a multi-valued RDN's attributes) have one key;
// another value, attribute type or RDN order is another name.
func TestNameKey(t *testing.T) {
	cn, o := asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.ObjectIdentifier{2, 5, 4, 10}
	str := func(tag int, s string) asn1.RawValue { return asn1.RawValue{Tag: tag, Bytes: []byte(s)} }
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	type rdnSET []atv
	name := func(rdns ...rdnSET) []byte {
		b, err := asn1.Marshal(rdns)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	base := name(rdnSET{{o, str(asn1.TagPrintableString, "Example")}}, rdnSET{{cn, str(asn1.TagPrintableString, "People  CA")}})
	for _, c := range []struct {
		name string
		raw  []byte
		same bool
	}{
		{"ok UTF8String, other case, one space", name(rdnSET{{o, str(asn1.TagUTF8String, "EXAMPLE")}}, rdnSET{{cn, str(asn1.TagUTF8String, " people ca ")}}), true},
		{"fail another value", name(rdnSET{{o, str(asn1.TagPrintableString, "Example")}}, rdnSET{{cn, str(asn1.TagPrintableString, "People CA 2")}}), false},
		{"fail another attribute type", name(rdnSET{{o, str(asn1.TagPrintableString, "Example")}}, rdnSET{{o, str(asn1.TagPrintableString, "People CA")}}), false},
		{"fail RDNs in another order", name(rdnSET{{cn, str(asn1.TagPrintableString, "People CA")}}, rdnSET{{o, str(asn1.TagPrintableString, "Example")}}), false},
		{"fail one multi-valued RDN", name(rdnSET{{o, str(asn1.TagPrintableString, "Example")}, {cn, str(asn1.TagPrintableString, "People CA")}}), false},
		// a value must not spell the key's separators: one attribute whose
		// value reads as "Example", then another RDN, CN=People CA
		{"fail a value that spells another RDN", name(rdnSET{{o, str(asn1.TagUTF8String, "Example\x022.5.4.3=s\"people ca")}}), false},
		{"fail a value that spells another RDN (unquoted)", name(rdnSET{{o, str(asn1.TagUTF8String, "example\x022.5.4.3=speople ca")}}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var seq pkix.RDNSequence
			if _, err := asn1.Unmarshal(c.raw, &seq); err != nil {
				t.Fatal(err)
			}
			if got := SameName(base, c.raw); got != c.same {
				t.Fatalf("SameName %v", got)
			}
		})
	}
	ab := name(rdnSET{{o, str(asn1.TagPrintableString, "A")}, {cn, str(asn1.TagPrintableString, "B")}})
	ba := name(rdnSET{{cn, str(asn1.TagUTF8String, "b")}, {o, str(asn1.TagUTF8String, "a")}})
	if !SameName(ab, ba) {
		t.Error("a multi-valued RDN's attributes in another order are another name")
	}
	// one attribute whose value spells a multi-valued RDN's two
	if SameName(ab, name(rdnSET{{o, str(asn1.TagUTF8String, "a\x012.5.4.3=sb")}})) || SameName(ab, name(rdnSET{{o, str(asn1.TagUTF8String, "a\"\x012.5.4.3=s\"b")}})) {
		t.Error("a value that spells a multi-valued RDN is that RDN")
	}
	// values of a type encoding/asn1 does not decode (UniversalString, a
	// SEQUENCE) are told apart by their bytes
	universal := func(s string) asn1.RawValue {
		var b []byte
		for _, r := range s {
			b = append(b, 0, 0, byte(r>>8), byte(r))
		}
		return asn1.RawValue{Tag: 28, Bytes: b}
	}
	if SameName(name(rdnSET{{cn, universal("Good CA")}}), name(rdnSET{{cn, universal("Evil CA")}})) {
		t.Error("two UniversalString names are the same name")
	}
	if !SameName(name(rdnSET{{cn, universal("Good CA")}}), name(rdnSET{{cn, universal("Good CA")}})) {
		t.Error("a UniversalString name is not itself")
	}
	seqValue := func(n byte) asn1.RawValue {
		return asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: []byte{2, 1, n}}
	}
	if SameName(name(rdnSET{{cn, seqValue(1)}}), name(rdnSET{{cn, seqValue(2)}})) {
		t.Error("two SEQUENCE values are the same")
	}
	if SameName([]byte{0x30, 0x01}, []byte{0x30, 0x02}) {
		t.Error("two names that do not decode are the same name")
	}
}
