// Package cms reads and writes detached CMS SignedData (RFC 5652) as imagetrust
// uses it: one signature file over an image descriptor's exact bytes, holding
// one SignerInfo per role, each signer's certificate embedded.
//
// The package is deliberately small and strict. It handles several signers,
// adds a signer to an existing SignedData the way `openssl cms -resign` does,
// and supports RSA PKCS#1 v1.5, RSASSA-PSS and ECDSA with SHA-256, SHA-384 and
// SHA-512. MD5, SHA-1 and every other digest are refused, as are BER
// indefinite lengths, trailing bytes, encapsulated (non-detached) content and
// signers whose certificate is not embedded.
//
// Verify checks signatures only. Whether a signer's certificate chains to a
// trusted root, is unexpired and unrevoked is the caller's business (package
// validator), using SignedData.Certificates and Signer.Certificate.
//
// SET OF values (certificates, digest algorithms, SignerInfos, signed
// attributes) are written in DER order, as OpenSSL does. The order of
// SignedData.Signers is therefore the encoding order, not the signing order:
// identify a signer's role by its certificate, never by its position.
package cms
