package model

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testbundle"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/internal/testsite"
	"github.com/imagetrust/imagetrust/validator"
)

// The site: three VOs, two tags each, two directory sources.
var (
	vos  = []string{"alpha", "beta", "gamma"}
	tags = []string{"worker", "login"}
	// srcVOs are the VOs each source may publish for.
	srcVOs     = [][]string{{"alpha", "beta"}, {"beta", "gamma"}}
	visibility = map[string]string{"alpha": "private", "beta": "shared", "gamma": "private"}
)

// Bundle kinds. Only kindValid and the bytes kinds pass verification
// without the image's bytes; the bytes kinds are refused when streamed.
const (
	kindValid       = "valid"
	kindTamperDesc  = "tamper-desc"  // descriptor changed after signing
	kindUntrusted   = "untrusted"    // creator of a CA the site does not trust
	kindNoApprover  = "no-approver"  // two-person rule broken
	kindWrongVO     = "wrong-vo"     // in a source that may not publish for its VO
	kindExpired     = "expired"      // image certificate expired when published
	kindWrongSHA    = "wrong-sha"    // descriptor names another sha512
	kindTamperImage = "tamper-image" // one image byte flipped
	kindTruncate    = "truncate"     // image one byte short
)

var badKinds = []string{kindTamperDesc, kindUntrusted, kindNoApprover, kindWrongVO, kindExpired, kindWrongSHA, kindTamperImage, kindTruncate}

func bytesBad(kind string) bool {
	return kind == kindWrongSHA || kind == kindTamperImage || kind == kindTruncate
}

// CRL issuers of the model's PKI: each writes one CRL file.
const (
	crlReg        = iota // the Registrar CA: image certificates
	crlPeople            // the people CA: creators 0 and 1, approver 0
	crlPeople2           // the second people CA: creator 2, approver 1
	crlPeopleRoot        // the people root: the two people CAs
	crlRegRoot           // the Registrar root: the Registrar CA
)

// crlIssuer is a CA of the site whose CRL the CRL job reads.
type crlIssuer struct {
	name    string
	ca      *testpki.CA
	file    string
	number  int64
	entries map[string]crlEntry // by serial hex
	// stale: the last CRL issued was past nextUpdate + grace when issued
	stale bool
	// inter: an intermediate CA, which the job knows only from the
	// records that carry it (the trust files hold only the roots)
	inter bool
}

// person is a creator or an approver of the VOs.
type person struct {
	name string
	role string // creator, approver
	leaf *testpki.Leaf
	crl  int // the issuer of the person's certificate (crlPeople, crlPeople2)
}

// chainRef is one certificate of a record's chains: the role it plays
// (image, creator, approver, ca), the CRL that speaks for it and its serial.
type chainRef struct {
	role   string
	crl    int
	serial string
}

// bundle is a bundle the model published.
type bundle struct {
	seq      int // its place among the model's publications
	pub      *testbundle.Published
	id       string
	vo, tag  string
	src      int
	kind     string
	created  time.Time
	notAfter time.Time
	serial   string // image certificate serial, hex
	serialN  *big.Int
	listed   bool
	// creator and approver signed it (nil: another's, or none)
	creator, approver *person
	registered        time.Time // the image certificate's notBefore
	refs              []chainRef
}

// mimage is what the model expects of a catalogue image in Glance.
type mimage struct {
	b       *bundle
	status  string // active, deactivated, queued
	hidden  bool
	global  string // valid, revoked, hold
	local   string // the operator's flag, "" when unset
	deactBy string // crl-hold, or ""
	// causes are the revocation details (imagetrust_revoked_role,
	// imagetrust_revocation_serial, imagetrust_revocation_reason, as
	// "role serial reason") the model accepts while global is revoked or
	// hold: any of the certificates that make it so
	causes map[string]bool
	// tampered names the signed property an operator edited ("" when the
	// record is intact)
	tampered string
}

// crlEntry is an entry of the Registrar CA's CRL.
type crlEntry struct {
	serial *big.Int
	at     time.Time
	reason int
}

type world struct {
	t    *testing.T
	rng  *rand.Rand
	dir  string
	srcs []string

	cloud  *ostest.Cloud
	proj   *ostest.Project
	glance glancesync.Glance
	site   *testsite.Site
	vos    map[string]config.VO
	policy map[string]*validator.VOPolicy
	cfg    string // imagetrust.toml of the CRL job

	crls    []*crlIssuer
	entries map[string]crlEntry // the Registrar CA's CRL now (crls[crlReg])
	people  []*person
	// staleRefuse: crl.stale = "refuse" (else "warn")
	staleRefuse bool
	// strict: trust.strict, any revocation of a person or an intermediate
	// CA counts whatever the dates
	strict bool
	// regBase: the nth bundle is registered (image certificate notBefore)
	// n minutes after it, so that a dated revocation can fall between any
	// two registrations
	regBase   time.Time
	crlJobRan bool
	// stats counts what the CRL job runs did to the model's images (logged
	// at the end: what a seed covered)
	stats map[string]int

	offset  time.Duration // the model's clock runs this far ahead of the real one
	created time.Time     // the last new version's created time

	bundles []*bundle
	byID    map[string]*bundle
	images  map[string]*mimage
	spent   map[string]bool
	aliases map[string]bool // VO/TAG whose two alias images exist
	// lastKeys are the bundles the last sync pass found listed and valid
	lastKeys map[string]*bundle
	// lastLocal is each image's local flag as the last CRL run listed it
	lastLocal map[string]string

	history []string
	lastLog *bytes.Buffer
}

func (w *world) now() time.Time { return time.Now().Add(w.offset) }

func (w *world) logf(format string, args ...any) {
	s := fmt.Sprintf("step %d: ", len(w.history)) + fmt.Sprintf(format, args...)
	w.history = append(w.history, s)
	w.t.Log(s)
}

func newWorld(t *testing.T, seed uint64) *world {
	t.Helper()
	w := &world{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dir: t.TempDir(),
		byID: map[string]*bundle{}, stats: map[string]int{},
		images: map[string]*mimage{}, spent: map[string]bool{}, aliases: map[string]bool{}, lastLocal: map[string]string{}}
	w.cloud = ostest.Start(t, ostest.Options{})
	w.proj = w.cloud.NewProject(t, w.dir, "model", "model")
	w.glance = glancesync.NewGlance(w.proj.Image)
	w.site = testsite.New(t)
	// descriptors are created before their registration (30 minutes ago)
	w.created = time.Now().AddDate(0, 0, -30).Truncate(time.Second)
	for i := range srcVOs {
		d := filepath.Join(w.dir, fmt.Sprintf("src%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		w.srcs = append(w.srcs, d)
	}
	w.regBase = time.Now().Add(-24 * time.Hour).Truncate(time.Minute)
	w.staleRefuse = w.rng.IntN(4) != 0
	w.strict = w.rng.IntN(4) == 0
	peopleCA2 := w.site.PeopleRoot.Intermediate("Trust People CA 2")
	w.people = []*person{
		{name: "creator0", role: "creator", leaf: w.site.Creator, crl: crlPeople},
		{name: "creator1", role: "creator", leaf: w.site.PeopleCA.Leaf(testpki.Name("Trust Creator One")), crl: crlPeople},
		{name: "creator2", role: "creator", leaf: peopleCA2.Leaf(testpki.Name("Trust Creator Two")), crl: crlPeople2},
		{name: "approver0", role: "approver", leaf: w.site.Approver, crl: crlPeople},
		{name: "approver1", role: "approver", leaf: peopleCA2.Leaf(testpki.Name("Trust Approver One")), crl: crlPeople2},
	}
	if err := os.MkdirAll(filepath.Join(w.dir, "crl"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, file string
		ca         *testpki.CA
		inter      bool
	}{
		{"registrar-ca", "registrar-ca.crl", w.site.RegCA, true},
		{"people-ca", "people-ca.crl", w.site.PeopleCA, true},
		{"people-ca2", "people-ca2.crl", peopleCA2, true},
		{"people-root", "people-root.crl", w.site.PeopleRoot, false},
		{"registrar-root", "registrar-root.crl", w.site.RegRoot, false},
	} {
		w.crls = append(w.crls, &crlIssuer{name: c.name, ca: c.ca, file: filepath.Join(w.dir, "crl", c.file), inter: c.inter, entries: map[string]crlEntry{}})
	}
	w.entries = w.crls[crlReg].entries
	var creators, approvers []string
	var cdns, adns []validator.DN
	for _, p := range w.people {
		dn, _ := validator.DNFromRaw(p.leaf.Cert.RawSubject)
		if p.role == "creator" {
			creators, cdns = append(creators, fmt.Sprintf("%q", p.leaf.Cert.Subject.String())), append(cdns, dn)
		} else {
			approvers, adns = append(approvers, fmt.Sprintf("%q", p.leaf.Cert.Subject.String())), append(adns, dn)
		}
	}
	w.vos, w.policy = map[string]config.VO{}, map[string]*validator.VOPolicy{}
	var voToml string
	for _, v := range vos {
		w.vos[v] = config.VO{Visibility: visibility[v]}
		w.policy[v] = &validator.VOPolicy{Name: v, Creators: cdns, Approvers: adns}
		voToml += fmt.Sprintf("[vo.%s]\ncreators = [%s]\napprovers = [%s]\nvisibility = %q\n\n", v,
			strings.Join(creators, ", "), strings.Join(approvers, ", "), visibility[v])
	}
	testpki.WriteFile(t, w.dir, "people-root.pem", testpki.CertPEM(w.site.PeopleRoot.Cert))
	testpki.WriteFile(t, w.dir, "registrar-root.pem", testpki.CertPEM(w.site.RegRoot.Cert))
	for i := range w.crls {
		w.writeCRL(i, false)
	}
	stale := "refuse"
	if !w.staleRefuse {
		stale = "warn"
	}
	var sources string
	for _, c := range w.crls {
		sources += fmt.Sprintf("[[crl.source]]\nfile = %q\n", c.file)
	}
	cfg := fmt.Sprintf(`[trust]
ca_files = ["people-root.pem"]
registrar_ca_files = ["registrar-root.pem"]
strict = %v

%s[crl]
cache_dir = "crl-cache"
timeout = "5s"
stale = %q
grace = "1h"
%s`, w.strict, voToml, stale, sources)
	w.cfg = testpki.WriteFile(t, w.dir, "imagetrust.toml", []byte(cfg))
	return w
}

// writeCRL issues issuer i's next CRL with its entries now: a fresh one,
// or a stale one (past nextUpdate and the job's grace of an hour).
func (w *world) writeCRL(i int, stale bool) {
	c := w.crls[i]
	c.number++
	c.stale = stale
	var es []pki.Revoked
	for _, e := range c.entries {
		es = append(es, pki.Revoked{Serial: e.serial, Time: e.at, Reason: e.reason})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Serial.Cmp(es[j].Serial) < 0 })
	tmpl := pki.CRLTemplate{Number: c.number, ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().AddDate(2, 0, 0), Entries: es}
	if stale {
		tmpl.ThisUpdate, tmpl.NextUpdate = time.Now().AddDate(0, 0, -10), time.Now().AddDate(0, 0, -2)
	}
	testpki.WriteFile(w.t, filepath.Dir(c.file), filepath.Base(c.file), c.ca.CRL(tmpl))
}

func (w *world) crlDERs() [][]byte {
	var out [][]byte
	for _, c := range w.crls {
		b, err := os.ReadFile(c.file)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// trust is the verifier's trust, with the CRLs of now or without any.
func (w *world) trust(withCRLs bool) *validator.Trust {
	o := validator.TrustOptions{People: []*x509.Certificate{w.site.PeopleRoot.Cert}, Registrar: []*x509.Certificate{w.site.RegRoot.Cert}, VOs: w.policy, Strict: w.strict}
	if withCRLs {
		o.CRLs = w.crlDERs()
	}
	tr, _, err := validator.NewTrust(o)
	if err != nil {
		w.t.Fatal(err)
	}
	return tr
}

// publish writes a bundle of kind into source src.
func (w *world) publish(kind, vo, tag string, src int, created time.Time, life time.Duration) *bundle {
	// a new uuid each run (Glance never takes an id twice, and a replay
	// may run on the Glance of the run it replays): the model orders
	// images by publication, not by uuid, so that a replay picks the same
	s := testbundle.Spec{VO: vo, Tag: tag, Created: created, Size: (4 + w.rng.IntN(12)) << 10}
	now := time.Now()
	s.NotAfter = now.Add(life)
	s.NotBefore = w.regBase.Add(time.Duration(len(w.bundles)) * time.Minute)
	creator, approver := w.pickPerson("creator"), w.pickPerson("approver")
	signers := testbundle.Signers{Creator: creator.leaf, Approver: approver.leaf, Registrar: w.site.RegCA}
	switch kind {
	case kindTamperDesc:
		s.TamperDesc = true
	case kindUntrusted:
		s.Creator = w.site.OtherCreator
		creator = nil
	case kindNoApprover:
		s.NoApprover = true
		approver = nil
	case kindExpired:
		s.NotBefore, s.NotAfter = now.AddDate(0, 0, -60), now.AddDate(0, 0, -1)
		// created before its registration, or it is refused for that too
		s.Created = s.NotBefore.Add(-time.Hour)
		created = s.Created
	case kindWrongSHA:
		s.WrongSHA = true
	case kindTamperImage:
		s.TamperImage = true
	case kindTruncate:
		s.Truncate = true
	}
	p := signers.Publish(w.t, w.srcs[src], s)
	b := &bundle{seq: len(w.bundles), pub: p, id: p.ID, vo: vo, tag: tag, src: src, kind: kind, created: created.Truncate(time.Second),
		notAfter: p.ImageCert.NotAfter, serialN: p.ImageCert.SerialNumber, listed: true,
		creator: creator, approver: approver, registered: p.ImageCert.NotBefore}
	b.serial = hexSerial(p.ImageCert.SerialNumber)
	b.refs = []chainRef{{"image", crlReg, b.serial}, {"ca", crlRegRoot, hexSerial(w.site.RegCA.Cert.SerialNumber)}}
	for _, q := range []*person{creator, approver} {
		if q != nil {
			b.refs = append(b.refs, chainRef{q.role, q.crl, hexSerial(q.leaf.Cert.SerialNumber)},
				chainRef{"ca", crlPeopleRoot, hexSerial(w.crls[q.crl].ca.Cert.SerialNumber)})
		}
	}
	w.bundles = append(w.bundles, b)
	w.byID[b.id] = b
	return b
}

func hexSerial(n *big.Int) string { return fmt.Sprintf("%x", n) }

// pickPerson picks a creator or an approver: most often one whose
// certificate is not revoked for good, so that a run keeps publishing
// images that verify.
func (w *world) pickPerson(role string) *person {
	var all, ok []*person
	for _, p := range w.people {
		if p.role != role {
			continue
		}
		all = append(all, p)
		if !w.final(p.crl, hexSerial(p.leaf.Cert.SerialNumber)) {
			ok = append(ok, p)
		}
	}
	if len(ok) > 0 && w.rng.IntN(3) != 0 {
		return pick(w, ok)
	}
	return pick(w, all)
}

// final reports whether CRL issuer i lists serial revoked for good (a
// reason other than certificateHold and removeFromCRL).
func (w *world) final(i int, serial string) bool {
	e, ok := w.crls[i].entries[serial]
	return ok && e.reason != crl.ReasonCertificateHold && e.reason != crl.ReasonRemoveFromCRL
}

// applies is the documented revocation rule (docs/publisher-guide.md,
// "What a revocation does at the sites"; docs/formats.md check 6), at a
// site without trust.strict: any entry of an image certificate counts; a
// creator's, approver's or intermediate CA's counts for a compromise
// reason or a hold whatever the dates, and for a dated reason
// (affiliationChanged, superseded, cessationOfOperation,
// privilegeWithdrawn) only for images registered after the revocation
// date; removeFromCRL never counts.
func applies(role string, e crlEntry, registered time.Time, strict bool) bool {
	switch {
	case e.reason == crl.ReasonRemoveFromCRL:
		return false
	case role == "image" || strict:
		return true
	case dated(e.reason):
		return !registered.Before(e.at)
	}
	return true
}

func dated(reason int) bool {
	switch reason {
	case crl.ReasonAffiliationChanged, crl.ReasonSuperseded, crl.ReasonCessationOfOperation, crl.ReasonPrivilegeWithdrawn:
		return true
	}
	return false
}

// judge is what the CRLs now say of a bundle: "revoked", "hold" or "",
// with the certificates that make it so ("role serial reason").
func (w *world) judge(b *bundle) (string, map[string]bool) {
	return w.judgeAt(b, b.registered)
}

// judgeAt is judge with the registration time registered: the zero time
// for a record whose imagetrust_image_not_before was edited by hand, where
// only the revocations that apply whatever the dates count.
func (w *world) judgeAt(b *bundle, registered time.Time) (string, map[string]bool) {
	revoked, held := map[string]bool{}, map[string]bool{}
	for _, r := range b.refs {
		e, ok := w.crls[r.crl].entries[r.serial]
		if !ok || !applies(r.role, e, registered, w.strict) {
			continue
		}
		k := r.role + " " + r.serial + " " + crl.ReasonName(e.reason)
		if e.reason == crl.ReasonCertificateHold {
			held[k] = true
		} else {
			revoked[k] = true
		}
	}
	switch {
	case len(revoked) > 0:
		return crl.StateRevoked, revoked
	case len(held) > 0:
		return crl.StateHold, held
	}
	return "", nil
}

// staleFor reports whether a CRL that speaks for a certificate of the
// bundle's chains is stale (the job's state of that certificate).
func (w *world) staleFor(b *bundle) bool {
	for _, r := range b.refs {
		if w.crls[r.crl].stale {
			return true
		}
	}
	return false
}

// carries reports whether the bundle's record carries the CA of issuer i
// (the Registrar CA issues every image certificate).
func (b *bundle) carries(i int) bool {
	for _, r := range b.refs {
		if r.crl == i {
			return true
		}
	}
	return false
}

// listed returns the bundles in the sources now.
func (w *world) listed() []*bundle {
	var out []*bundle
	for _, b := range w.bundles {
		if b.listed {
			out = append(out, b)
		}
	}
	return out
}

// verdict is the sync's judgement of a listed bundle at the model's time:
// "" (valid: mirrored), "routine" (expired, revoked: refused, routine) or
// "bad" (refused, exit 4), and whether the bundle counts as present for its
// VO.
func (w *world) verdict(b *bundle, t time.Time, crls bool) (string, bool) {
	switch b.kind {
	case kindWrongVO:
		return "bad", false
	case kindTamperDesc, kindUntrusted, kindNoApprover:
		return "bad", true
	case kindExpired:
		return "routine", true
	}
	if st, _ := w.judge(b); crls && st != "" {
		return "routine", true
	}
	if t.After(b.notAfter) {
		return "routine", true
	}
	return "", true
}

// allows reports whether source src may publish for vo.
func allows(src int, vo string) bool {
	for _, v := range srcVOs[src] {
		if v == vo {
			return true
		}
	}
	return false
}

// newerImage orders the model's images as the sync does (created, then id).
func newerImage(a, b *mimage) bool {
	if !a.b.created.Equal(b.b.created) {
		return a.b.created.After(b.b.created)
	}
	return a.b.id > b.b.id
}

// syncExpect is what the model expects a sync pass to report.
type syncExpect struct {
	bad, routine map[string]bool // ids refused, exit-relevant or routine
}

// modelSync applies one sync pass to the model and returns what it
// expects the pass to report.
func (w *world) modelSync(retire string, crls, checker, aliasesOn bool) syncExpect {
	t := w.now()
	ex := syncExpect{bad: map[string]bool{}, routine: map[string]bool{}}
	present := map[string]bool{}
	keys := map[string]*bundle{}
	srcCount := make([]int, len(w.srcs))
	voListed := map[string]bool{}
	published := map[string]bool{}
	for _, b := range w.listed() {
		srcCount[b.src]++
		v, pres := w.verdict(b, t, crls)
		if pres {
			present[b.vo+"/"+b.id] = true
			voListed[b.vo] = true
			if b.kind != kindTamperDesc {
				published[b.vo+"/"+b.tag] = true
			}
		}
		switch v {
		case "bad":
			ex.bad[b.id] = true
		case "routine":
			ex.routine[b.id] = true
		default:
			keys[b.id] = b
		}
	}
	w.lastKeys = keys
	complete := map[string]bool{}
	for _, v := range vos {
		complete[v] = voListed[v]
		for s := range w.srcs {
			if allows(s, v) && srcCount[s] == 0 {
				complete[v] = false
			}
		}
	}
	blocks := func(im *mimage) bool { return validator.LocalBlocks(im.local) }
	// the current image of each tag before the pass (retiredAway)
	current := map[string]*mimage{}
	for id, b := range keys {
		im := w.images[id]
		if im == nil || im.status != "active" || blocks(im) {
			continue
		}
		k := b.vo + "/" + b.tag
		if c := current[k]; c == nil || newerImage(im, c) {
			current[k] = im
		}
	}
	// mirror
	for _, b := range w.listed() {
		if keys[b.id] == nil {
			continue
		}
		im := w.images[b.id]
		if im == nil {
			if c := current[b.vo+"/"+b.tag]; retire == "delete" && c != nil && !(b.created.After(c.b.created) || (b.created.Equal(c.b.created) && b.id > c.b.id)) {
				continue // superseded: not mirrored
			}
			if w.spent[b.id] {
				ex.bad[b.id] = true // id-deleted
				continue
			}
			// created hidden; reconcile shows it if it is current
			im = &mimage{b: b, status: "active", hidden: true, global: crl.StateValid}
			if bytesBad(b.kind) {
				im.status = "queued"
				ex.bad[b.id] = true
			}
			w.images[b.id] = im
			continue
		}
		if im.status == "queued" {
			ex.bad[b.id] = true
			continue
		}
		if slices.Contains(crl.JudgedProperties, im.tampered) && im.global == crl.StateValid {
			// a repair of a property the CRL job judges drops a leftover
			// valid: the CRL job judges the restored record at its next
			// run; one of another property keeps it (docs/glancesync.md)
			im.global = ""
		}
		im.tampered = "" // restored from the verified bundle
	}
	live := map[string]bool{}
	for id, im := range w.images {
		if keys[id] != nil && im.status == "active" {
			live[im.b.vo+"/"+im.b.tag] = true
		}
	}
	// reconcile
	newest := map[string]*mimage{}
	for id, im := range w.images {
		if keys[id] == nil || im.status != "active" || blocks(im) {
			continue
		}
		k := im.b.vo + "/" + im.b.tag
		if c := newest[k]; c == nil || newerImage(im, c) {
			newest[k] = im
		}
	}
	for _, id := range w.imageIDs() {
		im := w.images[id]
		k := im.b.vo + "/" + im.b.tag
		left := !present[im.b.vo+"/"+id] && complete[im.b.vo]
		if im.status == "queued" {
			if left && retire == "hide" {
				im.hidden = true
			} else if left && retire == "delete" {
				w.deleteImage(id)
			}
			continue
		}
		superseded := newest[k] != nil && newest[k] != im && newerImage(newest[k], im)
		if (left || superseded) && retire != "keep" {
			switch {
			case retire == "hide":
				im.hidden = true
			case checker:
				w.deleteImage(id)
			default:
				if im.status == "active" {
					im.status = "deactivated"
				}
				im.hidden, im.deactBy = true, ""
			}
			continue
		}
		// shown when current: under retire = keep too, a superseded image
		// stays as it is, hidden when it was never current
		if keys[id] != nil && im.status == "active" && !superseded && !left {
			im.hidden = false
		}
	}
	shown := map[string]bool{}
	for _, im := range w.images {
		if im.status == "active" && !im.hidden {
			shown[im.b.vo+"/"+im.b.tag] = true
		}
	}
	for _, v := range vos {
		for _, tg := range tags {
			k := v + "/" + tg
			switch {
			case !aliasesOn:
				if complete[v] {
					w.aliases[k] = false
				}
			case live[k]:
				w.aliases[k] = true
			case complete[v] && !published[k] && !shown[k]:
				w.aliases[k] = false
			}
		}
	}
	return ex
}

func (w *world) deleteImage(id string) {
	delete(w.images, id)
	w.spent[id] = true
}

func (w *world) imageIDs() []string {
	ids := make([]string, 0, len(w.images))
	for id := range w.images {
		ids = append(ids, id)
	}
	// in the order of publication: uuids are new each run
	sort.Slice(ids, func(i, j int) bool { return w.images[ids[i]].b.seq < w.images[ids[j]].b.seq })
	return ids
}

// crlExpect is what the model expects of a CRL job run.
type crlExpect struct {
	gone []string // images whose local flag the last run saw and this one does not
	// refused: the CRL files refused (wrong-issuer: an intermediate CA no
	// record carries, while the catalogue has records); unused: those not
	// used for want of any record
	refused, unused []string
	stale           bool // a stale CRL in use: exit 4
	// transit: queued images whose flag becomes revoked or hold (Glance
	// may still write their data); mayTransit: queued revoked or held ones
	transit, mayTransit map[string]bool
}

// modelCRL applies a CRL job run to the model (the rules of
// docs/catalogue.md, "Unsigned: validity flags", docs/operator-guide.md,
// "When a CRL goes stale", and crl/doc.go) and returns what it expects the
// run to report.
func (w *world) modelCRL() crlExpect {
	ex := crlExpect{transit: map[string]bool{}, mayTransit: map[string]bool{}}
	// which CRLs the job uses: the roots' always; an intermediate's when a
	// record carries the intermediate (the trust files hold only roots)
	for i, c := range w.crls {
		used := !c.inter
		if c.inter {
			for _, im := range w.images {
				used = used || im.b.carries(i)
			}
			switch {
			case used:
			case len(w.images) == 0:
				ex.unused = append(ex.unused, c.file)
			default:
				ex.refused = append(ex.refused, c.file)
			}
		}
		ex.stale = ex.stale || (used && c.stale)
	}
	seen := map[string]string{}
	for _, id := range w.imageIDs() {
		im := w.images[id]
		if w.lastLocal[id] != "" && im.local == "" {
			ex.gone = append(ex.gone, id)
		}
		if im.local != "" {
			seen[id] = im.local
		}
		if im.global == crl.StateRevoked {
			if im.status == "active" {
				im.status = "deactivated"
			}
			if im.status == "queued" {
				ex.mayTransit[id] = true
			}
			continue
		}
		st, causes := w.judge(im.b)
		state := crl.StateValid
		if slices.Contains(crl.JudgedProperties, im.tampered) {
			// edited by hand: the job cannot read the record's
			// registration time (crl.RecordRefs); the revocations and
			// holds that apply whatever the dates still count, else it
			// judges the record unknown
			st, causes = w.judgeAt(im.b, time.Time{})
			if st == "" {
				state = crl.StateUnknown
			}
		}
		switch {
		case state == crl.StateUnknown:
		case st != "":
			state = st // a revocation or hold in a stale CRL still counts
		case w.staleRefuse && w.staleFor(im.b):
			state = crl.StateUnknown
		}
		if im.status == "queued" && st != "" {
			ex.mayTransit[id] = true
			if im.global != st {
				ex.transit[id] = true
			}
		}
		if state != im.global {
			k := im.global + "->" + state
			if state == crl.StateRevoked || state == crl.StateHold {
				var rs []string
				for c := range causes {
					if r, _, _ := strings.Cut(c, " "); !slices.Contains(rs, r) {
						rs = append(rs, r)
					}
				}
				sort.Strings(rs)
				k += "(" + strings.Join(rs, ",") + ")"
			}
			if im.deactBy == crl.DeactivatedByHold && state == crl.StateValid && im.local == "" {
				k += ", reactivated"
			}
			w.stats[k]++
		}
		im.global, im.causes = state, causes
		switch state {
		case crl.StateRevoked:
			im.deactBy = ""
			if im.status == "active" {
				im.status = "deactivated"
			}
		case crl.StateHold:
			if im.status == "active" {
				im.status, im.deactBy = "deactivated", crl.DeactivatedByHold
			}
		case crl.StateUnknown:
			// never deactivates, never reactivates
		case crl.StateValid:
			if im.deactBy == crl.DeactivatedByHold && im.local == "" {
				im.deactBy = ""
				if im.status == "deactivated" {
					im.status = "active"
				}
			}
		}
	}
	w.lastLocal = seen
	w.crlJobRan = true
	return ex
}

// runSync runs one pass of the real sync (in process, against Glance) with
// the model's clock.
func (w *world) runSync(retire, ingest string, crls, checker, aliasesOn bool) *glancesync.Report {
	w.t.Helper()
	var srcs []glancesync.Source
	for i, d := range w.srcs {
		srcs = append(srcs, &glancesync.DirSource{Root: d, AllowedVOs: srcVOs[i]})
	}
	var servers glancesync.ServerChecker
	if checker {
		servers = unusedServers{}
	}
	w.lastLog = &bytes.Buffer{}
	al := aliasesOn
	s, err := glancesync.New(glancesync.Options{
		Sync: config.Sync{Parallel: 2, Retire: retire, Ingest: ingest, StaleAfter: config.Duration{Duration: time.Hour}, Aliases: &al},
		VOs:  w.vos, Trust: w.trust(crls), Glance: w.glance, MirrorProject: w.proj.ID, Sources: srcs,
		Logger:     slog.New(slog.NewTextHandler(w.lastLog, &slog.HandlerOptions{Level: slog.LevelInfo})),
		ImportPoll: 100 * time.Millisecond, ImportTimeout: 2 * time.Minute, ResumeAfter: -time.Second,
		Servers: servers, Now: w.now,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := s.Run(ctx)
	if err != nil {
		w.t.Fatalf("sync pass: %v\n%s", err, w.lastLog)
	}
	return r
}

// unusedServers says no server uses any image: retire = delete deletes.
type unusedServers struct{}

func (unusedServers) InUse(context.Context, string) (bool, bool, error) { return false, true, nil }

// runCRL runs `imagetrust crl --once --report-json` and returns its exit
// code and report.
func (w *world) runCRL() (int, *crl.Report, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ostest.Binary(w.t), "crl", "--config", w.cfg, "--once", "--report-json")
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), w.proj.Env()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("imagetrust crl: %v", err)
	}
	var rep crl.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		w.t.Fatalf("imagetrust crl: exit %d, report: %v\n%s\n%s", code, err, out.String(), errb.String())
	}
	return code, &rep, errb.String()
}

// glanceImages lists the project's images (hidden ones included), by id.
func (w *world) glanceImages() map[string]*glancesync.Image {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ims, err := w.glance.List(ctx, w.proj.ID, nil)
	if err != nil {
		w.t.Fatalf("listing the mirror project's images: %v", err)
	}
	out := map[string]*glancesync.Image{}
	for _, im := range ims {
		out[im.ID] = im
	}
	return out
}

func (w *world) patch(id string, ops ...glancesync.PatchOp) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.glance.Patch(ctx, id, ops); err != nil {
		w.t.Fatalf("operator patch of %s: %v", id, err)
	}
}

func (w *world) gdelete(id string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.glance.Delete(ctx, id); err != nil {
		w.t.Fatalf("operator delete of %s: %v", id, err)
	}
}

func short(id string) string { return id[:8] }

func joinIDs(m map[string]bool) string {
	var out []string
	for id, ok := range m {
		if ok {
			out = append(out, short(id))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
