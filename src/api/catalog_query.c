/* catalog_query.c -- helpers shared by the catalog and health endpoints (catalog_query.h). */
#include "api/catalog_query.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/json.h"

void api_parse_node_meta(struct http_request *req, struct api_meta_filter *mf)
{
  const char *vals[MAX_META_FILTERS];
  size_t n = http_query_all(req, "node-meta", vals, MAX_META_FILTERS);
  if (n > MAX_META_FILTERS) n = MAX_META_FILTERS;
  mf->n = 0;
  for (size_t i = 0; i < n; i++) {
    snprintf(mf->buf[i], sizeof mf->buf[i], "%s", vals[i]);
    char *colon = strchr(mf->buf[i], ':');
    if (colon) *colon++ = '\0';
    mf->items[mf->n++] = (struct state_pair){mf->buf[i], colon ? colon : ""};
  }
}

/* Consul's serviceTagsFilter: every requested tag must be present, case-insensitively. */
bool api_service_has_tags(const struct state_service *s, const char *const *tags, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    bool found = false;
    for (size_t j = 0; j < s->n_tags && !found; j++) found = strcasecmp(s->tags[j], tags[i]) == 0;
    if (!found) return false;
  }
  return true;
}

void api_watch_table(struct api_read_result *res, const char *name)
{
  api_read_watch(res, STATE_WATCH_TABLE, name, strlen(name));
}

void api_finish_json(struct http_request *req, struct api_read_result *res, json_t *j)
{
  http_json_encode(j, http_query_has(req, "pretty"), &res->body);
  json_decref(j);
}
