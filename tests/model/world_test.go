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
}

// mimage is what the model expects of a catalogue image in Glance.
type mimage struct {
	b       *bundle
	status  string // active, deactivated, queued
	hidden  bool
	global  string // valid, revoked, hold
	local   string // the operator's flag, "" when unset
	deactBy string // crl-hold, or ""
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

	cloud   *ostest.Cloud
	proj    *ostest.Project
	glance  glancesync.Glance
	site    *testsite.Site
	signers testbundle.Signers
	vos     map[string]config.VO
	policy  map[string]*validator.VOPolicy
	cfg     string // imagetrust.toml of the CRL job

	regCRL    string // the Registrar CA's CRL file
	peopleCRL string
	crlNumber int64
	entries   map[string]crlEntry // the Registrar CA's CRL now, by serial hex
	// everRevoked: serials listed with a reason other than certificateHold
	// (an image found revoked stays revoked for ever)
	everRevoked map[string]bool
	crlJobRan   bool

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
		entries: map[string]crlEntry{}, everRevoked: map[string]bool{}, byID: map[string]*bundle{},
		images: map[string]*mimage{}, spent: map[string]bool{}, aliases: map[string]bool{}, lastLocal: map[string]string{}}
	w.cloud = ostest.Start(t, ostest.Options{})
	w.proj = w.cloud.NewProject(t, w.dir, "model", "model")
	w.glance = glancesync.NewGlance(w.proj.Image)
	w.site = testsite.New(t)
	w.signers = testbundle.Signers{Creator: w.site.Creator, Approver: w.site.Approver, Registrar: w.site.RegCA}
	// descriptors are created before their registration (30 minutes ago)
	w.created = time.Now().AddDate(0, 0, -30).Truncate(time.Second)
	for i := range srcVOs {
		d := filepath.Join(w.dir, fmt.Sprintf("src%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		w.srcs = append(w.srcs, d)
	}
	cdn, _ := validator.DNFromRaw(w.site.Creator.Cert.RawSubject)
	adn, _ := validator.DNFromRaw(w.site.Approver.Cert.RawSubject)
	w.vos, w.policy = map[string]config.VO{}, map[string]*validator.VOPolicy{}
	var voToml string
	for _, v := range vos {
		w.vos[v] = config.VO{Visibility: visibility[v]}
		w.policy[v] = &validator.VOPolicy{Name: v, Creators: []validator.DN{cdn}, Approvers: []validator.DN{adn}}
		voToml += fmt.Sprintf("[vo.%s]\ncreators = [%q]\napprovers = [%q]\nvisibility = %q\n\n", v,
			w.site.Creator.Cert.Subject.String(), w.site.Approver.Cert.Subject.String(), visibility[v])
	}
	testpki.WriteFile(t, w.dir, "people-root.pem", testpki.CertPEM(w.site.PeopleRoot.Cert))
	testpki.WriteFile(t, w.dir, "registrar-root.pem", testpki.CertPEM(w.site.RegRoot.Cert))
	if err := os.MkdirAll(filepath.Join(w.dir, "crl"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.regCRL = filepath.Join(w.dir, "crl", "registrar-ca.crl")
	w.peopleCRL = filepath.Join(w.dir, "crl", "people-ca.crl")
	w.writeCRL()
	testpki.WriteFile(t, filepath.Join(w.dir, "crl"), "people-ca.crl",
		w.site.PeopleCA.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().AddDate(2, 0, 0)}))
	cfg := fmt.Sprintf(`[trust]
ca_files = ["people-root.pem"]
registrar_ca_files = ["registrar-root.pem"]

%s[crl]
cache_dir = "crl-cache"
timeout = "5s"
[[crl.source]]
file = %q
[[crl.source]]
file = %q
`, voToml, w.regCRL, w.peopleCRL)
	w.cfg = testpki.WriteFile(t, w.dir, "imagetrust.toml", []byte(cfg))
	return w
}

// writeCRL issues the Registrar CA's next CRL with the entries now.
func (w *world) writeCRL() {
	w.crlNumber++
	var es []pki.Revoked
	for _, e := range w.entries {
		es = append(es, pki.Revoked{Serial: e.serial, Time: e.at, Reason: e.reason})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Serial.Cmp(es[j].Serial) < 0 })
	der := w.site.RegCA.CRL(pki.CRLTemplate{Number: w.crlNumber, ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().AddDate(2, 0, 0), Entries: es})
	testpki.WriteFile(w.t, filepath.Dir(w.regCRL), filepath.Base(w.regCRL), der)
}

func (w *world) crlDERs() [][]byte {
	var out [][]byte
	for _, p := range []string{w.regCRL, w.peopleCRL} {
		b, err := os.ReadFile(p)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// trust is the verifier's trust, with the CRLs of now or without any.
func (w *world) trust(withCRLs bool) *validator.Trust {
	o := validator.TrustOptions{People: []*x509.Certificate{w.site.PeopleRoot.Cert}, Registrar: []*x509.Certificate{w.site.RegRoot.Cert}, VOs: w.policy}
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
	switch kind {
	case kindTamperDesc:
		s.TamperDesc = true
	case kindUntrusted:
		s.Creator = w.site.OtherCreator
	case kindNoApprover:
		s.NoApprover = true
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
	p := w.signers.Publish(w.t, w.srcs[src], s)
	b := &bundle{seq: len(w.bundles), pub: p, id: p.ID, vo: vo, tag: tag, src: src, kind: kind, created: created.Truncate(time.Second),
		notAfter: p.ImageCert.NotAfter, serialN: p.ImageCert.SerialNumber, listed: true}
	b.serial = fmt.Sprintf("%x", p.ImageCert.SerialNumber)
	w.bundles = append(w.bundles, b)
	w.byID[b.id] = b
	return b
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

// revokedNow reports whether the Registrar CA's CRL lists the bundle's
// image certificate, and with which reason.
func (w *world) revokedNow(b *bundle) (int, bool) {
	e, ok := w.entries[b.serial]
	return e.reason, ok
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
	if _, rev := w.revokedNow(b); crls && rev {
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
		if im.tampered != "" && im.global == crl.StateValid {
			// a repair drops a leftover valid: the CRL job judges the
			// restored record at its next run (docs/catalogue.md)
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

// modelCRL applies a CRL job run to the model (crl.Plan's rules) and
// returns the images whose local flag the last run saw and this one does
// not.
func (w *world) modelCRL() []string {
	var gone []string
	seen := map[string]string{}
	for _, id := range w.imageIDs() {
		im := w.images[id]
		if w.lastLocal[id] != "" && im.local == "" {
			gone = append(gone, id)
		}
		if im.local != "" {
			seen[id] = im.local
		}
		if im.global == crl.StateRevoked {
			if im.status == "active" {
				im.status = "deactivated"
			}
			continue
		}
		state := crl.StateValid
		if w.everRevoked[im.b.serial] {
			state = crl.StateRevoked
		} else if _, ok := w.entries[im.b.serial]; ok {
			state = crl.StateHold
		}
		im.global = state
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
	return gone
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
