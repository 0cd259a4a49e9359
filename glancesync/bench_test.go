package glancesync

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// benchImageSize is the image of BenchmarkMirror2GiB.
const benchImageSize = 2 << 30

// writeBenchImage writes size bytes to path: one random 1 MiB block
// repeated, each copy stamped with its index (so no two blocks are equal and
// nothing is all zeros). It returns the sha512 in hex.
func writeBenchImage(tb testing.TB, path string, size int64) string {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		tb.Fatal(err)
	}
	h := sha512.New()
	w := io.MultiWriter(f, h)
	for i := int64(0); i*int64(len(block)) < size; i++ {
		binary.BigEndian.PutUint64(block, uint64(i))
		n := min(int64(len(block)), size-i*int64(len(block)))
		if _, err := w.Write(block[:n]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeBenchConfig writes an imagetrust.toml with one directory source for
// atlas; retire = keep and no aliases, so that the pass makes nothing but
// its own image in a shared stack (with aliases = false it deletes the
// mirror project's atlas aliases, which only tests make, under tags of
// their own).
func writeBenchConfig(tb testing.TB, w *world, dir, source, ingest string) string {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	people := testpki.WriteFile(tb, dir, "people.pem", testpki.CertPEM(w.peopleRoot.Cert))
	reg := testpki.WriteFile(tb, dir, "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	cfg := fmt.Sprintf(`[trust]
ca_files = [%q]
registrar_ca_files = [%q]
[vo.atlas]
creators = [%q]
approvers = [%q]
visibility = "private"
[sync]
interval = "1h"
parallel = 1
ingest = %q
retire = "keep"
aliases = false
[[sync.source]]
path = %q
vos = ["atlas"]
`, people, reg, w.creator.Cert.Subject.String(), w.approver.Cert.Subject.String(), ingest, source)
	return testpki.WriteFile(tb, dir, "imagetrust.toml", []byte(cfg))
}

// runStats are what timedRun measured of a child process.
type runStats struct {
	wall, cpu time.Duration // wall time; user+system CPU time
	maxRSS    int64         // peak resident set, KiB
}

// timedRun runs cmd and returns its wall and CPU time and peak RSS, failing
// with its output on error.
func timedRun(tb testing.TB, cmd *exec.Cmd) (runStats, []byte) {
	tb.Helper()
	var out bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	st := runStats{wall: d, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		st.maxRSS = int64(ru.Maxrss) // KiB on Linux (int32 on 32-bit systems)
	}
	return st, out.Bytes()
}

// logSeconds returns the "seconds" of the first JSON log record with msg.
func logSeconds(logs []byte, msg string) float64 {
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg     string  `json:"msg"`
			Seconds float64 `json:"seconds"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == msg {
			return rec.Seconds
		}
	}
	return 0
}

// waitActive polls the image until it leaves importing (bounded) and
// returns it.
func waitActive(tb testing.TB, ctx context.Context, e *env, id string) *glance.Image {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		im, err := glance.Get(ctx, e.sc, id).Extract()
		if err != nil {
			tb.Fatalf("get %s: %v", id, err)
		}
		if s := string(im.Status); s != StatusImporting && s != StatusUploading && s != StatusSaving {
			return im
		}
		if time.Now().After(deadline) {
			tb.Fatalf("image %s still %s", id, im.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkMirror2GiB mirrors a 2 GiB image into the real Glance with the
// built binary (`imagetrust sync --once`, a child process, so that its peak
// RSS is its own) and, in the same iteration, measures the baselines on the
// same file, each into a fresh hidden scratch image (token of the mirror
// credentials):
//
//   - `sha512sum FILE`;
//   - `curl -T FILE` to PUT /v2/images/{id}/file: the ordinary way to put
//     an image into Glance with curl, one request, after which the image is
//     active (Glance writes it to its store and hashes it on the way);
//   - `curl -T FILE` to PUT /v2/images/{id}/stage, followed by that image's
//     glance-direct import, timed apart: the same two steps as the sync,
//     without the sync's reading, hashing and verifying.
//
// The sync runs twice per iteration: with sync.ingest = "import" (stage and
// glance-direct import, the default where Glance offers it; the one timed
// as ns/op) and with sync.ingest = "upload" (one PUT /file). Every run
// publishes a fresh bundle (a Glance id can never be reused) for the same
// file. The metrics, averaged over iterations:
//
//	sync-s, sha512sum-s          wall times (sync-s: ingest = "import")
//	sync-upload-s                wall time of the sync with ingest = "upload"
//	curl-file-s, curl-stage-s    wall times of the two curl uploads
//	curl-import-s                the glance-direct import of curl's stage
//	stage-s, import-s            the sync's stage (streamed, hashed,
//	                             verified: from its log) and the wait for
//	                             Glance's glance-direct import
//	ratio-vs-curl-file           sync-s / max(curl-file-s, sha512sum-s),
//	                             the goal ≤ 1.1
//	ratio-vs-curl-stage          sync-s / max(curl-stage-s, sha512sum-s)
//	stage-ratio                  stage-s / max(curl-stage-s, sha512sum-s)
//	ratio-vs-curl-stage+import   sync-s / (curl-stage-s + curl-import-s)
//	upload-ratio-vs-curl-file    sync-upload-s / max(curl-file-s,
//	                             sha512sum-s): the same Glance work as curl,
//	                             the goal ≤ 1.1
//	sync-cpu-s, sync-upload-cpu-s  user+system CPU time of the syncs
//	peak-RSS-MiB                 largest peak RSS of either sync, goal ≤ 64
func BenchmarkMirror2GiB(b *testing.B) {
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl not installed")
	}
	e := newEnv(b)
	w := newWorld(b)
	bin := imagetrustBinary(b)
	ctx := context.Background()

	dir := b.TempDir()
	file := filepath.Join(dir, "image.raw")
	sum := writeBenchImage(b, file, benchImageSize)
	ref := &imageRef{size: benchImageSize, sha512: sum}
	tag := "bench-" + uuid.NewString()[:8]

	// The headers for curl (-H @FILE keeps the token off the command line).
	hdr := filepath.Join(dir, "headers")
	tok := e.sc.ProviderClient.Token()
	if err := os.WriteFile(hdr, []byte("X-Auth-Token: "+tok+"\nContent-Type: application/octet-stream\n"), 0o600); err != nil {
		b.Fatal(err)
	}

	// scratch creates a hidden image for a curl baseline.
	scratch := func() string {
		id := uuid.NewString()
		if err := glance.Create(ctx, e.sc, glance.CreateOpts{ID: id, Name: "bench curl scratch",
			DiskFormat: "raw", ContainerFormat: "bare", Hidden: true}).Err; err != nil {
			b.Fatalf("scratch image: %v", err)
		}
		return id
	}
	curl := func(url string) (runStats, []byte) {
		return timedRun(b, exec.Command("curl", "-sS", "--fail-with-body", "-o", "/dev/null",
			"-H", "@"+hdr, "-T", file, url))
	}
	drop := func(id string) {
		if err := glance.Delete(ctx, e.sc, id).ExtractErr(); err != nil {
			b.Fatalf("deleting image %s: %v", id, err)
		}
	}

	var syncUpT, syncUpCPU time.Duration
	var syncT, syncCPU, curlFileT, curlStageT, curlImportT, shaT, stageT, importT time.Duration
	var peak int64
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		// sha512sum FILE
		st, out := timedRun(b, exec.Command("sha512sum", file))
		if !strings.HasPrefix(string(out), sum) {
			b.Fatalf("sha512sum: %s", out)
		}
		shaT += st.wall

		// curl -T FILE to the file of a scratch image: active when it returns
		id := scratch()
		st, out = curl(e.sc.ServiceURL("images", id, "file"))
		curlFileT += st.wall
		im, err := glance.Get(ctx, e.sc, id).Extract()
		if err != nil || im.Status != StatusActive || im.Size != benchImageSize || im.HashValue != sum {
			b.Fatalf("scratch image after curl to /file: %+v, %v (%s)", im, err, out)
		}
		drop(id)

		// curl -T FILE to the stage of a scratch image, then its import
		id = scratch()
		st, out = curl(e.sc.ServiceURL("images", id, "stage"))
		curlStageT += st.wall
		im, err = glance.Get(ctx, e.sc, id).Extract()
		if err != nil || im.Status != "uploading" || im.Size != benchImageSize {
			b.Fatalf("scratch image after curl to /stage: %+v, %v (%s)", im, err, out)
		}
		start := time.Now()
		if err := glance.ImportGlanceDirect(ctx, e.sc, id).ExtractErr(); err != nil {
			b.Fatalf("importing the scratch image: %v", err)
		}
		im = waitActive(b, ctx, e, id)
		curlImportT += time.Since(start)
		if im.Status != StatusActive || im.HashValue != sum {
			b.Fatalf("scratch image after import: %s %.16s", im.Status, im.HashValue)
		}
		drop(id)

		// imagetrust sync --once, a fresh bundle for the same file, with
		// each ingest
		for _, ingest := range []string{"import", "upload"} {
			src := filepath.Join(dir, fmt.Sprintf("src%d-%s", i, ingest))
			p := w.publish(src, spec{vo: "atlas", tag: tag, uri: file, external: ref})
			cfg := writeBenchConfig(b, w, filepath.Join(dir, fmt.Sprintf("cfg%d-%s", i, ingest)), src, ingest)
			cmd := exec.Command(bin, "sync", "--config", cfg, "--once", "--json-logs")
			cmd.Env = e.mirrorEnv()
			if ingest == "import" {
				b.StartTimer()
			}
			st, logs := timedRun(b, cmd)
			b.StopTimer()
			peak = max(peak, st.maxRSS)
			if ingest == "import" {
				syncT += st.wall
				syncCPU += st.cpu
				stageT += time.Duration(logSeconds(logs, "image staged and verified; importing") * float64(time.Second))
				importT += time.Duration(logSeconds(logs, "glance import ended") * float64(time.Second))
			} else {
				syncUpT += st.wall
				syncUpCPU += st.cpu
			}
			got := e.get(b, p.id)
			if got.Status != StatusActive || got.Props["os_hash_value"] != sum || got.Size != benchImageSize {
				b.Fatalf("after sync (%s): %s size %d hash %.16s\n%s", ingest, got.Status, got.Size, got.Props["os_hash_value"], logs)
			}
			drop(p.id)
		}
	}
	n := float64(b.N)
	avg := func(d time.Duration) float64 { return d.Seconds() / n }
	baseFile := max(avg(curlFileT), avg(shaT))
	baseStage := max(avg(curlStageT), avg(shaT))
	b.ReportMetric(avg(syncT), "sync-s")
	b.ReportMetric(avg(curlFileT), "curl-file-s")
	b.ReportMetric(avg(curlStageT), "curl-stage-s")
	b.ReportMetric(avg(shaT), "sha512sum-s")
	b.ReportMetric(avg(stageT), "stage-s")
	b.ReportMetric(avg(importT), "import-s")
	b.ReportMetric(avg(curlImportT), "curl-import-s")
	b.ReportMetric(avg(syncT)/baseFile, "ratio-vs-curl-file")
	b.ReportMetric(avg(syncT)/baseStage, "ratio-vs-curl-stage")
	b.ReportMetric(avg(stageT)/baseStage, "stage-ratio")
	b.ReportMetric(avg(syncT)/(avg(curlStageT)+avg(curlImportT)), "ratio-vs-curl-stage+import")
	b.ReportMetric(avg(syncUpT), "sync-upload-s")
	b.ReportMetric(avg(syncUpT)/baseFile, "upload-ratio-vs-curl-file")
	b.ReportMetric(avg(syncCPU), "sync-cpu-s")
	b.ReportMetric(avg(syncUpCPU), "sync-upload-cpu-s")
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}
