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
// (Elastic between intervals, and any client paging without `next`). That neither
// skips nor repeats an object exactly when, within a collection,
//
//  1. every object has a date_added distinct from every other (ties at equal
//     timestamps are the classic loss: a page ending in the middle of a tie skips the
//     rest of it), and
//  2. an object that becomes visible later never gets a date_added lower than or equal
//     to one already served.
//
// The store has no insertion counter, and any number of sensors write into one
// bucket, so date_added is derived from what the store does have, the modification
// time of each bundle (S3 LastModified, file mtime), as follows.
//
//   - Bundles are indexed in a fixed total order: by modification time, then by key
//     (keys are unique), and the objects of a bundle in bundle order.
//   - Walking that order, each object kept in a collection gets
//     date_added = max(bundle mtime, date_added of the previous object + 1 µs),
//     rounded to whole microseconds (TAXII timestamps have microsecond precision).
//     date_added is therefore strictly increasing (rule 1), also for thousands of
//     objects written in the same microsecond: they take the following microseconds.
//   - Visibility delay (Config.VisibilityDelay, default 10 s). A refresh samples the
//     clock at t, then lists the store, and indexes only bundles whose mtime is older
//     than t - delay; younger ones wait for a later refresh. Since a bundle becomes
//     listable within the delay after its mtime (an S3 object's LastModified is the
//     start of its upload, a file's mtime is its last write before the rename that
//     publishes it), every bundle older than t - delay is already in the listing. So
//     the bundles indexed by later refreshes all sort after the ones indexed now, and
//     the walk only ever appends: an object added later gets a date_added above every
//     date_added already served (rule 2).
//   - The result depends only on the bucket's content, not on when or how often a
//     server refreshed: any number of server instances over one bucket, and a server
//     rebuilding its index after a restart, give every object the same date_added.
//     A client may switch instances between pages.
//   - A late bundle (listed only after its mtime fell behind an earlier refresh's
//     t - delay: an upload slower than the delay, or a writer whose clock is off by more
//     than the delay) is not placed at its mtime, which could be behind a client's
//     cursor, but at that earlier refresh's t - delay and after everything indexed so
//     far; this instance therefore still serves it after every cursor it handed out.
//     That placement is the one thing not derived from the bucket alone: another
//     instance, or this one after a restart, places the bundle at its mtime. Late
//     bundles are counted (Server.Stats) and logged with advice to raise the delay.
//   - A bundle deleted from the store disappears from the collections; other objects
//     keep their date_added in this instance. A rebuilt index may move objects that
//     took the microseconds after the deleted ones back by that many microseconds.
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
// bound (added_after or the token's position) when it has one, so that a client that
// always copies -Last into its next added_after keeps its cursor (Elastic's CEL program
// replaces its cursor with whatever the header holds).
package api
