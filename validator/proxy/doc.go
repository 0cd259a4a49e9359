// Package proxy is the Nova-facing boot gate of imagetrust: an HTTP reverse
// proxy in front of the compute API that judges every request able to boot
// a Glance image and streams everything else to Nova untouched.
//
// # What is gated
//
// POST requests whose percent-decoded path is, on /v2.1 or /v2 (or no
// version segment), with or without a /{project_id} segment:
//
//	/servers, /os-volumes_boot                        server create
//	/servers/{id}/action, /os-volumes_boot/{id}/action  rebuild (imageRef), rescue (rescue_image_ref)
//
// Matching is more liberal than Nova's routes (case-insensitive, a ".json"
// suffix ignored), so anything Nova could route there is judged. A POST whose
// path has empty segments (//servers), dot segments, a trailing slash, a bad
// escape or control characters is refused with 400: Nova's routes would not
// match most of them, and the gate does not guess. Other methods and paths
// pass untouched (GET /, /v2 and /v2.1 get their hrefs rewritten, below),
// except that a request of any method whose query has a _method key
// (escaped or not, in any case) is refused with 400:
// Nova's router honours it as a method override (routes'
// use_method_override), so PUT /servers?_method=POST would run the server
// create with the PUT's body.
//
// Within a create: server.imageRef; every block_device_mapping_v2 entry with
// source_type "image" (its uuid) or with an image_id key; legacy
// block_device_mapping entries with an image_id. A volume or snapshot that
// may be a boot disk (any boot_index of 0 or more, as Nova and libvirt boot
// from the next device when the first is blank or fails; or no imageRef; or
// any legacy entry
// with volume_id/snapshot_id, each of them, as the legacy format has no boot
// index and Nova keeps both; and a volume_id or snapshot_id key in a
// block_device_mapping_v2 entry of any source type, which Nova's schema
// admits and its driver attaches instead of creating a volume) is judged by the image it was made from when Options.Volumes is set
// (Cinder's volume_image_metadata.image_id; a snapshot by its volume's),
// exactly like an image reference, except that the id must be a UUID (never
// a tag) and not a tag alias entry, and an id not in canonical form
// (AA5B…, which on a case-sensitive Glance database is a user's image
// apart from the catalogue's aa5b…) counts as the catalogue image only
// when Glance, asked for that id itself, answers with it; the request
// keeps its volume id. A
// volume made from no image, and every boot volume when Options.Volumes is
// nil, is governed by Options.VolumePolicy (config proxy.volume_policy):
// "refuse" (default) refuses it, "allow" lets it through unjudged. The
// command sets Volumes (Cinder, asked with the caller's token) for
// proxy.volume_policy = "check-image", with VolumeRefuse. Cinder's answers
// are not cached. Beware: Cinder lets project members set
// volume_image_metadata by default (policy
// volume_extension:volume_image_metadata:set), so a site that uses
// Options.Volumes must restrict that policy (and :remove) to admins
// (etc/cinder/policy.yaml); otherwise a user can label a volume of any
// content with a good image's id. Even then the answer is where the volume
// came from, not what was written into it since. Under "allow" without
// Volumes a volume made from a revoked image can boot.
//
// Refused: rescue without rescue_image_ref (Nova would boot the rescue VM
// from the server's image_base_image_ref or its own image, which may have
// been revoked since, or what a boot volume's metadata says), and every
// request whose target is not a path (origin-form "/…", or "*" for
// OPTIONS): Go reads "http:%2Fv2.1%2Fservers" as an opaque URL with an
// empty path, and Nova's server decoded what was forwarded into
// /v2.1/servers.
//
// Not gated: unshelve (boots the user's shelve snapshot), evacuate and
// migrate (admin), and actions that create images (createImage, shelve).
//
// # Image references
//
// Every UUID form Nova accepts (see CanonicalUUID) is canonicalised and the
// canonical id is forwarded. Any other reference is a tag, TAG or VO/TAG
// (each part [A-Za-z0-9][A-Za-z0-9._-]{0,63}), and is replaced by the id of
// the newest bootable catalogue image of the tag. A bare TAG that exists in
// more than one VO is refused (409) with the VO/TAG forms to use. A UUID of a
// tag alias entry (imagetrust_alias=VO/TAG, owned by the mirror project; see
// docs/design.md "Tag aliases") resolves like VO/TAG: that is how
// `openstack server create --image TAG` works, the client having resolved the
// name to the alias id through Glance. A 32-hex-digit tag reads as a UUID.
//
// # Strict bodies
//
// Gated requests must say Content-Type: application/json (or
// application/vnd.openstack.compute+json), carry no Content-Encoding, and a
// body of at most Options.MaxBody bytes (413 otherwise); chunked bodies are
// read up to the limit. The body must be UTF-8 JSON without duplicate keys
// at any depth; keys that differ from a gated key only in case (IMAGEREF) are
// refused where the gate reads them. \u0069mageRef is imageRef after
// decoding and is treated exactly as such. The body forwarded is the
// re-serialisation of the parsed and judged document, with its own
// Content-Length, never the original bytes: Nova executes what was judged.
//
// # Identity
//
// The proxy sits in front of Nova's keystonemiddleware, so it validates the
// token of every gated request itself (Options.Identity; the command layer
// asks Keystone, GET /v3/auth/tokens with X-Subject-Token, authenticated
// with that same token, or with the proxy's own service token under
// proxy.token_validation = "service"). The token is read as
// keystonemiddleware reads it (X-Auth-Token, else X-Storage-Token) and
// forwarded unchanged, so Nova sees the very token the gate validated.
// Fields the Connection field names are dropped before the gate reads any,
// as httputil.ReverseProxy drops them on the way to Nova: with "Connection:
// X-Auth-Token" the gate would otherwise validate a token Nova never sees
// (Nova then reading X-Storage-Token). A method that spells POST in another
// case is refused (400).
// Request fields whose names hold an underscore are dropped on every path
// before the gate reads any (nginx's default, underscores_in_headers off):
// Nova's WSGI server reads X_Auth_Token as X-Auth-Token,
// OpenStack_API_Version as OpenStack-API-Version, and Transfer_Encoding as
// Transfer-Encoding (framing the body differently from the gate).
// Every gated request (a create, and every server action: the gate reads an
// action's body to tell rebuild and rescue from the others) is
// authenticated before it waits for a slot and before its body is read, so
// that a client without a valid token never holds one (see Limits); an
// action such as reboot costs one validation per token, cached. Other
// requests (GET, PUT, DELETE...) are not validated by the gate (Nova does
// that).
//
// No token, or one Keystone does not accept, is answered 401 exactly as
// keystonemiddleware answers it ({"error": {"code": 401, "title":
// "Unauthorized", "message": "The request you have made requires
// authentication."}} with WWW-Authenticate: Keystone uri="…" when
// Options.AuthURI is set) and Nova is not called. When Keystone cannot be
// asked the answer is 503 serviceUnavailable.
//
// Validations are cached by the SHA-256 of the token (the token itself is
// never kept nor logged) until the token expires or Options.TokenCacheTTL
// (5 minutes by default, as keystonemiddleware's token_cache_time) passes,
// whichever comes first; the cache is bounded (Options.CacheSize) and
// concurrent validations of one token share one Keystone call. Refusals are
// not cached. A token revoked within the TTL still counts as its user for
// the gate, but Nova's keystonemiddleware refuses it.
//
// The caller's project decides Options.UnmanagedProjects, whatever the
// path's /{project_id} segment says (Nova answers 400 when the two differ).
// The audit line carries user_id, user_name, project_id and project_name,
// and the contextualisation hook receives the caller (template variables
// project_id and user_id) and the server name (server.name of a create;
// rebuild.name of a rebuild that renames, else empty).
//
// Without an Identity (tests, embedding) nothing is validated, the caller is
// unknown and UnmanagedProjects is matched against the path's /{project_id}
// segment.
//
// # Lookups and freshness
//
// Glance is asked through the Lookup with the proxy's own credentials;
// answers (absent images included) are cached for Options.CacheTTL (30 s by
// default) from the moment the call that fetched them began, in a bounded
// LRU, and concurrent misses share one call. A request takes a shared
// call's answer only when the call began within the TTL before the request
// came (with the cache disabled, not before it came); otherwise it asks
// again: a Glance call may take longer than the TTL (up to
// Options.LookupTimeout). A revocation or a change of a validity flag
// therefore takes effect within the TTL (TestLookupJoinStale).
//
// # Answers
//
// Refusals are Nova-shaped faults ({"forbidden": {"code": 403, "message":
// …}}, badRequest, itemNotFound, conflictingRequest, overLimit) with
// X-Openstack-Request-Id and X-Compute-Request-Id set to a fresh req-<uuid>;
// the message names the image or tag, the failed check and what to do. A
// judged request is forwarded with that id as X-Openstack-Request-Id when the
// client sent none, so Nova logs it as global_request_id. Each image decision
// is one audit line ("boot decision") on the injected logger.
//
// Version documents (GET /, /v2, /v2.1, and the same once runs of slashes
// are collapsed, as nova-api serves "//v2.1" and "/%2Fv2.1"), every 300
// answer to a GET (nova-api's version choices, for any path outside its
// API: "/./v2.1", "/foo") and Location headers have hrefs that point into
// the upstream rewritten to the public URL, so keystoneauth clients, which
// take the discovered "self" href as the endpoint, stay on the gate. A
// client's X-Forwarded-Prefix is dropped on every path (with Forwarded and
// the client's X-Forwarded-For, -Host and -Proto, which ReverseProxy
// replaces): Nova's http_proxy_to_wsgi would put it before every link.
//
// # Overload
//
// Gated requests (every POST the gate reads the body of: create, rebuild,
// rescue and the other server actions) run at most Options.MaxGated at
// once (limit.go; default DefaultMaxGatedFor, from MaxBody and whether
// UserData is set, each costing up to GatedRequestCost). The slot is taken
// after the token is validated (Identity: no token, or a refused one, is
// answered 401 without waiting for a slot) and before the body is read,
// and given back by a defer once the answer is written (refusal, client gone mid-body,
// upstream error, panic alike). A request that finds none waits, up to
// Options.GatedQueueTimeout, at most MaxGated of them in all (holding
// their heads only); then it is answered 503 serviceUnavailable in Nova's
// fault shape with Retry-After and Nova is not called. The slots are
// shared between projects (the token's; without Identity the path's
// /{project_id}, if any), work-conserving and max-min fair (gatedLimit):
// a request takes a free slot at once whatever its project holds (a
// project alone uses them all, borrowing beyond its share,
// Options.MaxGatedPerProject, half by default, what nobody else asks for),
// and a slot given back goes to the waiting request whose project holds
// the fewest slots, ties in arrival order: a project that comes while
// another holds every slot gets the next slot that comes free, and a
// project at or over its share gets one only when every waiting project
// holds as many. When MaxGated wait, a newcomer takes the place of the
// newest waiting request of the project with the most waiting places if
// that has two more than the newcomer's (the request taken off is refused
// 503, project-limit), so that a third, fourth... project still waits; a
// request that waits its whole timeout is refused project-limit while its
// project holds its share or more, else queue-timeout. A slot borrowed
// beyond a project's share is cheap to take back: when a request of a
// project that holds and waits for no more than its share begins to wait,
// the newest slot whose body has not been read yet, of the project that
// holds the most beyond its share, is taken back (its request answered
// 503 project-limit with Connection: close, Nova not called, safe to send
// again) and goes to the newcomer (gatedLimit.reclaimFor); a request whose
// body has arrived is never taken back. So one project that took every
// slot while alone, with clients that stall mid-body, keeps its share of
// them and no more once another project asks: the worst case for a
// newcomer is every project that holds slots holding its share with
// stalled bodies (two projects at the default share of half), each slot
// coming back within the body deadline (gatedBodyTimeout: 26 s at the
// default MaxBody) plus the lookups and Nova's answer, as with a hard
// per-project cap; a newcomer that waits in between is refused
// queue-timeout, its retries waiting again. The price: a project's
// legitimate request still sending a large body in a borrowed slot may be
// refused so (503, to retry) when another project comes. A hard cap would
// leave the slots idle whenever one project is alone: the gate uses them.
// Tokens not in the cache are validated at most maxValidationsFor(MaxGated)
// at once (MaxGated, between 4 and 64), one Keystone call per token; a request
// that finds them all under way waits up to GatedQueueTimeout, then is
// answered 503 (validation-busy): a flood of made-up tokens costs that
// many Keystone calls at a time, not one per connection; a cached token
// never waits for it. The places are a gatedLimit keyed by client (IPv4
// address, IPv6 /64: clientKey) instead of project, so one address's
// flood gives way to another client's validation: the next free place
// goes to the client holding the fewest, and its waiting places to a
// client that has fewer. Clients a token was validated for within a day
// (cachedIdentity.known) validate in places of their own, a quarter as
// many again, each at most a quarter of them (the rest in the shared
// places: cachedIdentity.enter): a flood of made-up tokens from many
// addresses, which makes no client known, fills the other places only,
// and delays only the first token of a client new to the gate. The first refusal after a quiet interval is
// logged in full, the others as one summary line per interval (overloadLog).
// A request refused before its body is read (401, or 503 for want of a
// slot or a validation place) is answered with Connection: close and its
// connection's reads end there (closeUnreadBody), so a client that stalls
// mid-body does not keep its connection either.
// Pass-through requests never touch the limit. ServerOptions.MaxConns
// bounds the client connections of the gate's listener, plain or TLS: the
// fast server counts one at its accept (not by wrapping it, which would
// cost it direct I/O) until it closes, there or, once handed over, through
// handoffConn.Close; net/http's server alone gets a counting listener. At
// the bound, a new connection takes the place of the one idle the longest
// (a keep-alive connection waiting for its next request, as the fast
// server and net/http's ConnState mark them: an atomic store per request,
// the connections searched only at the bound), which is closed, as nginx
// does when its worker_connections run out; when none is idle the new one
// is accepted and closed at once.
//
// # Performance
//
// Requests that are not POSTs (and not version documents) skip path
// classification and body inspection and are not logged. Bodyless GET, HEAD
// and OPTIONS requests to a plain http:// upstream, when Options.Transport
// is nil, take the fast path of forward.go: the request head is written by
// hand to a pooled keep-alive connection (up to 512 idle, closed after 90 s
// idle) and the answer is read back on the handler's own goroutine, where
// http.Transport would hand each request and response over channels to a
// read and a write goroutine per connection. What Nova receives and what the
// client gets back are those of httputil.ReverseProxy (hop-by-hop fields
// removed per RFC 9110 section 7.6.1, X-Forwarded-*, 1xx, trailers,
// streamed bodies flushed as they come, Location rewritten; a pooled
// connection the upstream closed while idle is replaced and the request
// sent again; a client that goes away drops the upstream connection);
// TestForwarderMatchesReverseProxy compares the two on the same raw
// exchanges. Everything else goes through httputil.ReverseProxy with
// pooled 32 KiB copy buffers and a Transport that keeps 512 idle
// connections, uses 32 KiB buffers, never compresses and speaks HTTP/1.1.
//
// The gate's listener, plain or TLS, is served by the fast server
// (fastserver.go) unless ServerOptions.NetHTTPOnly is set (the command:
// proxy.fast_passthrough = false): a hand-written HTTP/1.1 server for
// pass-through connections (over TLS, on its own directIO connections, it
// does the handshake as net/http does, and a connection it hands over keeps
// its TLS state for net/http's requests: withHandoffTLS). Per connection it parses
// each request head strictly (fasthead.go: GET, HEAD or OPTIONS, origin-form
// target, HTTP/1.1, CRLF, ASCII, one Host, no obs-fold, no body nor
// anything announcing one, no Expect or Upgrade, at most 8 KiB) and, when
// the request is one ServeHTTP would pass through and the forwarder takes,
// forwards it itself; a plain answer (fastrelay.go: one Content-Length, a
// Content-Type, no hop-by-hop field nor Location) is relayed without
// http.ReadResponse and header maps. At the first request that is anything
// else (a POST, any gated route, a version document, a body, an odd or
// malformed head) the connection, with the bytes read and not consumed, is
// handed over to net/http's server, which serves it from then on: gated
// requests, and every refusal of bad input, go through net/http and the
// gate exactly as without the fast server, whatever came before them on
// the connection. What clients get is byte for byte what net/http would
// send (TestFastServerMatchesNetHTTP, TestFastServerHostile: smuggling
// attempts, oversize and malformed heads, pipelining, a boot after
// pass-through requests on one connection), a head the parser accepts is
// one net/http reads the same (FuzzFastHead), an answer the relay takes is
// one http.ReadResponse reads the same (FuzzPlainAnswer). Timeouts are
// net/http's (ReadHeaderTimeout, IdleTimeout, WriteTimeout, each deadline
// moved at most once a second, so up to a second shorter); shutdown closes
// idle connections at once and lets requests in flight finish within
// ShutdownTimeout. Differences: a head larger than 8 KiB is handed over
// after up to ReadHeaderTimeout and net/http then gives it its own
// ReadHeaderTimeout (so up to twice that in all); a client that goes away
// while the upstream has not answered is noticed after 50 ms (net/http
// starts a background read for every request at once; the fast server only
// for requests that wait that long).
//
// BenchmarkPassThrough (bench_test.go) measures pass-through throughput,
// GET /v2.1/flavors from 32 concurrent Go clients to a stand-in upstream
// that answers at once, for: the upstream directly; the gate in the
// benchmark's own process (net/http's server); the gate in a process of
// its own (the test binary re-executed, serving through Serve as `imagetrust
// proxy` does, with metrics), once with the fast server (gate-proc) and once
// with NetHTTPOnly (gate-proc-nethttp); and Debian's nginx 1.22 with
// worker_processes 1 and auto. BenchmarkPassThroughWrk (benchwrk_test.go)
// loads the same targets with wrk (one thread, 32 connections) instead.
// The gate in the benchmark's process shares its Go runtime with the
// clients and the upstream, which nginx does not, so the comparison
// reported is the separate-process one (gate-proc/nginx). Targets take
// turns, 5 rounds each, median round, so the gate with and without the fast
// server are measured alternately in the same run.
//
// Measured 2026-11-25 on the project's machine (2 cores shared with other
// jobs, load 0.1-4 during the runs: absolute rates vary by 2x between runs,
// only ratios within one run mean something). Before the fast server
// (net/http's server, the forwarder of forward.go), gate-proc/nginx
// (1 worker) was 0.66-0.75 with wrk and 0.81-0.97 with Go clients. With it,
// each line one run, gate-proc-nethttp being the same code served by
// net/http alone in the same rounds:
//
//	load generator       gate-proc/nginx  /nginx-auto  gate-proc-nethttp/nginx  /nginx-auto
//	wrk (5 x 3 s)        0.84             0.79         0.68                     0.65
//	wrk (5 x 3 s)        0.87             0.82         0.67                     0.63
//	wrk (5 x 3 s)        0.83             0.85         0.71                     0.73
//	wrk (5 x 3 s)        0.87             0.83         0.66                     0.63
//	wrk (5 x 3 s)        0.91             0.84         0.61                     0.57
//	Go clients (50000x)  0.92             1.17         0.85                     1.09
//	Go clients (50000x)  0.94             1.16         0.88                     1.10
//	Go clients (50000x)  0.77             0.88         0.70                     0.80
//
// (and 0.79-0.96 in four earlier wrk runs of the fast server before the
// plain-answer relay, 0.69-0.75 for net/http in the same runs). With Go
// clients nginx with worker_processes auto is slower than with one worker:
// its two workers compete with the clients and the upstream for the two
// cores.
//
// BenchmarkPassThroughWrk also loads GET /v2.1/servers/detail, a 15 KiB
// answer shaped as nova-api's for ten servers (what `openstack server list`
// reads), in the same rounds (metrics detail-*). Two runs of 2026-11-25
// (load about 1.5): detail-gate-proc/nginx 0.82 and 0.89, /nginx-auto 0.72
// and 0.80; net/http alone 0.69 and 0.64. The second of those runs wrote the
// answer with a 64 KiB client buffer instead of 4 KiB (one write of head and
// body instead of two): within the noise of two runs, so not kept.
//
// So the fast server takes the gate from 0.6-0.7 to 0.83-0.91 of nginx's
// pass-through rate with wrk (0.77-0.94 with Go clients, 0.88-1.17 of
// nginx-auto's), but not to the goal of nginx's rate.
//
// Later the same day: the stand-in upstream (fastNova) answered the 15 KiB
// GET with Transfer-Encoding: chunked (Go's server does for a body that
// large without a Content-Length), which nova-api never does: checked
// against the stack's nova-api, which sends a Content-Length and the fields
// fastNova now sends. A chunked answer is not plain, so the detail-* rounds
// had measured the generic relay. And a plain answer larger than the 4 KiB
// client buffer that is all in the upstream read buffer (16 KiB) now leaves
// in one writev of head and body instead of two writes (relayPlain;
// strace -c: 1 writev, 1 write, 2.7 reads per request). Two wrk runs after
// both: gate-proc/nginx 0.88 and 0.91 on the small answer, 0.90 and 1.04
// on the detail one; /nginx-auto 0.82 and 0.80, 0.84 and 0.94.
//
// Where the rest went, measured under wrk on 2026-11-25: CPU time per
// request, from /proc/PID/stat around a 3 s run, was 23-31 µs for the gate
// process against 20-22 µs for nginx's worker (the stand-in upstream
// spends about the same behind either). strace -c counted about the same
// system calls per request for both (gate: 2 writes, 2.7 reads of which
// 0.7 find no data, 0.05 epoll_pwait; nginx: 2 writev, 2 recvfrom, 1
// getsockopt). perf put the difference in the Go runtime's thread handling
// on two cores shared with the load generator and the upstream: a
// loopback write takes microseconds (the kernel delivers the segment to
// the receiver within the call), and the runtime, told of a system call,
// hands the goroutine's processor to another thread when one outlasts
// sysmon's tick while goroutines wait (futex wake-ups, context switches:
// 10-15% of the gate's CPU; GOMAXPROCS=1 made it worse, sysmon then
// retaking the only processor). An event loop on one locked OS thread
// (epoll with raw reads and writes, a prototype, not kept) measured
// 1.00-1.05x nginx (1 worker): a second server in the gate for a tie.
//
// What closed the gap on 2026-11-26, in the goroutine fast server:
//
//   - Direct I/O (directio_linux.go): the fast server's client connections
//     and the forwarder's upstream connections read, write and writev with
//     raw system calls through syscall.RawConn: the same poller, deadlines
//     and errors (TestDirectConnMatchesTCPConn), but no processor hand-off;
//     no allocation per call. futex calls under load: a few dozen a second.
//   - Read deadlines moved at most once a second (lazyDeadline) rather than
//     two or three times a request; the client watch interrupts the
//     upstream exchange itself rather than a context.AfterFunc per request;
//     one clock read when a request arrives and one when it is answered
//     (seven before).
//   - Heads parsed a line at a time with a byte-class table
//     (parsePlainAnswer on nova-api's answer head: 1.84 -> 0.8 µs).
//   - No server-wide lock per request (the idle state and closing are
//     atomics), and no URL parse for a plain request target (fastURL).
//   - plainLines eight bytes at a time where none is a control byte.
//
// Allocations per pass-through request in the gate: 13 -> 3. CPU per
// request under wrk, four alternating 3 s runs after all of it: 20.8-24.4
// µs for the gate, 18.6-21.4 µs for nginx with one worker, 20.3-22.2 µs for
// nginx's two workers together with worker_processes auto. strace -c: 2
// writes, 2.6 reads of which 0.6 find no data (the goroutine model reads
// before it waits, where nginx waits for epoll first), a few dozen futex
// calls a second. BenchmarkPassThroughWrk after each step, each line one
// run (gate-proc-nodirect: the same gate with Go's own socket I/O, in the
// same rounds):
//
//	after                      rounds    small: /nginx  /nginx-auto  detail: /nginx  /nginx-auto  nodirect/nginx
//	direct I/O                 5 x 3 s   0.93           0.89         1.11            0.99         0.86
//	+ deadlines, watch         5 x 3 s   1.02           0.90         1.00            1.01         0.91
//	+ no allocation in I/O     5 x 3 s   0.93           0.92         1.13            0.96         0.90
//	                           11 x 2 s  1.04           0.96         1.02            0.99         0.94
//	+ line-at-a-time heads     11 x 2 s  1.03           0.96         1.13            1.14         0.90
//	+ one clock read           11 x 2 s  0.96           1.00         1.06            0.97         0.88
//	+ no lock, no URL parse    11 x 2 s  1.01           1.03         1.13            1.00         0.94
//	+ plainLines by words      11 x 2 s  1.06           1.01         1.16            0.99         0.99
//	                           11 x 2 s  0.96           0.88         1.03            0.97         0.88
//	                           11 x 2 s  1.01           0.97         1.02            0.97         0.95
//
// With Go clients (BenchmarkPassThrough, 50000x) after all of it:
// gate-proc/nginx 0.92, /nginx-auto 0.96. BenchmarkLatency: added p99 117
// µs for a pass-through, 585 µs for a gated boot. The 60 s load run: 17936
// requests, 0 errors, goroutines 11 -> 11, heap 3.0 -> 3.1 MiB.
//
// So, over the three runs with all of it (median ratio, and the range):
// against nginx with one worker the gate's pass-through rate is at least
// nginx's, 1.01 (0.96-1.06) on the small answer and 1.03 (1.02-1.16) on
// the 15 KiB one; against nginx with a worker per core (Debian's default,
// worker_processes auto) it is 0.97 (0.88-1.01) and 0.97 (0.97-0.99), a
// few per cent short, with single runs varying by about 10% (the
// machine's two cores are shared with other jobs). nginx still spends
// less CPU per request than the gate (about 15% less with one worker);
// what is left of that is the goroutine model itself (a read before each
// wait, goroutines parked and woken: a Gosched before those reads, tried,
// changed nothing), which only an event loop of its own would remove.
// GOGC=400 made no measurable difference before the fast server.
//
// Later on 2026-11-26: the answer head's fields are slices of a copy
// reused from answer to answer (parsePlainAnswer), the path is split into
// a fixed array (splitPath), the client watch's timer is no longer reset
// and stopped for every request, and forward reads no clock of its own.
// Allocations per pass-through request in the whole process: 3 -> 1
// (TestFastPassThroughAllocs keeps it there). A CPU profile of the gate
// under wrk now puts 85% of its time in the kernel (writes alone 58%: a
// loopback write delivers the segment and wakes the receiver within the
// call) and 15% in Go code and the runtime, of which parsePlainAnswer is
// the largest part (4%). Four runs of 11 x 2 s with wrk:
//
//	small: /nginx  /nginx-auto  detail: /nginx  /nginx-auto  nodirect/nginx
//	1.02           0.99         1.10            0.98         0.95
//	1.03           1.01         1.15            1.08         0.94
//	0.96           0.91         1.12            1.08         0.90
//	0.95           0.89         1.07            1.02         0.90
//
// So on the 15 KiB answer the gate's rate is above nginx's in either
// configuration (medians of the four runs 1.11 and 1.05); on the small
// answer it is about nginx's with one worker (0.99) and a few per cent
// short of nginx with worker_processes auto (0.95), run medians varying by
// 10% on this shared machine (a Firecracker VM with 2 cores).
//
// The benchmark then ran its targets in reverse order every other round
// and reported paired ratios too (paired-*: the median of each round's own
// ratio, the two targets having run within seconds of each other). Two
// more runs of 11 x 2 s, paired:
//
//	small: /nginx  /nginx-auto  detail: /nginx  /nginx-auto
//	1.01           0.91         1.20            1.08
//	1.00           0.95         1.09            1.08
//
// Single rounds of small/nginx-auto ranged from 0.78 to 1.13. What is left
// against nginx's two workers on small answers is the Go scheduler's work
// across two processors on two shared cores (waking and parking threads,
// futex calls, 5-6% of the gate's CPU in the profile), which nginx's two
// single-threaded workers, each on its own epoll, do not have.
//
// Over TLS (BenchmarkPassThroughWrkTLS: the same wrk load over kept TLS
// 1.3 connections, AES-128-GCM for both, nginx with the gate's ECDSA
// certificate), one run of 7 x 2 s on 2026-11-26:
//
//	                               small: /nginx  /nginx-auto  detail: /nginx  /nginx-auto
//	gate-proc-tls (paired)         1.04           1.00         1.00            1.01
//	gate-proc-tls (medians)        1.08           1.11         1.00            0.97
//	gate-proc-tls-nodirect         1.00                        0.97
//	gate-proc-tls-nethttp          0.73                        0.80
//
// Then a plain answer larger than the client buffer left over TLS in one
// write (one record) of head and body copied together, rather than two
// (relayPlain). Runs of 5 and 7 x 2 s after it, each line one run:
//
//	                               small: /nginx  /nginx-auto  detail: /nginx  /nginx-auto
//	gate-proc-tls (paired)         1.06           1.02         1.13            1.19
//	                               1.04           1.03         1.13            1.14
//	gate-proc-tls (medians)        1.14           1.01         1.13            1.17
//	                               1.06           1.06         1.14            1.05
//	gate-proc-tls-nodirect         1.05                        1.05
//	                               0.95                        1.09
//	gate-proc-tls-nethttp          0.75                        0.68
//	                               0.71                        0.79
//
// So over TLS the fast server is 1.5x net/http's server on the small
// answer (1.4-1.7x on the 15 KiB one) and at or above nginx's rate in either
// configuration, the crypto (the same cipher on both) taking a larger
// share of each request.
//
// The nginx the benchmarks had compared with was a bare proxy: it sent the
// upstream none of the X-Forwarded-For, X-Forwarded-Host and
// X-Forwarded-Proto fields the gate sends (so that Nova, with
// enable_proxy_headers_parsing, names the public address in its links:
// etc/nova/nova.conf.snippet), so the stand-in upstream behind it parsed
// three fields fewer per request. The benchmarks now also run nginx sending
// the same three fields (nginx-xf, nginx-auto-xf; nginxSetup.forwarded), the
// same request then reaching the upstream from either, and report with the
// paired ratios the sign test's confidence interval (at least 95%) of the
// median round ratio (-lo, -hi). A 3 s run of wrk per target measured from
// /proc (user and system CPU per request; context switches of all threads):
// the gate 4.2-5.5 µs user and 14.0-15.3 µs system, nginx-auto's two workers
// together 3.9-4.5 µs and 14.2-15.6 µs, nginx with one worker 3.4-4.4 µs and
// 13.4-14.9 µs; 0.26-0.29 context switches a request for the gate and
// 0.28-0.29 for nginx-auto. So the kernel's share (socket reads and writes,
// wake-ups) is the same for both, and the gate spends about 0.5-1 µs more in
// user space a request, the goroutine model's scheduling and reads that
// find no data (nginx waits in epoll first). The answer-head parser then
// went from three passes over the head to one, its fields from slices to
// offsets (parsePlainAnswer: 18% fewer instructions under callgrind, 22-34%
// less time in a micro-benchmark, on a nova-api-shaped head). One run of
// 15 x 2 s after it (GOMAXPROCS 3 and 4 for the gate, tried beside it, did
// no better):
//
//	paired (interval)                 small                  detail
//	gate-proc/nginx                   1.02 [0.97, 1.11]      1.09 [1.03, 1.15]
//	gate-proc/nginx-auto              0.97 [0.87, 1.01]      1.02 [0.94, 1.19]
//	gate-proc/nginx-xf                1.10 [0.96, 1.12]      1.18 [1.11, 1.31]
//	gate-proc/nginx-auto-xf           0.96 [0.91, 1.05]      1.07 [1.00, 1.16]
//
// and over TLS, one run of 9 x 2 s after it:
//
//	paired (interval)                 small                  detail
//	gate-proc-tls/nginx-tls           1.08 [0.93, 1.15]      1.17 [1.11, 1.30]
//	gate-proc-tls/nginx-auto-tls      1.08 [0.96, 1.14]      1.12 [1.05, 1.30]
//	gate-proc-tls/nginx-xf-tls        1.13 [1.01, 1.17]      1.18 [1.09, 1.32]
//	gate-proc-tls/nginx-auto-xf-tls   1.05 [0.99, 1.15]      1.13 [0.98, 1.33]
//
// So on the 15 KiB answer the gate's rate is at
// least that of nginx doing its work with either worker setting, the
// interval's lower bound at 1.00 or above; over TLS it is above nginx's in
// every configuration; on the 100-byte answer over plain HTTP it is at
// nginx's with one worker and a few per cent under nginx's two workers
// (0.96-0.97), whose interval holds 1 only at its top: not shown to be at
// least nginx's there.
//
// Whether a server of another model would close that: strace -c over a 3 s
// wrk run counts, per request, 2 writev, 2 recvfrom, 1 getsockopt and 0.14
// epoll_wait for nginx-auto-xf's workers, and 2 writes, 2.7 reads (0.72 of
// them finding no data: Go's poller must try a read before it waits, as
// it forgets readiness in prepareRead) and 0.05 epoll_pwait for the gate.
// An event-loop prototype (scratch code, not kept: two epoll loops on
// locked threads, SO_REUSEPORT listeners, a client and an upstream socket
// each, raw reads and writes, the gate's own parsers, but none of its
// deadlines, metrics, watch or checks), in a process of its own, spent
// 2.0-2.7 µs user a request (the gate 4.2-6.0) but 15.5-18.2 µs system (the
// gate 14.0-17.2): no read found no data, but Go's handling of its blocking
// epoll_wait cost 0.7 nanosleep and 0.19 futex calls a request (sysmon
// taking the processor back); with a non-blocking epoll_wait first, no
// better. Its rate, eight alternating rounds of 2 s each way: 1.02 then 1.00
// of the gate's (medians), 0.98 of nginx-auto-xf's. So a second,
// event-driven server in the gate would buy about nothing on this machine.
//
// Rechecked on 2026-11-26 (11 x 2 s, small answer): gate-proc/nginx-auto
// 0.96 paired [0.90, 1.00], /nginx-auto-xf 0.98 [0.88, 1.01]; the gate with
// GOMAXPROCS=1 in the same rounds ran at 0.93 of the default gate. Per
// request, summed over the machine: wrk about 10 µs, the stand-in upstream
// 22-29 µs, the gate 18-24 µs, nginx-auto 19-23 µs, with about 12% of the
// two cores idle; the upstream receives the same request bytes from the
// gate as from nginx-auto-xf. Nothing new to take.
//
// Four more hypotheses, measured on 2026-11-27 (load 2.4-8.6 from other
// jobs during the runs), each with the gate against nginx-auto-xf, the
// same request reaching the upstream from both. Where a variant of the
// gate was tried, it ran as a gate process of its own beside the unchanged
// one and nginx-auto-xf, in front of the stand-in upstream in a process of
// its own, in alternating rounds of 2 s with wrk, CPU per request from
// /proc; "paired" is the median round ratio with the sign test's interval.
//
//   - The upstream does not work harder behind the gate.
//     BenchmarkPassThroughWrk now logs the benchmark process's CPU per
//     request (getrusage around each wrk run: the stand-in upstream's work)
//     and the connections it accepted, per target. Three runs of 11 x 2 s,
//     small answer: 17.4, 17.1 and 17.2 µs behind gate-proc, 19.1, 17.6 and
//     17.6 behind nginx-auto-xf (17.2, 17.1 and 16.7 behind nginx-auto); 15
//     KiB answer: 22.9, 23.0 and 22.3 against 24.6, 23.4 and 23.3. With the
//     upstream in a process of its own (12 rounds): 18.0 µs and 0.32 context
//     switches a request behind the gate, 18.5 µs and 0.40 behind
//     nginx-auto-xf (paired 1.02 [0.97, 1.13]), while the gate itself spent
//     16.6 µs (3.8 user, 12.8 system) against nginx-auto-xf's 15.9 (3.2,
//     12.7), nginx's being 0.92 [0.90, 1.02] of the gate's. So the machine
//     spends about the same per request either way: the gate's extra 0.5-0.7
//     µs of user time (three such measurements) is about what the upstream
//     saves behind it. (getrusage gives the upstream 17-19 µs a request on
//     the small answer, below the 22-29 µs of the recheck above, whose way
//     of summing is not recorded.)
//   - Upstream connections: the gate opens 32 (one per wrk connection) in
//     the warm-up and uses all 32 to the end; nginx-auto's two workers each
//     keep their own (LIFO) cache and used 64-132 a round, opening 44-70 a
//     round, its upstream keepalive_requests (1000) closing each after 1000
//     requests. The gate's idle pool is LIFO too. FIFO: paired rate 1.00
//     [0.89, 1.13] and 0.96 [0.86, 1.04] of LIFO's, CPU a request 0.97
//     [0.96, 1.03] and 1.01 [0.96, 1.06]: all 32 connections are in use, so
//     the order changes nothing. At most 16 idle: 0.55 [0.49, 0.61], 2.4x
//     the CPU a request (a dial and a close for many requests). A client
//     connection keeping its upstream connection from request to request (no
//     pool operations; it would tie an upstream connection to every idle
//     client): 0.92 [0.82, 1.15], 0.99 [0.88, 1.08] and 0.97 [0.90, 1.08],
//     CPU a request 0.98 [0.88, 1.07], 0.98 [0.96, 1.01] and 1.02 [0.97,
//     1.05]. None kept.
//   - Socket options: strace shows nginx 1.22 setting TCP_NODELAY on its
//     upstream sockets only (32 for 32 connects, none for wrk's 32
//     connections), no buffer sizes nor TCP_QUICKACK, and one
//     getsockopt(SO_ERROR) per request; the gate (Go's defaults) sets
//     TCP_NODELAY and SO_KEEPALIVE with its intervals on both sides, once a
//     connection, nothing per request. ss -tni during a run: the same for
//     both on either side (bbr, mss 65483, cwnd 18, ato 40 ms, rcv_space
//     64-75 KiB), and segs_in within a few of data_segs_in, so hardly a
//     segment is a bare ACK: ACKs ride on data, and delayed ACKs do not come
//     into it. The gate with Nagle left on for its client sockets, as nginx:
//     paired rate 0.94 [0.82, 1.19], CPU a request 0.99 [0.93, 1.08]; each
//     answer leaves in one write, so Nagle never holds one back. Not kept.
//   - perf (cpu-clock, 4 s under wrk): the gate 77% kernel and 21% Go code
//     (the proxy's 7.9%, the runtime's 6.3%, poll and syscall wrappers 3.1%,
//     clock reads 1.3%, bufio 1.1%), nginx-auto-xf's workers 80% kernel, 16%
//     nginx and 4% libc, the kernel functions the same in about the same
//     shares (finish_task_switch 8.2% and 9.9%: a loopback write wakes its
//     receiver, which then runs); runtime.schedule 12% inclusive
//     (epoll_pwait 5.3%, futex 2.4%) against nginx's epoll_wait 9.7%. Not
//     said above: the gate reads the clock three times a request, not two
//     (upstreamPool.put stamps the connection's idle time), about 0.3% of
//     its CPU, too little to measure; not changed.
//
// So nothing was kept: the upstream, the connections and the sockets are
// not where the gate loses against nginx's two workers, and what is left
// is the gate's own 0.5-0.7 µs of user time a request (the goroutine
// model's scheduling, as above), which the upstream's smaller share about
// makes up. BenchmarkPassThroughWrk, the three runs of 11 x 2 s above
// (load 2.4-3.0 at the start of each, 5.8-8.6 at its end; single rounds of
// small/nginx-auto-xf from 0.64 to 1.72), each line one run:
//
//	paired (interval)                 small                  detail
//	gate-proc/nginx-auto              1.02 [0.89, 1.12]      1.19 [1.01, 1.78]
//	                                  1.01 [0.80, 1.20]      1.08 [0.94, 1.48]
//	                                  0.94 [0.71, 1.44]      0.97 [0.84, 1.14]
//	gate-proc/nginx-auto-xf           1.04 [0.82, 1.57]      0.88 [0.84, 1.40]
//	                                  1.06 [0.68, 1.33]      1.10 [0.71, 1.55]
//	                                  1.02 [0.79, 1.32]      1.01 [0.83, 1.11]
//
// On a machine this loaded the intervals are too wide to say more than
// that the gate's rate is about nginx-auto's; the CPU a request, steadier,
// says the same. Once the machine was quiet again (load 1.4 at the start,
// no other jobs), one run of 11 x 2 s at the session's final code:
//
//	paired (interval)                 small                  detail
//	gate-proc/nginx                   1.01 [0.97, 1.09]      1.11 [1.07, 1.15]
//	gate-proc/nginx-auto              0.95 [0.94, 1.03]      1.01 [0.97, 1.11]
//	gate-proc/nginx-xf                1.03 [0.98, 1.09]      1.17 [1.11, 1.21]
//	gate-proc/nginx-auto-xf           0.97 [0.93, 1.03]      1.08 [0.95, 1.13]
//
// the same picture as on 2026-11-26: on the 100-byte answer over plain
// HTTP a few per cent under nginx's two workers, not shown to be at least
// their rate.
//
// Rechecked at the start of 2026-11-27's session (load 0.1 before it, no
// other jobs; 11 x 2 s, paired, interval):
//
//	                                  small                  detail
//	gate-proc/nginx                   1.02 [0.92, 1.05]      1.13 [1.06, 1.17]
//	gate-proc/nginx-auto              0.95 [0.83, 1.01]      1.00 [0.95, 1.12]
//	gate-proc/nginx-xf                1.03 [0.83, 1.06]      1.13 [1.06, 1.21]
//	gate-proc/nginx-auto-xf           0.98 [0.76, 1.08]      1.03 [0.97, 1.13]
//
// Unchanged. Again at the start of the next session, the same day (no
// other jobs; 11 x 2 s, paired, interval):
//
//	                                  small                  detail
//	gate-proc/nginx                   1.02 [0.95, 1.06]      1.17 [1.09, 1.37]
//	gate-proc/nginx-auto              0.94 [0.88, 1.00]      1.10 [1.02, 1.13]
//	gate-proc/nginx-xf                1.00 [0.86, 1.07]      1.15 [1.09, 1.30]
//	gate-proc/nginx-auto-xf           0.97 [0.83, 1.01]      1.11 [1.01, 1.19]
//
// The same: at nginx's one worker, a few per cent under its two.
//
// Again at the end of 2026-11-27's second session, after the overload
// limits (a count per connection, none per request) and the dropped
// X-Forwarded-Prefix (one more name in the header switch); helpers and
// stacks stopped, 11 x 2 s, paired, interval:
//
//	                                  small                  detail
//	gate-proc/nginx                   1.03 [0.96, 1.06]      1.10 [0.98, 1.19]
//	gate-proc/nginx-auto              0.98 [0.86, 1.05]      1.02 [0.93, 1.16]
//	gate-proc/nginx-xf                1.04 [0.96, 1.11]      1.12 [0.97, 1.25]
//	gate-proc/nginx-auto-xf           0.96 [0.88, 1.04]      1.04 [0.93, 1.09]
//
// Unchanged.
//
// Again on 2026-11-27 (the machine's clock; the session after), after
// the idle mark of the connection limit (an atomic store before and after
// each keep-alive wait) and the closed-for-room check; helpers and stacks
// stopped, load 0.2 before it, 11 x 2 s, paired, interval:
//
//	                                  small                  detail
//	gate-proc/nginx                   0.96 [0.86, 1.02]      1.05 [0.99, 1.17]
//	gate-proc/nginx-auto              0.94 [0.83, 1.02]      1.04 [0.86, 1.20]
//	gate-proc/nginx-xf                0.99 [0.86, 1.10]      1.11 [0.96, 1.29]
//	gate-proc/nginx-auto-xf           0.97 [0.83, 1.04]      1.01 [0.89, 1.21]
//
// Within the spread of the earlier runs (each interval holds the earlier
// medians), a few per cent lower on the small answer: not shown to be at
// least nginx's rate there, as before.
//
// Again on 2026-11-27 (the next session), after the fair share of slots
// and of validation places (neither on the pass-through path); stacks
// stopped, load 0.6 before it and up to 3.6 during it (another job), 11 x
// 2 s, paired, interval:
//
//	                                  small                  detail
//	gate-proc/nginx                   1.00 [0.92, 1.07]      1.11 [1.00, 1.19]
//	gate-proc/nginx-auto              0.96 [0.91, 1.01]      0.97 [0.88, 1.07]
//	gate-proc/nginx-xf                1.03 [0.96, 1.07]      1.14 [1.03, 1.18]
//	gate-proc/nginx-auto-xf           0.98 [0.88, 1.02]      1.02 [0.91, 1.13]
//
// The same picture again.
//
// Again at the end of the session after (signed listings, bound uuids,
// partitioned CRLs, known clients' validation places: none on the
// pass-through path); helpers and stacks stopped, load 0.0 before it and
// up to 3.9 during it (the benchmark's own processes), 11 x 2 s, paired,
// interval:
//
//	                                  small                  detail
//	gate-proc/nginx                   0.98 [0.88, 1.03]      1.14 [1.09, 1.19]
//	gate-proc/nginx-auto              0.95 [0.84, 0.96]      0.99 [0.97, 1.14]
//	gate-proc/nginx-xf                1.01 [0.84, 1.16]      1.17 [1.11, 1.25]
//	gate-proc/nginx-auto-xf           0.94 [0.76, 1.12]      1.10 [1.00, 1.21]
//
// On the small answer against nginx's two workers the interval lies below
// 1 this time: the gate's pass-through rate is a few per cent under
// nginx-auto's there, as the earlier medians said; at or above nginx's
// with one worker, and on the 15 KiB answer.
//
// Again on 2026-11-28 (signed listings deciding retirement, squats
// deactivated, a trailing /v2.1 dropped from upstream: none on the
// pass-through path); one helper editing, no stacks running, load 1.4
// before it and 3.8 at its end, 11 x 2 s, paired, interval:
//
//	                                  small                  detail
//	gate-proc/nginx                   0.97 [0.88, 1.04]      1.23 [1.11, 1.48]
//	gate-proc/nginx-auto              0.93 [0.89, 0.95]      1.14 [1.03, 1.27]
//	gate-proc/nginx-xf                1.02 [0.95, 1.11]      1.27 [1.14, 1.38]
//	gate-proc/nginx-auto-xf           0.93 [0.86, 1.17]      1.11 [1.05, 1.53]
//
// Unchanged: on the 100-byte answer a few per cent under nginx's two
// workers, about nginx's one; above both on the 15 KiB answer.
//
// Tried on 2026-11-28 and dropped: a read that waits in the poller before
// its first system call (as nginx waits in epoll), for the answer to a
// request just written and a keep-alive client's next request, to save
// the reads that find no data. Go's poller is edge-triggered: data already
// in the socket whose readiness an earlier wait took (a read that filled
// its buffer, the client watch's one-byte read, bytes under TLS records)
// sends no new event, and such a wait then lasts until the deadline. The
// proxy's tests ran past their ten minutes with it (on a loaded machine;
// which test waited was not pinned down); what it could save is about one
// read of 0.3-0.5 µs a request.
//
// Tried on 2026-11-28 (the next session) and dropped: the gate as nginx
// runs, a process per core. Two gate processes, each with GOMAXPROCS=1,
// listening on one port with SO_REUSEPORT (the kernel spreading wrk's 32
// connections between them), beside the single gate process, two
// processes with the default GOMAXPROCS, and nginx with worker_processes
// auto, in the same rounds (quiet machine, load 0.2 before it; 11 x 2 s,
// paired, interval):
//
//	                                  small                  detail
//	gate-proc/nginx-auto              0.94 [0.91, 0.96]      1.03 [0.99, 1.23]
//	gate-proc/nginx-auto-xf           0.95 [0.91, 0.98]      1.04 [0.99, 1.18]
//	two, GOMAXPROCS=1/gate-proc       1.03 [1.00, 1.05]      1.03 [0.98, 1.06]
//	two, GOMAXPROCS=1/nginx-auto      0.96 [0.92, 0.99]      1.06 [1.03, 1.25]
//	two, GOMAXPROCS=1/nginx-auto-xf   0.97 [0.93, 1.03]      1.08 [1.03, 1.18]
//	two, default/nginx-auto-xf        0.92 [0.90, 0.95]      1.00 [0.98, 1.05]
//
// About 3% more than one process on the small answer, still under
// nginx's two workers, for two sets of caches, Glance lookups, Keystone
// validations and metrics endpoints: not worth what it asks of an
// operator.
//
//	go test ./validator/proxy -run '^$' -bench 'PassThrough$' -benchtime 50000x
//	go test ./validator/proxy -run '^$' -bench PassThroughWrk -benchtime 1x
//	IMAGETRUST_PROXY_BENCH_WRK_ROUNDS=11 IMAGETRUST_PROXY_BENCH_WRK_DURATION=2s (the runs of 11 rounds)
//	IMAGETRUST_PROXY_BENCH_GOGC=400 IMAGETRUST_PROXY_BENCH_GOMAXPROCS=1 (gate process settings)
//	IMAGETRUST_PROXY_BENCH_CPUPROFILE=/tmp/gate.prof go test ./validator/proxy -run '^$' -bench PassThroughWrk -benchtime 1x
package proxy
