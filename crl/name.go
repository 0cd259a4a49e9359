package crl

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// NameKey is the form in which a CRL's issuer and a certificate's issuer
// are compared (raw DER names): two names that RFC 5280 7.1 makes equal
// have the same key. Each attribute value of a DirectoryString type
// (PrintableString, UTF8String, and the Teletex, BMP and IA5 strings Go
// decodes) is compared as text whatever its string type, case folded and
// its white space runs made one space, trimmed (caseIgnoreMatch with the
// insignificant space handling of RFC 4518, as validator.DN.Equal
// compares names; RFC 4518's Unicode normalisation is not applied); the
// attributes of a multi-valued RDN in any order. So a CRL whose issuer is
// a PrintableString, or differs in case, names the CA certificate whose
// subject is a UTF8String. A name that does not decode keys as its bytes.
func NameKey(raw []byte) string {
	var seq pkix.RDNSequence
	rest, err := asn1.Unmarshal(raw, &seq)
	if err != nil || len(rest) > 0 {
		return "\x00raw\x00" + string(raw)
	}
	var b strings.Builder
	for _, set := range seq {
		attrs := make([]string, 0, len(set))
		for _, atv := range set {
			var v string
			switch s := atv.Value.(type) {
			case string:
				v = "s" + foldName(s)
			case []byte:
				v = "x" + hex.EncodeToString(s)
			default:
				v = fmt.Sprintf("%T%v", s, s)
			}
			attrs = append(attrs, atv.Type.String()+"="+v)
		}
		slices.Sort(attrs)
		b.WriteString(strings.Join(attrs, "\x01"))
		b.WriteByte('\x02')
	}
	return b.String()
}

// SameName reports whether two raw DER names are the same name (NameKey).
func SameName(a, b []byte) bool {
	return string(a) == string(b) || NameKey(a) == NameKey(b)
}

// foldName folds case and white space (runs made one space, trimmed).
func foldName(s string) string {
	return strings.ToLower(strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " "))
}

// nameStringKey is the key of an issuer given as pkix.Name.String()
// prints it (a catalogue record's): case and white space folded, as
// NameKey folds values (the string type is not printed).
func nameStringKey(s string) string { return foldName(s) }
