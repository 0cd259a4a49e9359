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
// pass untouched (GET /, /v2 and /v2.1 get their hrefs rewritten, below).
//
// Within a create: server.imageRef; every block_device_mapping_v2 entry with
// source_type "image" (its uuid) or with an image_id key; legacy
// block_device_mapping entries with an image_id. A volume or snapshot that
// may be the boot disk (boot_index 0, or no imageRef, or any legacy entry
// with volume_id/snapshot_id, as the legacy format has no boot index) is
// judged by the image it was made from when Options.Volumes is set
// (Cinder's volume_image_metadata.image_id; a snapshot by its volume's),
// exactly like an image reference, except that the id must be a UUID (never
// a tag) and not a tag alias entry; the request keeps its volume id. A
// volume made from no image, and every boot volume when Options.Volumes is
// nil, is governed by Options.VolumePolicy (config proxy.volume_policy):
// "refuse" (default) refuses it, "allow" lets it through unjudged. Cinder's
// answers are not cached. Beware: Cinder lets project members set
// volume_image_metadata by default (policy
// volume_extension:volume_image_metadata:set), so a site that uses
// Options.Volumes must restrict that policy (and :remove) to admins;
// otherwise a user can label a volume of any content with a good image's
// id. Under "allow" without Volumes a volume made from a revoked image can
// boot.
//
// Not gated: unshelve (boots the user's shelve snapshot), evacuate (admin),
// rescue without rescue_image_ref (the instance's own image, judged when the
// server was created), and actions that create images (createImage, shelve).
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
// with the proxy's own service token). The token is read as
// keystonemiddleware reads it (X-Auth-Token, else X-Storage-Token) and
// forwarded unchanged, so Nova sees the very token the gate validated.
// Creates are authenticated before the body is read; actions once the body
// says rebuild, or rescue with a rescue_image_ref. Other requests, including
// other actions, are not validated by the gate (Nova does that).
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
// default) in a bounded LRU, and concurrent misses share one call. A
// revocation or a change of a validity flag therefore takes effect within
// the TTL.
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
// Version documents (GET /, /v2, /v2.1) and Location headers have hrefs that
// point into the upstream rewritten to the public URL, so keystoneauth
// clients, which take the discovered "self" href as the endpoint, stay on
// the gate.
//
// # Performance
//
// Requests that are not POSTs (and not version documents) go straight to
// httputil.ReverseProxy without path classification or body inspection, and
// are not logged. The reverse proxy copies bodies with pooled 32 KiB
// buffers; the default Transport keeps up to 512 idle connections to Nova,
// uses 32 KiB socket buffers, never compresses and speaks HTTP/1.1 only.
//
// BenchmarkPassThrough (bench_test.go) measures pass-through throughput,
// GET /v2.1/flavors from 32 concurrent clients to a stand-in upstream that
// answers at once, for: the upstream directly; the gate in the benchmark's
// own process; the gate in a process of its own (the test binary
// re-executed, serving through Serve as `imagetrust proxy` does, with
// metrics); and Debian's nginx 1.22 with worker_processes 1 and auto. Running
// the gate in the benchmark's process shares its Go scheduler and GC with
// the clients and the upstream, which nginx does not, so the comparison
// reported is the separate-process one (gate-proc/nginx). The targets take
// turns, 5 rounds each, and the median round counts.
//
// Measured on the project's machine (2 cores, shared with other jobs: load
// 4-6 during the runs, so absolute rates vary by 2x between runs and only
// the ratios within one run mean something), -benchtime 50000x, three runs
// each of the code before and after the changes above, alternated:
//
//	gate-proc/nginx   nginx with 1 worker    nginx with auto (2)
//	before            0.47  0.50  0.49       0.40  0.44  0.47
//	after             0.65  0.63  0.72       0.68  0.59  0.72
//
// "Before" is the code without the buffer pool and with 4 KiB transport
// buffers; the gate in the benchmark's process went from 0.35-0.55 to
// 0.57-0.75 of nginx (1 worker) in the same runs. With GOMAXPROCS=1 for the
// gate process: 0.71 and 0.63.
//
// The gate thus reaches about two thirds of nginx's pass-through rate, not
// the goal of nginx's rate. What remains is net/http's own cost
// (CPU profile of the gate process: about 30% in system calls, the rest in
// header parsing and cloning, goroutine scheduling and GC): per request the
// gate makes about 6 system calls where nginx makes 5 (strace -c: two of
// Go's reads per request return EAGAIN, one of them the server's background
// read that notices closed connections), and many more futex wake-ups.
//
//	go test ./validator/proxy -run '^$' -bench PassThrough -benchtime 50000x
//	IMAGETRUST_PROXY_BENCH_CPUPROFILE=/tmp/gate.prof go test ./validator/proxy -run '^$' -bench PassThrough
package proxy
