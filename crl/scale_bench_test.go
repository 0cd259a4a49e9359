package crl

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/benchutil"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// staticCatalog is a catalogue that returns a fixed list and drops writes:
// the job's own cost, without a Glance or a copying fake.
type staticCatalog struct{ imgs []Image }

func (s *staticCatalog) List(context.Context) ([]Image, error) { return s.imgs, nil }
func (s *staticCatalog) SetProperties(context.Context, string, map[string]string, []string) error {
	return nil
}
func (s *staticCatalog) Deactivate(context.Context, string) error { return nil }
func (s *staticCatalog) Reactivate(context.Context, string) error { return nil }

// Get answers that the image is gone: the writes it dropped are not
// checked (checkWrites), nor written again.
func (s *staticCatalog) Get(context.Context, string) (Image, error) { return Image{}, ErrImageGone }

// scaleSite is a site of a root (the only configured CA), a people and a
// Registrar intermediate embedded in every record's signature, n image
// records with the full six-certificate imagetrust_chain, and a Registrar
// CRL of e entries revoking 1% of the images.
type scaleSite struct {
	root, people, registrar *testpki.CA
	imgs                    []Image
	regCRL                  []byte
	dir                     string
}

func newScaleSite(b *testing.B, n, e int) *scaleSite {
	b.Helper()
	s := &scaleSite{root: testpki.NewRoot(b, "Scale Root"), dir: b.TempDir()}
	s.people = s.root.Intermediate("Scale People CA")
	s.registrar = s.root.Intermediate("Scale Registrar CA")
	creator := s.people.Leaf(testpki.Name("Creator"), testpki.WithSerial(101))
	approver := s.people.Leaf(testpki.Name("Approver"), testpki.WithSerial(102))
	image := s.registrar.Leaf(testpki.Name("Image"), testpki.WithSerial(103))
	// one real three-signer SignedData, embedding both intermediates: every
	// record parses the same amount (the job does not share work between
	// records)
	p7 := threeSigned(b, []*testpki.Leaf{creator, approver, image}, s.people.Cert, s.registrar.Cert)
	sig := base64.StdEncoding.EncodeToString(p7)
	ref := func(role string, c *testpki.CA, serial *big.Int) ChainCert {
		return ChainCert{Role: role, Issuer: c.Cert.Subject.String(), Serial: serial.Text(16), AKI: hex.EncodeToString(c.Cert.SubjectKeyId)}
	}
	s.imgs = make([]Image, n)
	for i := range s.imgs {
		chain := []ChainCert{
			ref("image", s.registrar, scaleSerial(i)), ref("image-ca", s.root, s.registrar.Cert.SerialNumber),
			ref("creator", s.people, creator.Cert.SerialNumber), ref("creator-ca", s.root, s.people.Cert.SerialNumber),
			ref("approver", s.people, approver.Cert.SerialNumber), ref("approver-ca", s.root, s.people.Cert.SerialNumber),
		}
		cj, _ := json.Marshal(chain)
		st := StateValid
		if i%100 == 0 {
			st = StateRevoked // as a previous run left it: no writes
		}
		s.imgs[i] = Image{ID: fmt.Sprintf("img-%06d", i), Status: StatusActive, Properties: map[string]string{
			PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: regTime, PropGlobalValidity: st, PropSignature: sig}}
		if st == StateRevoked {
			s.imgs[i].Status = StatusDeactivated
		}
	}
	// the Registrar CRL: the revoked images' serials, then filler
	entries := make([]pki.Revoked, 0, e)
	for i := 0; i < n && len(entries) < e; i += 100 {
		entries = append(entries, pki.Revoked{Serial: scaleSerial(i), Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise})
	}
	for i := 0; len(entries) < e; i++ {
		entries = append(entries, pki.Revoked{Serial: benchSerial(i), Time: t0.Add(-2 * time.Hour), Reason: ReasonSuperseded})
	}
	s.regCRL = crlT(s.registrar, 1, entries...)
	return s
}

// scaleSerial is image i's certificate serial (distinct from benchSerial's).
func scaleSerial(i int) *big.Int { return big.NewInt(int64(1_000_000_000 + i)) }

func (s *scaleSite) job(b *testing.B, cache string) *Job {
	b.Helper()
	files := map[string][]byte{
		"registrar.crl": s.regCRL,
		"people.crl":    crlT(s.people, 1),
		"root.crl":      crlT(s.root, 1),
	}
	var srcs []Source
	for name, der := range files {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, der, 0o600); err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, Source{File: p})
	}
	cfg := JobConfig{CAs: []*x509.Certificate{s.root.Cert}, Sources: srcs, CacheDir: cache,
		Policy: Policy{RefuseStale: true, RequireCRL: true, Grace: time.Hour}, ClockSkew: 5 * time.Minute, Timeout: time.Second}
	j := NewJob(cfg, &staticCatalog{imgs: s.imgs}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	j.Now = func() time.Time { return t0 }
	return j
}

// BenchmarkCRLJobScale: one op is a steady-state Job.Run (the CRL cache
// warm, nothing to write) over n records and a Registrar CRL of e entries,
// read from a file source. Baseline, measured in the same run: ParseList of
// that CRL alone (the least any run must do with it). Metrics:
//
//	x-parse      run time / ParseList time (goal: close to 1 + the judging)
//	embedded-ms  EmbeddedCAs over the records, alone
//	judge-ms     RecordRefs + Judge + Plan over the records, alone
//	parse-ms     ParseList of the CRL
//	parse-alloc-MiB  bytes ParseList allocates for the CRL (B/op: the run's)
//
//	go test -run '^$' -bench CRLJobScale -benchtime 3x ./crl
func BenchmarkCRLJobScale(b *testing.B) {
	for _, sz := range []struct{ n, e int }{{1000, 100_000}, {10_000, 100_000}, {1000, 1_000_000}} {
		b.Run(fmt.Sprintf("images=%d/entries=%d", sz.n, sz.e), func(b *testing.B) {
			s := newScaleSite(b, sz.n, sz.e)
			j := s.job(b, b.TempDir())
			if rep, err := j.Run(context.Background(), false); err != nil || len(rep.Refused) > 0 {
				b.Fatalf("warm-up run: %v %+v", err, rep.Refused)
			}
			parse := benchutil.BestOf(3, func() {
				if _, err := ParseList(s.regCRL); err != nil {
					b.Fatal(err)
				}
			})
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				rep, err := j.Run(context.Background(), false)
				if err != nil {
					b.Fatal(err)
				}
				if len(rep.Changes) != 0 || rep.Images != sz.n {
					b.Fatalf("%d changes, %d images", len(rep.Changes), rep.Images)
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			anchors := []*x509.Certificate{s.root.Cert}
			emb := benchutil.BestOf(1, func() { EmbeddedCAs(s.imgs, anchors, t0) })
			ix := &Index{ClockSkew: time.Minute}
			for _, c := range []struct {
				ca  *testpki.CA
				der []byte
			}{{s.registrar, s.regCRL}, {s.people, crlT(s.people, 1)}, {s.root, crlT(s.root, 1)}} {
				l, err := ParseList(c.der)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ix.AddList(l, c.ca.Cert, t0, ""); err != nil {
					b.Fatal(err)
				}
			}
			judge := benchutil.BestOf(1, func() {
				for _, img := range s.imgs {
					st, rev, why := Judge(ix, img, j.cfg.Policy, t0)
					Plan(img, st, rev, why)
				}
			})
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			l, _ := ParseList(s.regCRL)
			runtime.ReadMemStats(&m1)
			runtime.KeepAlive(l)
			b.ReportMetric(float64(per)/float64(parse), "x-parse")
			b.ReportMetric(float64(parse.Microseconds())/1e3, "parse-ms")
			b.ReportMetric(float64(emb.Microseconds())/1e3, "embedded-ms")
			b.ReportMetric(float64(judge.Microseconds())/1e3, "judge-ms")
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20), "parse-alloc-MiB")
		})
	}
}

// BenchmarkCRLJobManyCAs: one op is a steady-state Job.Run with c CAs, each
// with its own CRL at its own URL, every URL answering 304 (nothing new),
// over a catalogue of 10 records. Baseline, in the same run: c conditional
// GETs of the same URLs answered 304 (the least such a run must do).
//
//	x-fetch  run time / c conditional GETs
//
//	go test -run '^$' -bench CRLJobManyCAs -benchtime 3x ./crl
func BenchmarkCRLJobManyCAs(b *testing.B) {
	for _, c := range []int{100, 300, 1000} {
		b.Run(fmt.Sprintf("cas=%d", c), func(b *testing.B) {
			root := testpki.NewRoot(b, "Many Root")
			cas := []*x509.Certificate{root.Cert}
			bodies := map[string][]byte{}
			for i := range c {
				ca := root.Intermediate(fmt.Sprintf("Many CA %d", i))
				cas = append(cas, ca.Cert)
				bodies[fmt.Sprintf("/ca-%d.crl", i)] = crlT(ca, 1, pki.Revoked{Serial: big.NewInt(int64(i + 1)), Reason: ReasonSuperseded})
			}
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				body := bodies[r.URL.Path]
				sum := sha256.Sum256(body)
				etag := `"` + hex.EncodeToString(sum[:8]) + `"`
				if r.Header.Get("If-None-Match") == etag {
					rw.WriteHeader(http.StatusNotModified)
					return
				}
				rw.Header().Set("ETag", etag)
				_, _ = rw.Write(body)
			}))
			defer srv.Close()
			var srcs []Source
			var urls []string
			for p := range bodies {
				srcs = append(srcs, Source{URL: srv.URL + p})
				urls = append(urls, srv.URL+p)
			}
			site := newScaleSite(b, 10, 10)
			cfg := JobConfig{CAs: cas, Sources: srcs, CacheDir: b.TempDir(), Policy: Policy{Grace: time.Hour},
				ClockSkew: 5 * time.Minute, Timeout: 5 * time.Second}
			j := NewJob(cfg, &staticCatalog{imgs: site.imgs}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			j.Now = func() time.Time { return t0 }
			if rep, err := j.Run(context.Background(), false); err != nil || len(rep.Refused) > 0 {
				b.Fatalf("warm-up: %v %+v", err, rep.Refused)
			}
			etags := map[string]string{}
			for _, u := range urls {
				resp, err := http.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				etags[u] = resp.Header.Get("ETag")
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			fetch := benchutil.BestOf(3, func() {
				for _, u := range urls {
					req, _ := http.NewRequest(http.MethodGet, u, nil)
					req.Header.Set("If-None-Match", etags[u])
					resp, err := http.DefaultClient.Do(req)
					if err != nil || resp.StatusCode != http.StatusNotModified {
						b.Fatalf("baseline GET: %v", err)
					}
					resp.Body.Close()
				}
			})
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				rep, err := j.Run(context.Background(), false)
				if err != nil || len(rep.CRLs) != c {
					b.Fatalf("%v: %d CRLs", err, len(rep.CRLs))
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			b.ReportMetric(float64(per)/float64(fetch), "x-fetch")
			b.ReportMetric(float64(fetch.Microseconds())/1e3, "fetch-ms")
		})
	}
}
