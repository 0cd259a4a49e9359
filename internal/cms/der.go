package cms

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// contentInfo is ContentInfo (RFC 5652 section 3).
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
	// Extra catches elements past the end of the definition, which
	// encoding/asn1 would otherwise skip silently; it must stay empty.
	Extra asn1.RawValue `asn1:"optional"`
}

// signedDataIn is SignedData as read (RFC 5652 section 5.1). Certificates,
// CRLs and SignerInfos are kept raw so AddSigner can copy them unchanged.
type signedDataIn struct {
	Version          int
	DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
	EncapContentInfo encapContentInfo
	Certificates     asn1.RawValue   `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue   `asn1:"optional,tag:1"`
	SignerInfos      []asn1.RawValue `asn1:"set"`
	// Extra catches elements past the end of the definition, which
	// encoding/asn1 would otherwise skip silently; it must stay empty.
	Extra asn1.RawValue `asn1:"optional"`
}

// signedDataOut is SignedData as written: every field pre-encoded.
type signedDataOut struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	EncapContentInfo asn1.RawValue
	Certificates     asn1.RawValue `asn1:"optional"`
	CRLs             asn1.RawValue `asn1:"optional"`
	SignerInfos      asn1.RawValue
}

// encapContentInfo is EncapsulatedContentInfo; eContent must be absent (detached).
type encapContentInfo struct {
	EContentType asn1.ObjectIdentifier
	EContent     asn1.RawValue `asn1:"optional,explicit,tag:0"`
	// Extra catches elements past the end of the definition, which
	// encoding/asn1 would otherwise skip silently; it must stay empty.
	Extra asn1.RawValue `asn1:"optional"`
}

// signerInfo is SignerInfo (RFC 5652 section 5.3), read and written.
type signerInfo struct {
	Version            int
	SID                asn1.RawValue
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
	UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
	// Extra catches elements past the end of the definition, which
	// encoding/asn1 would otherwise skip silently; it must stay empty.
	Extra asn1.RawValue `asn1:"optional"`
}

// issuerAndSerial is IssuerAndSerialNumber.
type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
	// Extra catches elements past the end of the definition, which
	// encoding/asn1 would otherwise skip silently; it must stay empty.
	Extra asn1.RawValue `asn1:"optional"`
}

// attribute is Attribute; Values is the raw SET OF AttributeValue.
type attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue `asn1:"set"`
	// Extra catches elements past the end of the definition, which
	// encoding/asn1 would otherwise skip silently; it must stay empty.
	Extra asn1.RawValue `asn1:"optional"`
}

// strictUnmarshal decodes exactly one DER value into v (a pointer to a
// struct with an Extra field) and refuses trailing bytes and extra elements.
func strictUnmarshal(b []byte, v any, extra func() []byte) error {
	rest, err := asn1.Unmarshal(b, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}
	if len(extra()) != 0 {
		return errors.New("unexpected extra element")
	}
	return nil
}

// derSetOf encodes elements (each a complete DER encoding) as a SET OF with
// the given class and tag, sorted as X.690 11.6 requires.
func derSetOf(class, tag int, elems [][]byte) ([]byte, error) {
	sorted := slices.Clone(elems)
	slices.SortFunc(sorted, bytes.Compare)
	return asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: true, Bytes: bytes.Join(sorted, nil)})
}

// splitElements splits the contents of a constructed value into its elements' encodings.
func splitElements(b []byte, limit int) ([]asn1.RawValue, error) {
	var out []asn1.RawValue
	for len(b) > 0 {
		if len(out) >= limit {
			return nil, errTooMany
		}
		var rv asn1.RawValue
		rest, err := asn1.Unmarshal(b, &rv)
		if err != nil {
			return nil, err
		}
		out = append(out, rv)
		b = rest
	}
	return out, nil
}
