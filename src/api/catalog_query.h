/* catalog_query.h -- what the catalog and health endpoints share: ?node-meta parsing, tag
 * matching, the per-table watch and JSON output of a read. Not used outside api/. */
#ifndef CONCORD_API_CATALOG_QUERY_H
#define CONCORD_API_CATALOG_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/internal.h"
#include "state/catalog.h"

#define MAX_META_FILTERS 64
#define MAX_TAG_FILTERS 64

/* ?node-meta=key:value, repeated (Consul's parseMetaFilter / ParseMetaPair); values are
 * copied into the struct, at most MAX_META_FILTERS of 255 bytes. */
struct api_meta_filter {
  struct state_pair items[MAX_META_FILTERS];
  char buf[MAX_META_FILTERS][256];
  size_t n;
};
void api_parse_node_meta(struct http_request *req, struct api_meta_filter *mf);

/* True if the service carries every one of the n tags (case-insensitive, as Consul). */
bool api_service_has_tags(const struct state_service *s, const char *const *tags, size_t n);

/* Watches a table or index name ("nodes", "service.web") for a blocking read. */
void api_watch_table(struct api_read_result *res, const char *name);

/* Encodes j as the read's body (Go's JSON, ?pretty honoured) and releases it. */
void api_finish_json(struct http_request *req, struct api_read_result *res, json_t *j);

#endif
