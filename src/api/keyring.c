/* keyring.c -- /v1/operator/keyring (Consul's agent/operator_endpoint.go, agent/keyring.go):
 * gossip encryption key rotation.
 *
 *   GET    /v1/operator/keyring            lists the keys every member holds
 *   POST   /v1/operator/keyring {"Key"}    installs a key everywhere
 *   PUT    /v1/operator/keyring {"Key"}    makes it the primary (encrypting) key everywhere
 *   DELETE /v1/operator/keyring {"Key"}    removes it everywhere
 *
 * Each runs serf's key query over the LAN pool (gossip_key_op) and answers once every live
 * member has answered or the query times out. The answer to GET is Consul's list of
 * KeyringResponse, one per pool; we have only the LAN pool, so one entry, WAN false. Errors
 * are Consul's: 500 with go-multierror's text ("1 error occurred:\n\t* dc1 (LAN) error: ...").
 * As in Consul, only servers run key operations. Departures: ?relay-factor is checked but
 * answers are not relayed; ?local-only is accepted (there is no WAN pool to skip). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "gossip/gossip.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"

/* A request waiting for the pool's answers. req is NULL once the client has gone. */
struct keyring_call {
  struct api_ctx *ctx;
  struct http_request *req;
  enum gossip_key_op op;
};

static void keyring_cancel(struct http_request *req, void *arg)
{
  (void)req;
  struct keyring_call *c = arg;
  c->req = NULL; /* the gossip callback still comes, and frees c */
}

static json_t *keyring_counts(const struct gossip_key_count *v, size_t n)
{
  json_t *o = json_object();
  for (size_t i = 0; i < n; i++) json_object_set_new(o, v[i].key, json_integer(v[i].count));
  return o;
}

/* keyringErrorsOrNil, written as go-multierror formats its list. */
static void keyring_errors(struct api_ctx *ctx, const struct gossip_key_response *r,
                           struct buf *out)
{
  size_t n = 1 + r->nmessages;
  if (n == 1)
    buf_printf(out, "1 error occurred:\n\t* %s (LAN) error: %s\n\n", ctx->cfg->datacenter,
               r->error);
  else {
    buf_printf(out, "%zu errors occurred:\n\t* %s (LAN) error: %s", n, ctx->cfg->datacenter,
               r->error);
    for (size_t i = 0; i < r->nmessages; i++)
      buf_printf(out, "\n\t* %s: %s", r->msg_nodes[i], r->msg_texts[i]);
    buf_puts(out, "\n\n");
  }
}

static void keyring_done(void *arg, const struct gossip_key_response *r)
{
  struct keyring_call *c = arg;
  struct http_request *req = c->req;
  if (req) {
    http_request_on_cancel(req, NULL, NULL);
    if (r->error[0]) {
      struct buf b = BUF_INIT;
      keyring_errors(c->ctx, r, &b);
      http_respond_buf(req, 500, "text/plain; charset=utf-8", &b);
      buf_free(&b);
    } else if (c->op == GOSSIP_KEY_LIST) {
      json_t *e = json_object();
      json_object_set_new(e, "WAN", json_false());
      json_object_set_new(e, "Datacenter", json_string(c->ctx->cfg->datacenter));
      json_object_set_new(e, "Segment", json_string(""));
      if (r->nmessages) {
        json_t *m = json_object();
        for (size_t i = 0; i < r->nmessages; i++)
          json_object_set_new(m, r->msg_nodes[i], json_string(r->msg_texts[i]));
        json_object_set_new(e, "Messages", m);
      }
      json_object_set_new(e, "Keys", keyring_counts(r->keys, r->nkeys));
      json_object_set_new(e, "PrimaryKeys", keyring_counts(r->primary_keys, r->nprimary_keys));
      json_object_set_new(e, "NumNodes", json_integer(r->num_nodes));
      json_t *arr = json_array();
      json_array_append_new(arr, e);
      http_respond_json(req, 200, arr); /* takes arr */
    } else {
      http_respond(req, 200, NULL, NULL, 0);
    }
  }
  free(c);
}

static void keyring_endpoint(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  enum gossip_key_op op = GOSSIP_KEY_LIST;
  if (req->method == HTTP_M_POST) op = GOSSIP_KEY_INSTALL;
  else if (req->method == HTTP_M_PUT) op = GOSSIP_KEY_USE;
  else if (req->method == HTTP_M_DELETE) op = GOSSIP_KEY_REMOVE;
  char *key = NULL;
  if (op != GOSSIP_KEY_LIST) {
    json_error_t je;
    json_t *body = json_loadb((const char *)req->body, req->body_len, 0, &je);
    if (!body || !json_is_object(body)) {
      http_respond_error(req, 400, "Request decode failed: %s",
                         !body ? (req->body_len ? je.text : "EOF") : "not a JSON object");
      json_decref(body);
      return;
    }
    json_t *k = json_object_get(body, "Key");
    if (k && !json_is_string(k)) {
      http_respond_error(req, 400, "Request decode failed: Key must be a string");
      json_decref(body);
      return;
    }
    key = xstrdup(k ? json_string_value(k) : "");
    json_decref(body);
  }
  const char *rf = http_query(req, "relay-factor");
  if (rf && *rf) {
    char *end;
    long n = strtol(rf, &end, 10);
    if (*end || end == rf) {
      http_respond_error(req, 400, "Error parsing relay factor: strconv.Atoi: parsing \"%s\": "
                         "invalid syntax", rf);
      free(key);
      return;
    }
    if (n < 0 || n > 5) {
      http_respond_error(req, 400, "Invalid relay-factor: Relay factor must be in range: [0, 5]");
      free(key);
      return;
    }
  }
  const char *lo = http_query(req, "local-only");
  if (lo && *lo) {
    bool t = !strcmp(lo, "1") || !strcmp(lo, "t") || !strcmp(lo, "T") || !strcmp(lo, "true") ||
             !strcmp(lo, "TRUE") || !strcmp(lo, "True");
    bool f = !strcmp(lo, "0") || !strcmp(lo, "f") || !strcmp(lo, "F") || !strcmp(lo, "false") ||
             !strcmp(lo, "FALSE") || !strcmp(lo, "False");
    if (!t && !f) {
      http_respond_error(req, 400, "Error parsing local-only: strconv.ParseBool: parsing \"%s\": "
                         "invalid syntax", lo);
      free(key);
      return;
    }
    if (t && op != GOSSIP_KEY_LIST) {
      http_respond_error(req, 400, "Invalid use of local-only: local-only can only be set for "
                         "list requests");
      free(key);
      return;
    }
  }
  if (!ctx->cfg->server || !ctx->gossip) {
    http_respond_error(req, 500, "keyring operations must run against a server node");
    free(key);
    return;
  }
  struct keyring_call *c = xcalloc(1, sizeof *c);
  c->ctx = ctx;
  c->req = req;
  c->op = op;
  char err[128] = "";
  int rc = gossip_key_op(ctx->gossip, op, key, keyring_done, c, err, sizeof err);
  free(key);
  if (rc) {
    http_respond_error(req, 500, "1 error occurred:\n\t* %s (LAN) error: %s\n\n",
                       ctx->cfg->datacenter, err[0] ? err : cc_strerror(rc));
    free(c);
    return;
  }
  http_request_on_cancel(req, keyring_cancel, c);
}

void api_keyring_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET | HTTP_M_POST | HTTP_M_PUT | HTTP_M_DELETE,
                    "/v1/operator/keyring", keyring_endpoint, ctx);
}
