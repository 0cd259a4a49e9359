package validator

import (
	"bytes"
	"crypto/md5"  //nolint:gosec // OpenSSL's old subject hash: a file name, not a security check
	"crypto/sha1" //nolint:gosec // OpenSSL's subject hash: a file name, not a security check
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"unicode/utf16"
	"unicode/utf8"
)

// subjectHashes are the names OpenSSL looks a CA certificate up by in a
// hashed directory (c_rehash, `openssl x509 -hash`, the IGTF bundles, which
// ship both): X509_NAME_hash, the first four bytes (little-endian) of the
// SHA-1 of the subject's canonical encoding, and X509_NAME_hash_old, the
// same of the MD5 of its DER. raw is a DER Name (a certificate's
// RawSubject); each hash is eight lower-case hex digits.
func subjectHashes(raw []byte) (hash, old string, err error) {
	canon, err := canonicalName(raw)
	if err != nil {
		return "", "", err
	}
	s := sha1.Sum(canon) //nolint:gosec // see the import
	m := md5.Sum(raw)    //nolint:gosec // see the import
	return fmt.Sprintf("%08x", binary.LittleEndian.Uint32(s[:4])), fmt.Sprintf("%08x", binary.LittleEndian.Uint32(m[:4])), nil
}

// dnHash is the OpenSSL subject hash (the new one) of a name read from a
// policy file: its values as UTF8String, which the canonical encoding
// makes of every string type it canonicalises.
func dnHash(dn DN) (string, error) {
	seq := make(pkix.RDNSequence, 0, len(dn))
	for _, rdn := range dn {
		set := make([]pkix.AttributeTypeAndValue, 0, len(rdn))
		for _, a := range rdn {
			set = append(set, pkix.AttributeTypeAndValue{Type: a.Type, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(a.Value)}})
		}
		seq = append(seq, set)
	}
	raw, err := asn1.Marshal(seq)
	if err != nil {
		return "", err
	}
	h, _, err := subjectHashes(raw)
	return h, err
}

var errMalformedName = errors.New("malformed name")

// canonicalName is OpenSSL's x509_name_canon: each RDN as a DER SET OF its
// attributes (without the outer SEQUENCE), every string value of the
// types OpenSSL canonicalises turned into a UTF8String, trimmed, its runs
// of ASCII white space made one space and its ASCII letters lower case.
func canonicalName(raw []byte) ([]byte, error) {
	var name asn1.RawValue
	if rest, err := asn1.Unmarshal(raw, &name); err != nil || len(rest) > 0 || name.Class != asn1.ClassUniversal || name.Tag != asn1.TagSequence {
		return nil, errMalformedName
	}
	var out []byte
	for rdns := name.Bytes; len(rdns) > 0; {
		var set asn1.RawValue
		var err error
		if rdns, err = asn1.Unmarshal(rdns, &set); err != nil || set.Class != asn1.ClassUniversal || set.Tag != asn1.TagSet {
			return nil, errMalformedName
		}
		var entries [][]byte
		for atvs := set.Bytes; len(atvs) > 0; {
			var atv, oid, val asn1.RawValue
			if atvs, err = asn1.Unmarshal(atvs, &atv); err != nil || atv.Tag != asn1.TagSequence {
				return nil, errMalformedName
			}
			rest, err := asn1.Unmarshal(atv.Bytes, &oid)
			if err != nil || oid.Tag != asn1.TagOID {
				return nil, errMalformedName
			}
			if rest, err = asn1.Unmarshal(rest, &val); err != nil || len(rest) > 0 {
				return nil, errMalformedName
			}
			v := val.FullBytes
			if s, ok := canonString(val); ok {
				v = derTLV(asn1.TagUTF8String, s)
			}
			entries = append(entries, derTLV(asn1.TagSequence|0x20, append(append([]byte{}, oid.FullBytes...), v...)))
		}
		sort.Slice(entries, func(i, j int) bool { return bytes.Compare(entries[i], entries[j]) < 0 })
		out = append(out, derTLV(asn1.TagSet|0x20, bytes.Join(entries, nil))...)
	}
	return out, nil
}

// canonString is OpenSSL's asn1_string_canon of a value, as UTF-8, and
// whether the value's type is one it canonicalises.
func canonString(v asn1.RawValue) ([]byte, bool) {
	if v.Class != asn1.ClassUniversal || v.IsCompound {
		return nil, false
	}
	var u []byte
	switch v.Tag {
	case asn1.TagUTF8String:
		u = v.Bytes
	case asn1.TagPrintableString, asn1.TagT61String, asn1.TagIA5String, 26: // 26: VisibleString
		// one byte a character, as OpenSSL converts them
		for _, c := range v.Bytes {
			u = utf8.AppendRune(u, rune(c))
		}
	case asn1.TagBMPString:
		units := make([]uint16, len(v.Bytes)/2)
		for i := range units {
			units[i] = binary.BigEndian.Uint16(v.Bytes[2*i:])
		}
		u = []byte(string(utf16.Decode(units)))
	case 28: // UniversalString
		for i := 0; i+4 <= len(v.Bytes); i += 4 {
			u = utf8.AppendRune(u, rune(binary.BigEndian.Uint32(v.Bytes[i:])))
		}
	default:
		return nil, false
	}
	isSpace := func(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }
	for len(u) > 0 && isSpace(u[0]) {
		u = u[1:]
	}
	for len(u) > 0 && isSpace(u[len(u)-1]) {
		u = u[:len(u)-1]
	}
	out := make([]byte, 0, len(u))
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c >= 0x80:
			out = append(out, c)
		case isSpace(c):
			out = append(out, ' ')
			for i+1 < len(u) && isSpace(u[i+1]) {
				i++
			}
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		default:
			out = append(out, c)
		}
	}
	return out, true
}

// derTLV encodes one DER element of a low tag number (class and
// constructed bits included in tag).
func derTLV(tag int, content []byte) []byte {
	out := []byte{byte(tag)}
	switch n := len(content); {
	case n < 0x80:
		out = append(out, byte(n))
	default:
		var l []byte
		for ; n > 0; n >>= 8 {
			l = append([]byte{byte(n)}, l...)
		}
		out = append(out, 0x80|byte(len(l)))
		out = append(out, l...)
	}
	return append(out, content...)
}
