package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

func init() {
	register("describe", "write an image descriptor (NAME.json), hashing the image", cmdDescribe)
	register("sign", "creator: sign a descriptor (writes NAME.json.p7s)", cmdSign)
	register("approve", "approver: add the approver's signature", cmdApprove)
	register("register", "registrar: issue the image certificate and add the image signature", cmdRegister)
}

// nowFunc is the clock of the command line (tests replace it).
var nowFunc = time.Now

var formatByExt = map[string]string{
	".qcow2": "qcow2", ".img": "raw", ".raw": "raw", ".iso": "iso", ".vmdk": "vmdk",
	".vdi": "vdi", ".vhd": "vhd", ".vhdx": "vhdx", ".ploop": "ploop",
}

func cmdDescribe(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "describe", "IMAGE --vo VO --tag TAG [options]")
	vo := fs.String("vo", "", "virtual organisation (required)")
	tag := fs.String("tag", "", "tag family, e.g. worker-node (required)")
	id := fs.String("uuid", "", "image uuid, not bound to the VO (default: a new one bound to the VO: a random uuid_seed, and the uuid it gives)")
	disk := fs.String("disk-format", "", "Glance disk format (default: from the file name)")
	container := fs.String("container-format", "bare", "Glance container format")
	out := fs.String("o", "", "descriptor to write (default: IMAGE.json)")
	uri := fs.String("uri", "", "where the image will be fetched from (default: its path relative to the descriptor)")
	title := fs.String("title", "", "human-readable title")
	desc := fs.String("description", "", "description")
	distro := fs.String("os-distro", "", "os_distro (e.g. almalinux)")
	osver := fs.String("os-version", "", "os_version (e.g. 9.4)")
	arch := fs.String("architecture", "", "architecture (e.g. x86_64)")
	minDisk := fs.Int("min-disk", 0, "min_disk in GB")
	minRAM := fs.Int("min-ram", 0, "min_ram in MB")
	created := fs.String("created", "", "creation time, RFC 3339 (default: now)")
	var props multiFlag
	fs.Var(&props, "property", "extra Glance property KEY=VALUE (repeatable)")
	force := fs.Bool("force", false, "replace a descriptor that is already signed or registered (its NAME.json.p7s and NAME.json.crt no longer match it)")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return usageExit(err)
	}
	img := pos[0]
	if *vo == "" || *tag == "" {
		fs.Usage()
		return fail(e, exitUsage, "describe: --vo and --tag are required")
	}
	d := validator.Descriptor{
		VO: *vo, Tag: *tag, ContainerFormat: *container, DiskFormat: *disk,
		Title: *title, Description: *desc, OSDistro: *distro, OSVersion: *osver, Architecture: *arch,
		MinDisk: *minDisk, MinRAM: *minRAM,
	}
	if *id == "" {
		// bound to the VO (docs/formats.md, "Bound uuids"): no other VO
		// can publish under it, and sites that require bound uuids take it
		seed, err := validator.NewUUIDSeed()
		if err != nil {
			return fail(e, exitInvalid, "describe: %v", err)
		}
		d.UUIDSeed, d.UUID = seed, validator.BoundUUID(*vo, seed)
	} else {
		u, err := uuid.Parse(*id)
		if err != nil {
			return fail(e, exitUsage, "describe: --uuid %q: %v", *id, err)
		}
		d.UUID = u.String()
	}
	if d.DiskFormat == "" {
		d.DiskFormat = formatByExt[strings.ToLower(filepath.Ext(img))]
		if d.DiskFormat == "" {
			return fail(e, exitUsage, "describe: can't tell the disk format of %s from its name: give --disk-format", img)
		}
	}
	if *created == "" {
		d.Created = nowFunc().UTC().Format(time.RFC3339)
	} else {
		d.Created = *created
	}
	if len(props) > 0 {
		d.Properties = map[string]string{}
		for _, kv := range props {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fail(e, exitUsage, "describe: --property %q: want KEY=VALUE", kv)
			}
			d.Properties[k] = v
		}
	}
	if *out == "" {
		*out = img + ".json"
	}
	// a descriptor already signed (or registered) is a bundle: a new one in
	// its place (a new uuid) would leave a dead signature beside it. The
	// same refusal as sign's over an existing .p7s, and the same exit.
	var signed []string
	for _, f := range []string{*out + ".p7s", *out + ".crt"} {
		if _, err := os.Lstat(f); err == nil {
			signed = append(signed, f)
		}
	}
	if len(signed) > 0 && !*force {
		verb := "exists"
		if len(signed) > 1 {
			verb = "exist"
		}
		return fail(e, exitInvalid, "describe: %s %s: %s is signed; describe a new version under another name (-o), or --force to replace it (and sign it again)", strings.Join(signed, " and "), verb, *out)
	}
	d.URI = *uri
	outside := ""
	if d.URI == "" {
		rel, err := filepath.Rel(filepath.Dir(absPath(*out)), absPath(img))
		if err != nil {
			return fail(e, exitInvalid, "describe: %v", err)
		}
		if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			outside = rel
		}
		// a URI reference: '%', '#', '?' and the like escaped, so that
		// every tool reads this very path back (validator.ImageLocation)
		d.URI = (&url.URL{Path: filepath.ToSlash(rel)}).String()
	}
	f, err := os.Open(img)
	if err != nil {
		return fail(e, exitUsage, "describe: %v", err)
	}
	h := validator.NewImageHasher()
	_, err = io.CopyBuffer(h, f, make([]byte, 1<<20))
	_ = f.Close()
	if err != nil {
		return fail(e, exitInvalid, "describe: read %s: %v", img, err)
	}
	d.Size, d.SHA512 = h.Size(), h.Sum()
	b, err := json.MarshalIndent(&d, "", "  ")
	if err != nil {
		return fail(e, exitInvalid, "describe: %v", err)
	}
	b = append(b, '\n')
	if _, err := validator.ParseDescriptor(b); err != nil {
		return fail(e, exitUsage, "describe: the descriptor would be invalid: %v", err)
	}
	if err := fsutil.WriteFileAtomic(*out, b, 0o644); err != nil {
		return fail(e, exitInvalid, "describe: %v", err)
	}
	bound := ""
	if d.UUIDSeed != "" {
		bound = " bound to " + d.VO
	}
	fmt.Fprintf(e.stdout, "wrote %s (uuid %s%s, %d bytes, sha512 %s…)\n", *out, d.UUID, bound, d.Size, d.SHA512[:16])
	for _, f := range signed {
		fmt.Fprintf(e.stderr, "imagetrust: describe: warning: %s no longer matches %s: sign it again (sign --force)\n", f, *out)
	}
	if outside != "" {
		// Sites read a relative uri below the descriptor's directory only
		// (glancesync.ErrOutsideSource): this bundle would be refused.
		fmt.Fprintf(e.stderr, "imagetrust: describe: warning: the uri %s leaves the directory of %s, and sites refuse an image outside the published directory: publish the image beside or below the descriptor (describe it there), or give its published location with --uri\n", d.URI, *out)
	}
	return exitOK
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// signerFlags are the flags of sign and approve.
type signerFlags struct {
	cert, key, chain, hash, passFile string
	pss                              bool
}

func addSignerFlags(fs interface {
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
}, s *signerFlags) {
	fs.StringVar(&s.cert, "cert", "", "signer certificate (PEM; required)")
	fs.StringVar(&s.key, "key", "", "signer private key (PEM: PKCS#8, PKCS#1, SEC1, optionally encrypted; required)")
	fs.StringVar(&s.chain, "chain", "", "intermediate CA certificates to embed (PEM)")
	fs.StringVar(&s.hash, "hash", "sha256", "digest: sha256, sha384 or sha512")
	fs.StringVar(&s.passFile, "key-pass-file", "", "file whose first line is the key's passphrase (default: prompt)")
	fs.BoolVar(&s.pss, "pss", false, "RSA keys: sign with RSASSA-PSS instead of PKCS#1 v1.5")
}

func (s *signerFlags) load(e *env) (*x509.Certificate, cms.SignOptions, crypto.Signer, error) {
	if s.cert == "" || s.key == "" {
		return nil, cms.SignOptions{}, nil, fmt.Errorf("%w: --cert and --key are required", errUsage)
	}
	// the signer's certificate, key and chain are configuration: any
	// error in them is a usage error (exit 2), as register's and revoke's
	// --ca and --ca-key are
	certs, err := validator.ReadCertificates(s.cert)
	if err != nil {
		return nil, cms.SignOptions{}, nil, usageError{fmt.Errorf("--cert %s: %w", s.cert, err)}
	}
	key, err := pki.ReadPrivateKey(s.key, passphrase(e, s.passFile))
	if err != nil {
		return nil, cms.SignOptions{}, nil, usageError{fmt.Errorf("--key: %w", err)}
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, cms.SignOptions{}, nil, usageError{fmt.Errorf("--key %s does not belong to --cert %s", s.key, s.cert)}
	}
	h, err := parseHash(s.hash)
	if err != nil {
		return nil, cms.SignOptions{}, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if _, isRSA := key.Public().(*rsa.PublicKey); s.pss && !isRSA {
		return nil, cms.SignOptions{}, nil, fmt.Errorf("%w: --pss is for RSA keys; %s is %s: leave out --pss", errUsage, s.key, keyKind(key.Public()))
	}
	opts := cms.SignOptions{Hash: h, PSS: s.pss, SigningTime: nowFunc(), Chain: certs[1:]}
	if s.chain != "" {
		chain, err := validator.ReadCertificates(s.chain)
		if err != nil {
			return nil, cms.SignOptions{}, nil, usageError{fmt.Errorf("--chain: %w", err)}
		}
		opts.Chain = append(opts.Chain, chain...)
	}
	return certs[0], opts, key, nil
}

// loadCA reads a CA certificate file (further certificates in it are its
// chain) and the CA's private key, and checks that they belong together.
func loadCA(e *env, certFile, keyFile, passFile string) ([]*x509.Certificate, crypto.Signer, error) {
	cas, err := validator.ReadCertificates(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--ca: %w", err)
	}
	key, err := pki.ReadPrivateKey(keyFile, passphrase(e, passFile))
	if err != nil {
		return nil, nil, fmt.Errorf("--ca-key: %w", err)
	}
	if !publicKeysEqual(cas[0].PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("--ca-key %s does not belong to --ca %s", keyFile, certFile)
	}
	return cas, key, nil
}

// issuedSigner reports whether ca (by its key) issued the certificate of
// a person who signed sd, or a CA above it in the chain the signature
// carries: the signer's role and certificate, nil when it did not. Such
// a CA is a people CA to every site that accepts these signers (their
// chains pass through it), and a site refuses an image certificate whose
// chain holds a people CA (validator: image-cert-from-people-ca), so
// register must not issue one with it. A people CA that issued neither
// signer cannot be told from a Registrar CA here: that is the sites'
// configuration.
func issuedSigner(sd *cms.SignedData, ca *x509.Certificate) (string, *x509.Certificate) {
	for i := range sd.Signers {
		leaf := sd.Signers[i].Certificate
		// up the chain the signature carries, at most a few links
		cur := leaf
		for range 8 {
			if cur.CheckSignatureFrom(ca) == nil && bytes.Equal(cur.RawIssuer, ca.RawSubject) {
				return signerRole(sd.Signers, i), leaf
			}
			var next *x509.Certificate
			for _, c := range sd.Certificates {
				if c != cur && !bytes.Equal(c.Raw, cur.Raw) && bytes.Equal(cur.RawIssuer, c.RawSubject) && cur.CheckSignatureFrom(c) == nil {
					next = c
					break
				}
			}
			if next == nil || bytes.Equal(next.RawIssuer, next.RawSubject) {
				break
			}
			cur = next
		}
	}
	return "", nil
}

// keyKind names a public key's type for messages.
func keyKind(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	}
	return fmt.Sprintf("a %T key", pub)
}

func publicKeysEqual(a, b any) bool {
	if x, ok := a.(interface{ Equal(crypto.PublicKey) bool }); ok {
		return x.Equal(b)
	}
	return false
}

func cmdSign(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "sign", "--cert C --key K NAME.json")
	var s signerFlags
	addSignerFlags(fs, &s)
	force := fs.Bool("force", false, "replace an existing NAME.json.p7s")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return usageExit(err)
	}
	name := pos[0]
	desc, err := readDescriptor(name)
	if err != nil {
		return signerErr(e, "sign", err)
	}
	if _, err := os.Stat(name + ".p7s"); err == nil && !*force {
		return fail(e, exitInvalid, "sign: %s.p7s exists: the creator signs first; use approve to add a signature, or --force to start over", name)
	}
	cert, opts, key, err := s.load(e)
	if err != nil {
		return signerErr(e, "sign", err)
	}
	if err := checkValidNow("creator", cert, opts.Chain, opts.SigningTime); err != nil {
		return fail(e, exitInvalid, "sign: %v", err)
	}
	der, err := cms.Sign(desc, cert, key, opts)
	if err != nil {
		return fail(e, exitInvalid, "sign: %v", err)
	}
	if err := fsutil.WriteFileAtomic(name+".p7s", der, 0o644); err != nil {
		return fail(e, exitInvalid, "sign: %v", err)
	}
	fmt.Fprintf(e.stdout, "signed %s as creator %q; wrote %s.p7s\n", name, validator.SubjectName(cert), name)
	return exitOK
}

// checkValidNow refuses to sign with a certificate (or an embedded chain
// certificate) outside its validity at now: register would refuse the
// bundle, and every site would (verify's signer-time check).
func checkValidNow(role string, cert *x509.Certificate, chain []*x509.Certificate, now time.Time) error {
	for i, c := range append([]*x509.Certificate{cert}, chain...) {
		what := role + " certificate"
		if i > 0 {
			what = "chain certificate"
		}
		switch {
		case now.After(c.NotAfter):
			return fmt.Errorf("check signer-validity: %s %q expired %s: no site would accept what it signs; sign with a certificate valid now (your renewed one)", what, validator.SubjectName(c), c.NotAfter.UTC().Format(time.RFC3339))
		case now.Before(c.NotBefore):
			return fmt.Errorf("check signer-validity: %s %q is not yet valid until %s: sign after then (or check this machine's clock)", what, validator.SubjectName(c), c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// signerRole names the role of signer i of the two a bundle holds before
// registration. A SignedData's SignerInfos are a DER SET OF, sorted, not in
// signing order: the creator is the one that signed first, by the signing
// times sign and approve write; without them, or for any other count of
// signers or an i out of range, "signer".
func signerRole(signers []cms.Signer, i int) string {
	if len(signers) != 2 || i < 0 || i > 1 {
		return "signer"
	}
	a, b := signers[i].SigningTime, signers[1-i].SigningTime
	switch {
	case a.IsZero() || b.IsZero() || a.Equal(b):
		return "signer"
	case a.Before(b):
		return "creator"
	}
	return "approver"
}

func signerErr(e *env, cmd string, err error) int {
	if errors.Is(err, errUsage) {
		return fail(e, exitUsage, "%s: %v", cmd, strings.TrimPrefix(err.Error(), "usage: "))
	}
	return fail(e, exitInvalid, "%s: %v", cmd, err)
}

// readDescriptor reads and checks the descriptor named on the command line:
// one that can't be read is a usage error, an invalid one is not.
func readDescriptor(name string) ([]byte, error) {
	b, err := readInput(name)
	if err != nil {
		return nil, err
	}
	if _, err := validator.ParseDescriptor(b); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

func readSignature(name string, desc []byte, wantSigners int) (*cms.SignedData, []byte, error) {
	p7, err := os.ReadFile(name + ".p7s")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%s is not signed: there is no %s.p7s%s", name, name, signStepHint(name, 0))
	}
	if err != nil {
		return nil, nil, err
	}
	sd, err := cms.Parse(p7)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.p7s: %w", name, err)
	}
	for i := range sd.Signers {
		if err := sd.Signers[i].Verify(desc); err != nil {
			return nil, nil, fmt.Errorf("%s.p7s: signature %d (%s) does not verify over %s: %w; %s is not what was signed (edited since?): restore the signed bytes, or sign the new version again from the start (imagetrust sign --force %s)", name, i+1, validator.SubjectName(sd.Signers[i].Certificate), name, err, name, name)
		}
	}
	if len(sd.Signers) != wantSigners {
		return nil, nil, fmt.Errorf("%s.p7s holds %s; expected %d at this step%s", name, countOf(len(sd.Signers), "signature"), wantSigners, signStepHint(name, len(sd.Signers)))
	}
	return sd, p7, nil
}

// countOf says "1 signature", "2 signatures".
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// signStepHint says which step a bundle with have signatures is at, and so
// what to run instead (the order: sign 1, approve 2, register 3).
func signStepHint(name string, have int) string {
	switch {
	case have == 0:
		return ": the creator signs first (imagetrust sign)"
	case have == 1:
		return ": only the creator has signed; the approver adds a signature first (imagetrust approve " + name + ")"
	case have == 2:
		return ": it is approved; next the Registrar registers it (imagetrust register " + name + ")"
	default:
		return ": it is already registered (" + name + ".crt); a registered bundle is never signed again: a new version is a new bundle, made with imagetrust describe (a new uuid)"
	}
}

func cmdApprove(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "approve", "--cert C --key K NAME.json")
	var s signerFlags
	addSignerFlags(fs, &s)
	imagePath := fs.String("image", "", "the image to check against the descriptor (default: where its uri points, when that is a local file)")
	noImage := fs.Bool("no-image-check", false, "approve without checking the image's bytes (size and sha512) against the descriptor")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return usageExit(err)
	}
	name := pos[0]
	desc, err := readDescriptor(name)
	if err != nil {
		return signerErr(e, "approve", err)
	}
	sd, p7, err := readSignature(name, desc, 1)
	if err != nil {
		return fail(e, exitInvalid, "approve: %v", err)
	}
	// the approver's key and certificate first: a wrong passphrase or an
	// expired certificate is told before a large image is hashed
	cert, opts, key, err := s.load(e)
	if err != nil {
		return signerErr(e, "approve", err)
	}
	if err := checkValidNow("approver", cert, opts.Chain, opts.SigningTime); err != nil {
		return fail(e, exitInvalid, "approve: %v", err)
	}
	if why := validator.SamePerson(sd.Signers[0].Certificate, cert); why != "" {
		return fail(e, exitInvalid, "approve: check creator-is-approver: %q %s (%q created this image); a different person must approve it", validator.SubjectName(cert), why, validator.SubjectName(sd.Signers[0].Certificate))
	}
	// an approval vouches for the image: its bytes are checked, unless the
	// approver says otherwise
	if !*noImage {
		p := *imagePath
		if p == "" {
			p = localImagePath(name, desc)
		}
		if p == "" {
			return fail(e, exitUsage, "approve: check image: the descriptor's uri is not a local file: download the image and give it with --image FILE (or approve unchecked with --no-image-check)")
		}
		if *imagePath != "" {
			if err := checkInput(p); err != nil {
				return fail(e, exitUsage, "approve: --image: %v", err)
			}
		}
		if err := checkImageFile(p, desc); err != nil {
			return fail(e, exitInvalid, "approve: check image: %v (approve unchecked with --no-image-check)", err)
		}
	}
	der, err := cms.AddSigner(p7, desc, cert, key, opts)
	if err != nil {
		return fail(e, exitInvalid, "approve: %v", err)
	}
	if err := fsutil.WriteFileAtomic(name+".p7s", der, 0o644); err != nil {
		return fail(e, exitInvalid, "approve: %v", err)
	}
	fmt.Fprintf(e.stdout, "approved %s as %q; updated %s.p7s\n", name, validator.SubjectName(cert), name)
	return exitOK
}

// checkImageFile hashes the image at path and compares its size and sha512
// with the descriptor's.
func checkImageFile(path string, desc []byte) error {
	d, err := validator.ParseDescriptor(desc)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := validator.NewImageHasher()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := h.Check(d.Size, d.SHA512); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func cmdRegister(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "register", "--ca C --ca-key K --expires DATE|DURATION NAME.json")
	caFile := fs.String("ca", "", "Registrar CA certificate (PEM; further certificates in the file are embedded as its chain)")
	caKey := fs.String("ca-key", "", "Registrar CA private key (PEM)")
	passFile := fs.String("key-pass-file", "", "file whose first line is the CA key's passphrase (default: prompt)")
	expires := fs.String("expires", "", "image expiry: a date (2027-06-30, RFC 3339) or a duration from now (90d, 1y, 2160h; no months: 6m is refused)")
	hashName := fs.String("hash", "sha256", "digest: sha256, sha384 or sha512")
	keyType := fs.String("key-type", string(pki.ECDSAP256), "the image key: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return usageExit(err)
	}
	name := pos[0]
	if *caFile == "" || *caKey == "" || *expires == "" {
		fs.Usage()
		return fail(e, exitUsage, "register: --ca, --ca-key and --expires are required")
	}
	now := nowFunc()
	notAfter, err := parseWhen(*expires, now)
	if err != nil {
		return fail(e, exitUsage, "register: --expires: %v", err)
	}
	if !notAfter.After(now) {
		return fail(e, exitUsage, "register: --expires %s is not in the future", notAfter.UTC().Format(time.RFC3339))
	}
	h, err := parseHash(*hashName)
	if err != nil {
		return fail(e, exitUsage, "register: %v", err)
	}
	descBytes, err := readDescriptor(name)
	if err != nil {
		return signerErr(e, "register", err)
	}
	d, _ := validator.ParseDescriptor(descBytes)
	sd, p7, err := readSignature(name, descBytes, 2)
	if err != nil {
		return fail(e, exitInvalid, "register: %v", err)
	}
	cas, key, err := loadCA(e, *caFile, *caKey, *passFile)
	if err != nil {
		return fail(e, exitUsage, "register: %v", err)
	}
	ca := cas[0]
	if !ca.IsCA || (ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0) {
		return fail(e, exitUsage, "register: --ca %s (%q) is not a CA certificate that may sign certificates (basicConstraints CA, keyUsage keyCertSign)", *caFile, validator.SubjectName(ca))
	}
	if role, signer := issuedSigner(sd, ca); signer != nil {
		return fail(e, exitUsage, "register: --ca %s (%q) issued the %s's certificate %q: it is a people CA, which sites configure for creators and approvers (trust.ca_files, trust.ca_dirs), and every site refuses an image certificate it issues (image-cert-from-people-ca); register with your Registrar CA, the one sites list in trust.registrar_ca_files",
			*caFile, validator.SubjectName(ca), role, validator.SubjectName(signer))
	}
	if now.After(ca.NotAfter) || ca.NotBefore.After(now) {
		return fail(e, exitUsage, "register: --ca %s is not valid now (%s to %s)", *caFile, ca.NotBefore.UTC().Format(time.RFC3339), ca.NotAfter.UTC().Format(time.RFC3339))
	}
	if notAfter.After(ca.NotAfter) {
		return fail(e, exitUsage, "register: --expires %s is after the Registrar CA's own expiry %s", notAfter.UTC().Format(time.RFC3339), ca.NotAfter.UTC().Format(time.RFC3339))
	}
	// nor after that of a CA of its chain (the rest of the --ca file):
	// sites refuse an image certificate that outlives a CA of its chain
	for _, c := range cas[1:] {
		if notAfter.After(c.NotAfter) {
			return fail(e, exitUsage, "register: --expires %s is after the expiry %s of %q, a CA of the Registrar CA's chain (--ca %s)", notAfter.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), validator.SubjectName(c), *caFile)
		}
	}
	imgKey, err := pki.NewKey(pki.KeyType(*keyType))
	if err != nil {
		return fail(e, exitUsage, "register: --key-type: %v", err)
	}
	// a minute back for clocks a little behind, but never before the CA's
	// own notBefore (a chain a site would refuse)
	notBefore := now.Add(-time.Minute)
	if notBefore.Before(ca.NotBefore) {
		notBefore = ca.NotBefore
	}
	if d.CreatedTime.After(notBefore.Add(validator.CreatedSkew)) {
		return fail(e, exitInvalid, "register: check created-after-registration: %s was created %s, after now: every site would refuse it; describe it again", name, d.CreatedTime.UTC().Format(time.RFC3339))
	}
	// the creator's and approver's certificates must be valid at the
	// registration time (the image certificate's notBefore), as every site
	// checks (verify's signer-time); nothing is written otherwise
	for i := range sd.Signers {
		c := sd.Signers[i].Certificate
		role := signerRole(sd.Signers, i)
		if notBefore.Before(c.NotBefore) || notBefore.After(c.NotAfter) {
			return fail(e, exitInvalid, "register: check %s (%s): %s certificate %q is not valid at registration %s (valid %s to %s); nothing written",
				validator.CheckSignerTime, validator.ReasonSignerInvalidAtReg, role, validator.SubjectName(c),
				notBefore.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	cert, err := pki.Issue(pki.Template{
		Subject:   pkix.Name{CommonName: "image " + d.UUID, OrganizationalUnit: []string{d.VO}},
		NotBefore: notBefore, NotAfter: notAfter,
		URIs: []string{"urn:uuid:" + d.UUID},
	}, imgKey.Public(), ca, key)
	if err != nil {
		return fail(e, exitInvalid, "register: %v", err)
	}
	der, err := cms.AddSigner(p7, descBytes, cert, imgKey, cms.SignOptions{Hash: h, SigningTime: now, Chain: cas[1:]})
	if err != nil {
		return fail(e, exitInvalid, "register: %v", err)
	}
	// The .crt first: the certificate a Registrar needs to revoke the image
	// is on disk before the registered .p7s is. The image key is dropped
	// here: it is not needed after registration.
	if err := fsutil.WriteFileAtomic(name+".crt", pki.EncodeCertPEM(cert), 0o644); err != nil {
		return fail(e, exitInvalid, "register: %v; %s.p7s is unchanged", err, name)
	}
	if err := fsutil.WriteFileAtomic(name+".p7s", der, 0o644); err != nil {
		_ = os.Remove(name + ".crt")
		return fail(e, exitInvalid, "register: %v; %s.p7s is unchanged (image certificate serial %x not used)", err, name, cert.SerialNumber)
	}
	fmt.Fprintf(e.stdout, "registered %s: image certificate serial %x, expires %s; wrote %s.p7s and %s.crt\n",
		d.UUID, cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339), name, name)
	fmt.Fprintf(e.stdout, "serial=%x\n", cert.SerialNumber)
	return exitOK
}
