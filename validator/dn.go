package validator

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// DN is a distinguished name as an ordered list of RDNs, most significant
// (closest to the root) first, as it is encoded in a certificate. Names are
// compared structurally: attribute types by OID, values case-insensitively
// with white space folded (X.520 caseIgnoreMatch), never as printed strings.
type DN [][]Attr

// Attr is one attribute type and value of an RDN.
type Attr struct {
	Type  asn1.ObjectIdentifier
	Value string
}

var attrOIDs = map[string]asn1.ObjectIdentifier{
	"CN": {2, 5, 4, 3}, "SN": {2, 5, 4, 4}, "SERIALNUMBER": {2, 5, 4, 5}, "C": {2, 5, 4, 6},
	"L": {2, 5, 4, 7}, "ST": {2, 5, 4, 8}, "S": {2, 5, 4, 8}, "STREET": {2, 5, 4, 9}, "O": {2, 5, 4, 10},
	"OU": {2, 5, 4, 11}, "TITLE": {2, 5, 4, 12}, "GN": {2, 5, 4, 42}, "GIVENNAME": {2, 5, 4, 42},
	"POSTALCODE": {2, 5, 4, 17}, "DC": {0, 9, 2342, 19200300, 100, 1, 25},
	"UID": {0, 9, 2342, 19200300, 100, 1, 1}, "USERID": {0, 9, 2342, 19200300, 100, 1, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1}, "EMAIL": {1, 2, 840, 113549, 1, 9, 1},
	"E": {1, 2, 840, 113549, 1, 9, 1},
	// OpenSSL's other names (short and long) for DN attributes: a one-line
	// DN with a type missing here reads its "/type=value" into the value
	// before it
	"COMMONNAME": {2, 5, 4, 3}, "SURNAME": {2, 5, 4, 4}, "COUNTRYNAME": {2, 5, 4, 6},
	"LOCALITYNAME": {2, 5, 4, 7}, "STATEORPROVINCENAME": {2, 5, 4, 8}, "STREETADDRESS": {2, 5, 4, 9},
	"ORGANIZATIONNAME": {2, 5, 4, 10}, "ORGANIZATIONALUNITNAME": {2, 5, 4, 11},
	"DESCRIPTION": {2, 5, 4, 13}, "BUSINESSCATEGORY": {2, 5, 4, 15}, "POSTALADDRESS": {2, 5, 4, 16},
	"NAME": {2, 5, 4, 41}, "INITIALS": {2, 5, 4, 43}, "GENERATIONQUALIFIER": {2, 5, 4, 44},
	"X500UNIQUEIDENTIFIER": {2, 5, 4, 45}, "DNQUALIFIER": {2, 5, 4, 46}, "PSEUDONYM": {2, 5, 4, 65},
	"ROLE": {2, 5, 4, 72}, "ORGANIZATIONIDENTIFIER": {2, 5, 4, 97},
	"DOMAINCOMPONENT":  {0, 9, 2342, 19200300, 100, 1, 25},
	"UNSTRUCTUREDNAME": {1, 2, 840, 113549, 1, 9, 2},
	"JURISDICTIONL":    {1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 1}, "JURISDICTIONST": {1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 2},
	"JURISDICTIONC": {1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 3},
}

// ParseDN parses a distinguished name in OpenSSL's one-line form
// ("/DC=ch/DC=cern/OU=Users/CN=Alice Example", most significant first) or in
// RFC 4514 form ("CN=Bob Example,O=Example", least significant first).
func ParseDN(s string) (DN, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty distinguished name")
	}
	if strings.HasPrefix(s, "/") {
		return parseOneLine(s)
	}
	dn, err := parseRFC4514(s)
	if err != nil {
		return nil, err
	}
	// RFC 4514 prints the least significant RDN first.
	for i, j := 0, len(dn)-1; i < j; i, j = i+1, j-1 {
		dn[i], dn[j] = dn[j], dn[i]
	}
	return dn, nil
}

func attrType(t string) (asn1.ObjectIdentifier, error) {
	t = strings.TrimSpace(t)
	if oid, ok := attrOIDs[strings.ToUpper(t)]; ok {
		return oid, nil
	}
	// dotted OID form, with or without the "OID." prefix
	t = strings.TrimPrefix(strings.TrimPrefix(t, "OID."), "oid.")
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(t, ".") {
		n := 0
		if p == "" || len(p) > 9 {
			return nil, fmt.Errorf("unknown attribute type %q", t)
		}
		for _, r := range p {
			if r < '0' || r > '9' {
				return nil, fmt.Errorf("unknown attribute type %q", t)
			}
			n = n*10 + int(r-'0')
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("unknown attribute type %q", t)
	}
	return oid, nil
}

// parseOneLine parses "/A=v/B=v+C=v". A "/" that isn't followed by
// "TYPE=" is part of the value, as grid DNs such as "/CN=host/example.org" need.
func parseOneLine(s string) (DN, error) {
	var dn DN
	rest := s[1:]
	for rest != "" {
		// find the end of this RDN: the next "/" that starts "TYPE="
		end := len(rest)
		for i := 0; i < len(rest); i++ {
			if rest[i] == '\\' {
				i++
				continue
			}
			if rest[i] == '/' && startsAttr(rest[i+1:]) {
				end = i
				break
			}
		}
		rdnStr := rest[:end]
		if end < len(rest) {
			rest = rest[end+1:]
		} else {
			rest = ""
		}
		var rdn []Attr
		for _, av := range splitUnescaped(rdnStr, '+') {
			eq := strings.IndexByte(av, '=')
			if eq <= 0 {
				return nil, fmt.Errorf("distinguished name %q: %q is not TYPE=value", s, av)
			}
			oid, err := attrType(av[:eq])
			if err != nil {
				return nil, fmt.Errorf("distinguished name %q: %w", s, err)
			}
			rdn = append(rdn, Attr{Type: oid, Value: unescapeSimple(av[eq+1:])})
		}
		dn = append(dn, rdn)
	}
	if len(dn) == 0 {
		return nil, fmt.Errorf("distinguished name %q: no attributes", s)
	}
	return dn, nil
}

func startsAttr(s string) bool {
	eq := strings.IndexByte(s, '=')
	if eq <= 0 {
		return false
	}
	_, err := attrType(s[:eq])
	return err == nil && !strings.ContainsAny(s[:eq], "/ ")
}

func splitUnescaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unescapeSimple(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// parseRFC4514 parses RDNs separated by "," (or ";"), attributes by "+",
// with RFC 4514 escapes (\, \+ \" \\ \< \> \; \= \# and \XX hex) and
// quoted values.
func parseRFC4514(s string) (DN, error) {
	var dn DN
	var rdn []Attr
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq <= 0 {
			return nil, fmt.Errorf("distinguished name %q: expected TYPE= at offset %d", s, i)
		}
		oid, err := attrType(s[i : i+eq])
		if err != nil {
			return nil, fmt.Errorf("distinguished name %q: %w", s, err)
		}
		i += eq + 1
		var val []byte
		if i < len(s) && s[i] == '#' {
			j := i + 1
			for j < len(s) && s[j] != ',' && s[j] != '+' && s[j] != ';' {
				j++
			}
			raw, err := hex.DecodeString(strings.TrimSpace(s[i+1 : j]))
			if err != nil {
				return nil, fmt.Errorf("distinguished name %q: bad #hex value", s)
			}
			var rv asn1.RawValue
			if _, err := asn1.Unmarshal(raw, &rv); err != nil {
				return nil, fmt.Errorf("distinguished name %q: bad BER value", s)
			}
			val = rv.Bytes
			i = j
		} else if i < len(s) && s[i] == '"' {
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val = append(val, s[i])
				i++
			}
			if i >= len(s) {
				return nil, fmt.Errorf("distinguished name %q: unterminated quote", s)
			}
			i++
			for i < len(s) && s[i] == ' ' {
				i++
			}
		} else {
			for i < len(s) && s[i] != ',' && s[i] != '+' && s[i] != ';' {
				if s[i] == '\\' {
					if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
						b, _ := hex.DecodeString(s[i+1 : i+3])
						val = append(val, b[0])
						i += 3
						continue
					}
					if i+1 >= len(s) {
						return nil, fmt.Errorf("distinguished name %q: dangling escape", s)
					}
					i++
				}
				val = append(val, s[i])
				i++
			}
		}
		rdn = append(rdn, Attr{Type: oid, Value: strings.TrimRight(string(val), " ")})
		if i < len(s) && s[i] == '+' {
			i++
			continue
		}
		dn = append(dn, rdn)
		rdn = nil
		if i < len(s) {
			i++ // ',' or ';'
			if i == len(s) {
				return nil, fmt.Errorf("distinguished name %q: ends with a separator", s)
			}
		}
	}
	if len(dn) == 0 {
		return nil, fmt.Errorf("distinguished name %q: no attributes", s)
	}
	return dn, nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// DNFromRaw decodes a certificate's raw subject or issuer.
func DNFromRaw(raw []byte) (DN, error) {
	var seq pkix.RDNSequence
	rest, err := asn1.Unmarshal(raw, &seq)
	if err != nil {
		return nil, fmt.Errorf("decode name: %w", err)
	}
	if len(rest) > 0 {
		return nil, errors.New("decode name: trailing data")
	}
	dn := make(DN, 0, len(seq))
	for _, set := range seq {
		rdn := make([]Attr, 0, len(set))
		for _, atv := range set {
			v, ok := atv.Value.(string)
			if !ok {
				v = fmt.Sprint(atv.Value)
			}
			rdn = append(rdn, Attr{Type: atv.Type, Value: v})
		}
		dn = append(dn, rdn)
	}
	return dn, nil
}

func foldValue(v string) string {
	return strings.ToLower(strings.Join(strings.FieldsFunc(v, unicode.IsSpace), " "))
}

// Equal reports whether two names are the same name.
func (d DN) Equal(o DN) bool {
	if len(d) != len(o) {
		return false
	}
	for i := range d {
		if len(d[i]) != len(o[i]) {
			return false
		}
		used := make([]bool, len(o[i]))
	next:
		for _, a := range d[i] {
			for j, b := range o[i] {
				if !used[j] && a.Type.Equal(b.Type) && foldValue(a.Value) == foldValue(b.Value) {
					used[j] = true
					continue next
				}
			}
			return false
		}
	}
	return true
}

// oneLineEscaper escapes what parseOneLine reads as structure in a value:
// the backslash itself (a value ending in one would escape the "/" of
// the next RDN, and print as another DN), "/" and "+".
var oneLineEscaper = strings.NewReplacer(`\`, `\\`, "/", `\/`, "+", `\+`)

// OneLine prints the name in OpenSSL's one-line form, with "\", "/" and
// "+" in values escaped by a backslash, so that ParseDN reads it back as
// the same name.
func (d DN) OneLine() string {
	var b strings.Builder
	for _, rdn := range d {
		b.WriteByte('/')
		for i, a := range rdn {
			if i > 0 {
				b.WriteByte('+')
			}
			b.WriteString(attrName(a.Type))
			b.WriteByte('=')
			b.WriteString(oneLineEscaper.Replace(a.Value))
		}
	}
	return b.String()
}

// opensslNames are the short names OpenSSL's one-line form prints, which
// IGTF namespace and signing-policy patterns are written against.
var opensslNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.4": "SN", "2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L",
	"2.5.4.8": "ST", "2.5.4.9": "street", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "title",
	"2.5.4.17": "postalCode", "2.5.4.42": "GN", "0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1": "UID", "1.2.840.113549.1.9.1": "emailAddress",
	"2.5.4.13": "description", "2.5.4.15": "businessCategory", "2.5.4.16": "postalAddress",
	"2.5.4.41": "name", "2.5.4.43": "initials", "2.5.4.44": "generationQualifier",
	"2.5.4.45": "x500UniqueIdentifier", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym",
	"2.5.4.72": "role", "2.5.4.97": "organizationIdentifier", "1.2.840.113549.1.9.2": "unstructuredName",
	"1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL", "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
	"1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}

func attrName(oid asn1.ObjectIdentifier) string {
	if n, ok := opensslNames[oid.String()]; ok {
		return n
	}
	return oid.String()
}

// goNamed are the attribute types pkix.Name.String prints by name.
var goNamed = map[string]bool{
	"2.5.4.6": true, "2.5.4.10": true, "2.5.4.11": true, "2.5.4.3": true, "2.5.4.5": true,
	"2.5.4.7": true, "2.5.4.8": true, "2.5.4.9": true, "2.5.4.17": true,
}

// NameString prints a certificate name (its raw DER subject or issuer) as
// pkix.Name.String does, RFC 4514 with the most specific attribute first,
// but with OpenSSL's short names for the attributes grid DNs are made of
// (DC, UID, emailAddress …), which Go prints as a dotted OID and a hex
// value nobody can read ("0.9.2342.19200300.100.1.25=#13036f7267" for
// "DC=org"). fallback is used when raw does not decode.
func NameString(raw []byte, fallback pkix.Name) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) > 0 {
		return fallback.String()
	}
	var b strings.Builder
	for i := len(seq) - 1; i >= 0; i-- {
		if i < len(seq)-1 {
			b.WriteByte(',')
		}
		for j, atv := range seq[i] {
			if j > 0 {
				b.WriteByte('+')
			}
			name, named := opensslNames[atv.Type.String()]
			v, isString := atv.Value.(string)
			if goNamed[atv.Type.String()] || !named || !isString {
				b.WriteString(pkix.RDNSequence{{atv}}.String())
				continue
			}
			// Go's escaping of the value, under a type it names
			esc := pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: v}}}.String()
			b.WriteString(name + "=" + strings.TrimPrefix(esc, "CN="))
		}
	}
	return b.String()
}

// SubjectName is NameString of a certificate's subject.
func SubjectName(c *x509.Certificate) string { return NameString(c.RawSubject, c.Subject) }

// IssuerName is NameString of a certificate's issuer.
func IssuerName(c *x509.Certificate) string { return NameString(c.RawIssuer, c.Issuer) }
