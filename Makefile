# imagetrust — see README.md. Every target works on a fresh Debian 12 machine
# as root: `make test` and `make demo` install what they need.

GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN       := bin/imagetrust
PKGS      := ./...
STATICCHECK_VERSION := v0.8.2
FUZZTIME  ?= 15s
export GOFLAGS := -mod=readonly

.PHONY: all build test test-unit lint bench fuzz demo deps openstack-deps clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/imagetrust

# The Debian packages (OpenStack on loopback, openssl, cloud-init, nginx) and
# the Go modules the tests need.
deps: openstack-deps
	$(GO) mod download

openstack-deps:
	tests/openstack/install.sh

# Everything, with the race detector, against a real Keystone, Glance and
# nova-api started once on 127.0.0.1 for the whole run; then the allocation
# guards (TestFastPassThroughAllocs) without it.
test: deps build lint
	tests/run-tests.sh

# Only what needs no OpenStack (skips the integration tests).
test-unit:
	IMAGETRUST_SKIP_OPENSTACK=1 $(GO) test -race -count=1 -short $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$($(GO) mod tidy -diff 2>&1) && exit 0; echo "$$out"; \
	if printf '%s\n' "$$out" | grep -q '^diff '; then echo "go.mod/go.sum are not tidy (the diff above): run go mod tidy"; \
	else echo "go mod tidy -diff could not check go.mod/go.sum (the error above; are the modules downloadable? GOPROXY=$$($(GO) env GOPROXY))"; fi; exit 1
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

bench: deps
	tests/run-tests.sh bench

# Short runs of every fuzz target.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s $$pkg; \
	  done; \
	done

# The story end to end on local defaults, narrated.
demo: deps build
	tests/demo/demo.sh

clean:
	rm -rf bin
