// Package api is the sensor's management HTTP API: a read-only TAXII 2.1 server over the
// session bundles in the store (folder or S3), and the Prometheus /metrics endpoint.
//
// # Endpoints
//
//	/taxii2/                                              discovery
//	/taxii2/pcapot/                                       API root
//	/taxii2/pcapot/collections/                           collections
//	/taxii2/pcapot/collections/{id}/                      collection (by id or alias)
//	/taxii2/pcapot/collections/{id}/objects/              objects
//	/taxii2/pcapot/collections/{id}/objects/{object-id}/  object
//	/taxii2/pcapot/collections/{id}/objects/{object-id}/versions/
//	/taxii2/pcapot/collections/{id}/manifest/
//	/metrics                                              Prometheus (when Config.Metrics is set)
//
// Two collections with fixed ids: "pcapot-incidents" (IncidentsCollectionID), every
// object of every session bundle, and "pcapot-indicators" (IndicatorsCollectionID), the
// indicators and sightings plus the identities they reference, for SIEMs that ingest
// indicators only (Microsoft Sentinel, Elastic's threat intel integrations). The same
// object (the sensor's identity, the pcapot extension definition, the sensor's address)
// appears in many bundles; a collection holds each (id, version) once, from the first
// bundle that had it.
//
// # date_added: strictly increasing, never behind a cursor
//
// Clients poll with added_after = the X-TAXII-Date-Added-Last of their previous page
// (Elastic between intervals, any client paging without `next`), or with added_after =
// the time of their previous run by their own clock (OpenCTI). Neither skips nor repeats
// an object exactly when, within a collection,
//
//  1. every object has a date_added distinct from every other (ties at equal
//     timestamps are the classic loss: a page ending in the middle of a tie skips the
//     rest of it);
//  2. an object that becomes visible later never gets a date_added lower than or equal
//     to one already served (header cursors); and
//  3. an object is visible to every request that arrives after its date_added (clock
//     cursors: a run that started at R and saw nothing at date_added <= R must not find
//     such an object later).
//
// The store has no insertion counter, and any number of sensors write into one bucket,
// so date_added is derived from what the store does have, the modification time of
// each bundle (S3 LastModified, file mtime), and a visibility delay D
// (Config.VisibilityDelay, default 10 s) that bounds how long after its modification
// time a bundle becomes listable (an S3 object's LastModified is the start of its
// upload, a file's mtime its last write before the rename that publishes it).
//
//   - Bundles are indexed in a fixed total order: by mtime, then by key (keys are
//     unique); the objects of a bundle in bundle order.
//   - Walking that order, each object kept in a collection gets
//     date_added = max(mtime + D, date_added of the previous object + 1 µs), in whole
//     microseconds (TAXII timestamps have microsecond precision). So date_added is
//     strictly increasing (rule 1), also for thousands of objects written in the same
//     microsecond: they take the following microseconds.
//   - A refresh samples the clock at t, then lists the store, and indexes exactly the
//     bundles with mtime + D < t. Every such bundle is in the listing (it became
//     listable before t), so a later refresh only finds bundles with mtime + D >= t,
//     which sort after everything indexed: the walk only ever appends (rule 2).
//   - A new query (a request without `next`) refreshes the index before it is
//     answered, so every object with date_added before the request's arrival is
//     indexed and served to it (rule 3; this is why date_added is mtime + D, the time the
//     bundle becomes visible, and not mtime). Follow-up pages (with `next`) continue on
//     an index at most Config.RefreshInterval old.
//   - The result depends only on the bucket's content and D, not on when or how often
//     a server refreshed: any number of server instances over one bucket (with one D),
//     and a server rebuilding its index after a restart, give every object the same
//     date_added, so a client may switch instances between pages.
//   - A late bundle (listed only after a refresh at t already passed its mtime + D: an
//     upload slower than D, or a writer whose clock is off by more than D) is placed at
//     the refresh that finds it, date_added >= that refresh's t, after everything
//     indexed so far, so that this instance still serves it after every cursor it handed
//     out. That placement is the one thing not derived from the bucket alone: another
//     instance, or this one after a restart, places the bundle at its mtime + D. Late
//     bundles are counted (Server.Stats) and logged with advice to raise D.
//   - A bundle deleted from the store disappears from the collections (an object that
//     other bundles also hold stays, served from them, with its date_added); other
//     objects keep their date_added in this instance. A rebuilt index may move objects
//     that took the microseconds after deleted ones back by that many microseconds.
//   - Clock cursors also need the client's clock to agree with the server's (NTP).
//
// # Pagination
//
// Pages are bounded (limit, at most Config.MaxPageSize). A page that is not the last
// has "more": true and always a "next" token, also on the manifest and versions
// resources (taxii2-client's as_pages re-sends `next` for them too). The token is
// opaque, self-contained and authenticated with HMAC-SHA256 (Config.NextKey, a random
// per-process key when unset): it carries the whole query (filters, limit, collection,
// endpoint, the requesting principal) and the date_added of the last object served, so
// a follow-up carrying only `next` (and `limit`) continues the same query; filters
// sent with it are checked for syntax and otherwise ignored. The principal in the
// token must be the principal of the request. A token whose signature does not verify
// (a server restarted with a new per-process key, or another instance's key) is
// refused with 400, except when the request also carries added_after: OpenCTI's
// connector keeps re-sending its last `next` together with a fresh added_after, and
// then the token is ignored and added_after applies.
//
// Every 200 answer of objects, object, versions and manifest has
// X-TAXII-Date-Added-First and -Last. On an empty page both carry the request's lower
// bound (added_after or the token's position; the Unix epoch when it has none), so that
// a client that always copies -Last into its next added_after keeps its cursor
// (Elastic's CEL program replaces its cursor with whatever the header holds).
package api
