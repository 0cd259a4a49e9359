package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// descRecorder is a Registerer that keeps the descriptions of what is
// registered on it (a vector's too, before it has a series) and registers
// them on a real registry, which refuses a name registered twice.
type descRecorder struct {
	prometheus.Registerer
	descs []*prometheus.Desc
}

func (d *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		d.descs = append(d.descs, desc)
	}
	return d.Registerer.Register(c)
}

func (d *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

// A Desc shows its name and variable labels only in its String:
// Desc{fqName: "NAME", help: "...", unit: "...", constLabels: {...}, variableLabels: {a,b}}
var (
	descName   = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^{}]*)\}\}$`)
)

// TestDaemonMetricsDocumented checks docs/operator-guide.md against the
// metrics each daemon registers (daemonMetrics, as its command does):
// every family is named in the guide's metrics table (the "| service |
// metrics |" table) in its daemon's row or the "all three" one, with each
// of its labels in the {…} after its name
// (`imagetrust_crl_age_seconds{issuer,key}`), and every imagetrust_…_total,
// _seconds or other metric name the guide mentions anywhere is registered
// by some daemon (or is one of the catalogue's image properties, which
// share the prefix); so is every imagetrust_… name of the README, the user
// and publisher guides and the openssl recipe.
func TestDaemonMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/operator-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	i := strings.Index(guide, "| service | metrics |")
	if i < 0 {
		t.Fatal("docs/operator-guide.md has no \"| service | metrics |\" table")
	}
	table, _, _ := strings.Cut(guide[i:], "\n\n")

	// the names and labels the table gives: `name{a,b}` or `name`
	documented := map[string][]string{}
	for _, m := range regexp.MustCompile("`(imagetrust_[a-z0-9_]+)(?:\\{([a-z_,]*)\\})?`").FindAllStringSubmatch(table, -1) {
		if m[2] != "" {
			documented[m[1]] = append(documented[m[1]], strings.Split(m[2], ",")...)
		} else if _, ok := documented[m[1]]; !ok {
			documented[m[1]] = nil
		}
	}

	// each row by its first cell: "all three", "proxy", "sync", "crl"
	rows := map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) > 2 {
			rows[strings.TrimSpace(cells[1])] += line
		}
	}

	registered := map[string]bool{}
	for daemon, add := range daemonMetrics(t) {
		rec := &descRecorder{Registerer: prometheus.NewRegistry()}
		add(rec)
		if len(rec.descs) == 0 {
			t.Fatalf("%s: no metric recorded", daemon)
		}
		for _, d := range rec.descs {
			s := d.String()
			nm, lm := descName.FindStringSubmatch(s), descLabels.FindStringSubmatch(s)
			if nm == nil || lm == nil {
				t.Fatalf("cannot read the name and labels of %s", s)
			}
			name := nm[1]
			registered[name] = true
			if !strings.HasPrefix(name, "imagetrust_") {
				t.Errorf("%s: %s is not named imagetrust_…", daemon, name)
			}
			labels, ok := documented[name]
			if !ok {
				t.Errorf("%s registers %s, which docs/operator-guide.md's metrics table does not name", daemon, name)
				continue
			}
			if !strings.Contains(rows[daemon], "`"+name+"`") && !strings.Contains(rows[daemon], "`"+name+"{") &&
				!strings.Contains(rows["all three"], "`"+name+"`") && !strings.Contains(rows["all three"], "`"+name+"{") {
				t.Errorf("%s registers %s, which docs/operator-guide.md's metrics table gives in neither its %q row nor its \"all three\" row", daemon, name, daemon)
			}
			if lm[1] == "" {
				continue
			}
			for _, l := range strings.Split(lm[1], ",") {
				if !slices.Contains(labels, l) {
					t.Errorf("%s registers %s with label %q, which docs/operator-guide.md's metrics table does not give (as `%s{%s}`)", daemon, name, l, name, lm[1])
				}
			}
		}
	}
	property := catalogueProperties(t)
	for name := range documented {
		if !registered[name] && !property[name] {
			t.Errorf("docs/operator-guide.md's metrics table names %s, which no daemon registers", name)
		}
	}
	// anywhere in the guide: an imagetrust_ name with a metric's suffix or
	// in a PromQL expression must be a metric
	// (and in the other guides operators and publishers follow)
	for f, doc := range operatorDocs(t) {
		if !slices.Contains([]string{"README.md", "docs/user-guide.md", "docs/publisher-guide.md", "docs/recipes/openssl-publish.sh"}, f) {
			continue
		}
		for _, m := range regexp.MustCompile(`imagetrust_[a-z0-9_]+`).FindAllString(doc, -1) {
			if registered[m] || property[m] {
				continue
			}
			t.Errorf("%s mentions %s, which is neither a registered metric nor an image property", f, m)
		}
	}
}

// catalogueProperties are the imagetrust_… names docs/catalogue.md
// gives: Glance image properties, not metrics.
func catalogueProperties(t *testing.T) map[string]bool {
	b, err := os.ReadFile("../../docs/catalogue.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`imagetrust_[a-z0-9_]+`).FindAllString(string(b), -1) {
		out[m] = true
	}
	return out
}
