/* event.c -- Consul's user-event endpoints (agent/event_endpoint.go):
 *
 *   PUT /v1/event/fire/<name>?node=&service=&tag=   body = payload
 *   GET /v1/event/list?name=&index=&wait=
 *
 * Firing validates the filters, gives the event a random ID and version 1, and gossips it as
 * the serf user event "consul:event:<name>" carrying the msgpack UserEvent (event/codec.c);
 * every agent, this one included, checks the filters when it arrives (agent/events.c). Consul
 * sends the fire through a server's RPC first (for ACLs); events are pure gossip, so we fire
 * from the agent itself, which works on client agents too.
 *
 * Listing answers the agent's ring of recent events. Its blocking differs from the store's:
 * the index is derived from the newest event's ID (not monotonic), and a request blocks only
 * while the index it would answer equals ?index exactly. A parked request holds a one-shot ring
 * waiter and its own timer; a new event re-runs it (a name filter may keep it parked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "event/event.h"
#include "gossip/gossip.h"
#include "http/json.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/rand.h"

/* serf's UserEventSizeLimit as Consul configures it (gossip_config_default). */
#define EVENT_SIZE_LIMIT 512

static void event_fire(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  if (!req->tail[0]) {
    http_respond_error(req, 400, "Missing name");
    return;
  }
  struct event_user *ev = event_user_new();
  free(ev->name);
  ev->name = xstrdup(req->tail);
  const char *f;
  if ((f = http_query(req, "node")) && *f) {
    free(ev->node_filter);
    ev->node_filter = xstrdup(f);
  }
  if ((f = http_query(req, "service")) && *f) {
    free(ev->service_filter);
    ev->service_filter = xstrdup(f);
  }
  if ((f = http_query(req, "tag")) && *f) {
    free(ev->tag_filter);
    ev->tag_filter = xstrdup(f);
  }
  if (req->body_len > 0) {
    ev->payload = xmemdup(req->body, req->body_len);
    ev->payload_len = req->body_len;
  }
  char err[1024];
  /* Consul answers a refused event with 500 and the reason (EventFire's error path). */
  if (event_validate(ev, err, sizeof err) != 0) {
    http_respond_error(req, 500, "%s", err);
    event_user_free(ev);
    return;
  }
  rand_uuid(ev->id);
  ev->version = EVENT_VERSION;
  if (!ctx->gossip) {
    http_respond_error(req, 500, "serf is disabled on this agent: user events need gossip");
    event_user_free(ev);
    return;
  }
  struct buf wire = BUF_INIT, serf_name = BUF_INIT;
  event_encode(&wire, ev);
  buf_printf(&serf_name, "%s%s", EVENT_SERF_PREFIX, ev->name);
  int rv = gossip_user_event(ctx->gossip, serf_name.data, wire.data, wire.len, false);
  if (rv == CC_ETOOBIG) {
    /* serf's two checks: name plus payload before encoding, then the encoded message. */
    if (serf_name.len + wire.len > EVENT_SIZE_LIMIT)
      http_respond_error(req, 500,
                         "user event exceeds configured limit of %d bytes before encoding",
                         EVENT_SIZE_LIMIT);
    else
      http_respond_error(req, 500,
                         "encoded user event exceeds configured limit of %d bytes after encoding",
                         EVENT_SIZE_LIMIT);
  } else if (rv != 0) {
    http_respond_error(req, 500, "%s", cc_strerror(rv));
  } else {
    log_debug("agent", "user event fired: %s (%s)", ev->name, ev->id);
    http_respond_json(req, 200, event_user_json(ev));
  }
  buf_free(&wire);
  buf_free(&serf_name);
  event_user_free(ev);
}

/* ---- list ---- */

/* The index the list would be answered with now: the newest matching event's (no JSON
 * built, so a parked request that an unrelated event wakes costs a scan, not an encode). */
static uint64_t event_list_index(struct api_ctx *ctx, const char *name)
{
  const struct event_user *last = NULL;
  if (ctx->events) {
    for (size_t i = 0; i < EVENT_RING_SIZE; i++) {
      const struct event_user *ev =
          ctx->events->slots[(ctx->events->next + EVENT_RING_SIZE - 1 - i) % EVENT_RING_SIZE];
      if (ev && (!name || !*name || strcmp(ev->name, name) == 0)) {
        last = ev;
        break;
      }
    }
  }
  uint64_t index = last ? event_index_from_id(last->id) : 1;
  return index ? index : 1;
}

/* The list as it would be answered now, and its index. */
static json_t *event_list_now(struct api_ctx *ctx, const char *name, uint64_t *index)
{
  json_t *arr = json_array();
  const struct event_user *last = NULL;
  if (ctx->events) {
    const struct event_user **evs = xcalloc(EVENT_RING_SIZE, sizeof *evs);
    size_t n = event_ring_list(ctx->events, evs);
    for (size_t i = 0; i < n; i++) {
      if (name && *name && strcmp(evs[i]->name, name) != 0) continue;
      json_array_append_new(arr, event_user_json(evs[i]));
      last = evs[i];
    }
    free(evs);
  }
  /* Consul answers 1 when nothing matches, so that a watch does not spin on index 0. */
  *index = last ? event_index_from_id(last->id) : 1;
  if (*index == 0) *index = 1;
  return arr;
}

static void event_list_answer(struct api_ctx *ctx, struct http_request *req, json_t *arr,
                              uint64_t index)
{
  char v[32];
  snprintf(v, sizeof v, "%llu", (unsigned long long)index);
  (void)ctx;
  http_set_header(req, "X-Consul-Index", v);
  http_respond_json(req, 200, arr);
}

struct event_parked {
  uv_timer_t timer; /* first: closing it frees the struct */
  struct api_ctx *ctx;
  struct http_request *req;
  struct event_waiter *waiter; /* NULL while not registered */
  uint64_t min_index;
};

static void parked_closed(uv_handle_t *h)
{
  free(h->data);
}

static void parked_release(struct event_parked *p)
{
  if (p->waiter && p->ctx->events) event_ring_unwait(p->ctx->events, p->waiter);
  p->waiter = NULL;
  uv_timer_stop(&p->timer);
  p->timer.data = p;
  uv_close((uv_handle_t *)&p->timer, parked_closed);
}

static void parked_cancel(struct http_request *req, void *arg)
{
  (void)req;
  parked_release(arg);
}

/* Answers the parked request with the list as it is now, and frees the parking. */
static void parked_finish(struct event_parked *p, json_t *arr, uint64_t index)
{
  struct http_request *req = p->req;
  struct api_ctx *ctx = p->ctx;
  http_request_on_cancel(req, NULL, NULL);
  parked_release(p);
  event_list_answer(ctx, req, arr, index);
}

static void parked_timeout(uv_timer_t *t)
{
  struct event_parked *p = (struct event_parked *)t;
  uint64_t index;
  json_t *arr = event_list_now(p->ctx, http_query(p->req, "name"), &index);
  parked_finish(p, arr, index);
}

static void parked_new_event(void *arg)
{
  struct event_parked *p = arg;
  p->waiter = NULL; /* the ring frees a fired waiter */
  if (event_list_index(p->ctx, http_query(p->req, "name")) == p->min_index) {
    /* Not an event this query shows: keep waiting for the next one. */
    p->waiter = event_ring_wait(p->ctx->events, parked_new_event, p);
    return;
  }
  uint64_t index;
  json_t *arr = event_list_now(p->ctx, http_query(p->req, "name"), &index);
  parked_finish(p, arr, index);
}

static void event_list(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  uint64_t index;
  json_t *arr = event_list_now(ctx, http_query(req, "name"), &index);
  if (opts.min_index == 0 || index != opts.min_index || !ctx->events) {
    event_list_answer(ctx, req, arr, index);
    return;
  }
  json_decref(arr);
  struct event_parked *p = xcalloc(1, sizeof *p);
  p->ctx = ctx;
  p->req = req;
  p->min_index = opts.min_index;
  uv_timer_init(ctx->loop, &p->timer);
  /* Consul's event list waits exactly ?wait (default and cap as other blocking queries),
   * without the jitter the store's queries add. */
  uv_timer_start(&p->timer, parked_timeout, (uint64_t)opts.wait_ns / 1000000, 0);
  p->waiter = event_ring_wait(ctx->events, parked_new_event, p);
  http_request_on_cancel(req, parked_cancel, p);
}

void api_event_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/event/fire/", event_fire, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/event/list", event_list, ctx);
}
