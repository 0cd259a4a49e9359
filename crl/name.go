package crl

import (
	"encoding/asn1"
	"encoding/hex"
	"slices"
	"strconv"
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
	var seq []nameKeyRDNSET
	rest, err := asn1.Unmarshal(raw, &seq)
	if err != nil || len(rest) > 0 {
		return "\x00raw\x00" + string(raw)
	}
	var b strings.Builder
	for _, set := range seq {
		attrs := make([]string, 0, len(set))
		for _, atv := range set {
			attrs = append(attrs, atv.Type.String()+"="+valueKey(atv.Value))
		}
		slices.Sort(attrs)
		b.WriteString(strings.Join(attrs, "\x01"))
		b.WriteByte('\x02')
	}
	return b.String()
}

// nameKeyATV and nameKeyRDNSET are pkix.AttributeTypeAndValue and
// pkix.RelativeDistinguishedNameSET with the value kept raw: pkix's
// decodes a value of a type encoding/asn1 does not know (UniversalString,
// a SEQUENCE) as nil, and every such value would have had one key.
type nameKeyATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

type nameKeyRDNSET []nameKeyATV

// valueKey is the key of one attribute value: a string type's text folded
// (foldName), quoted so that no value can spell the separators of NameKey
// (another attribute of its RDN, another RDN); any other value, or a
// string that does not decode, its DER in hex.
func valueKey(v asn1.RawValue) string {
	if v.Class == asn1.ClassUniversal && !v.IsCompound {
		switch v.Tag {
		case asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagT61String, asn1.TagIA5String, asn1.TagBMPString, asn1.TagNumericString:
			var s any
			if rest, err := asn1.Unmarshal(v.FullBytes, &s); err == nil && len(rest) == 0 {
				if str, ok := s.(string); ok {
					return "s" + strconv.Quote(foldName(str))
				}
			}
		}
	}
	return "x" + hex.EncodeToString(v.FullBytes)
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
