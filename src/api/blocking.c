/* blocking.c -- Consul's blocking queries without threads or polling.
 *
 * A read with ?index=N whose result is still at index <= N is parked. Parked requests with the
 * same path and query string form a group: the group holds the store watches of what the read
 * looked at, and each request holds only its own timer. When a watch fires (during a Raft
 * apply), the group is marked dirty and the re-run happens once, on the next loop iteration,
 * for the whole group: one re-run per distinct query however many clients wait on it
 * (Consul's thundering-herd complaint, hashicorp/consul#5050). If the index moved past N every
 * member is answered with the same bytes; otherwise the watches are registered again. A
 * request whose own timer runs out is answered alone with the current result, as Consul does.
 *
 * Memory per parked request: the request itself (owned by http/) plus struct api_parked with
 * its uv_timer_t, about 200 bytes. */
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/map.h"
#include "lib/rand.h"

struct api_group;

struct api_group_watch {
  struct state_watch *w; /* NULL once fired or cancelled */
  struct api_group *group;
};

struct api_parked {
  uv_timer_t timer; /* first: closing it frees the struct */
  struct http_request *req;
  struct api_group *group;
  struct api_parked *next, *prev;
  enum api_consistency mode;
  struct api_ctx *ctx;
};

struct api_group {
  char *key;
  size_t key_len;
  api_read_fn fn;
  uint64_t min_index;
  uint64_t restores; /* the store's restore count when the group formed */
  enum api_consistency mode;
  struct api_parked *head;
  size_t count;
  struct api_group_watch watches[API_READ_MAX_WATCHES];
  int nwatches;
  bool dirty;
  struct api_group *next_dirty;
  struct api_ctx *ctx;
};

struct api_barrier_op;

/* Consistent reads batched onto Raft barriers (see api_read_consistent). */
struct api_barrier_batch {
  struct api_barrier_op *waiting;  /* arrived while a barrier was in flight: ride the next */
  struct api_barrier_op *inflight; /* ride the barrier in flight */
  bool running;
};

struct api_blocking {
  struct map groups; /* key -> struct api_group */
  struct api_barrier_batch barrier;
  struct api_group *dirty;
  uv_idle_t idle;
  size_t parked;
  bool closing;
};

static struct api_blocking *blocking_of(struct api_ctx *ctx) { return ctx->blocking; }

void api_read_watch(struct api_read_result *res, enum state_watch_kind kind, const char *key,
                    size_t key_len)
{
  if (res->nwatches >= API_READ_MAX_WATCHES) {
    /* Too many specific watches: fall back to the whole table, which is always correct. */
    kind = STATE_WATCH_TABLE;
    key = res->fallback_table ? res->fallback_table : "kvs";
    key_len = strlen(key);
    for (int i = 0; i < res->nwatches; i++) free(res->watches[i].key);
    res->nwatches = 0;
  }
  res->watches[res->nwatches].kind = kind;
  res->watches[res->nwatches].key = xmemdup(key, key_len);
  res->watches[res->nwatches].key_len = key_len;
  res->nwatches++;
}

void api_read_header(struct api_read_result *res, const char *name, const char *value)
{
  if (res->nheaders < API_READ_MAX_HEADERS) {
    res->headers[res->nheaders].name = name;
    res->headers[res->nheaders].value = value;
    res->nheaders++;
  }
}

static void api_read_result_free(struct api_read_result *res)
{
  buf_free(&res->body);
  for (int i = 0; i < res->nwatches; i++) free(res->watches[i].key);
  res->nwatches = 0;
}

static void api_read_run(struct api_ctx *ctx, struct http_request *req, api_read_fn fn,
                         struct api_read_result *res)
{
  memset(res, 0, sizeof *res);
  res->status = 200;
  fn(ctx, req, res);
  if (res->index == 0) res->index = 1; /* Consul never answers index 0: clients would spin */
}

/* Answers req with res (copied, so one result can answer a whole group). */
static void api_read_answer(struct api_ctx *ctx, struct http_request *req,
                            const struct api_read_result *res, enum api_consistency mode)
{
  api_set_meta_headers(ctx, req, res->index, mode);
  for (int i = 0; i < res->nheaders; i++)
    http_set_header(req, res->headers[i].name, res->headers[i].value);
  http_respond(req, res->status, res->content_type ? res->content_type : "application/json",
               res->body.data ? res->body.data : "", res->body.len);
}

/* ---- groups ---- */

static void group_watch_fired(void *arg);
static void blocking_idle(uv_idle_t *idle);

static void group_unwatch(struct api_group *g)
{
  for (int i = 0; i < g->nwatches; i++) {
    if (g->watches[i].w) state_watch_cancel(g->watches[i].w);
    g->watches[i].w = NULL;
  }
  g->nwatches = 0;
}

static void group_watch(struct api_ctx *ctx, struct api_group *g, const struct api_read_result *res)
{
  group_unwatch(g);
  for (int i = 0; i < res->nwatches; i++) {
    g->watches[i].group = g;
    g->watches[i].w = state_watch_add(ctx->store, res->watches[i].kind, res->watches[i].key,
                                      res->watches[i].key_len, group_watch_fired, &g->watches[i]);
  }
  g->nwatches = res->nwatches;
}

static void group_free(struct api_blocking *b, struct api_group *g)
{
  group_unwatch(g);
  map_del(&b->groups, g->key, g->key_len);
  if (g->dirty) {
    /* unlink from the dirty list */
    for (struct api_group **pp = &b->dirty; *pp; pp = &(*pp)->next_dirty) {
      if (*pp == g) {
        *pp = g->next_dirty;
        break;
      }
    }
  }
  free(g->key);
  free(g);
}

static void parked_timer_closed(uv_handle_t *h)
{
  free(h->data);
}

/* Takes p out of its group (freeing the group when it empties) and releases it. */
static void parked_remove(struct api_blocking *b, struct api_parked *p)
{
  struct api_group *g = p->group;
  if (p->prev) p->prev->next = p->next;
  else g->head = p->next;
  if (p->next) p->next->prev = p->prev;
  g->count--;
  b->parked--;
  if (g->count == 0) group_free(b, g);
  uv_timer_stop(&p->timer);
  p->timer.data = p;
  uv_close((uv_handle_t *)&p->timer, parked_timer_closed);
}

static void parked_cancel(struct http_request *req, void *arg)
{
  struct api_parked *p = arg;
  (void)req;
  parked_remove(blocking_of(p->ctx), p);
}

static void parked_timeout(uv_timer_t *t)
{
  struct api_parked *p = (struct api_parked *)t;
  struct api_ctx *ctx = p->ctx;
  struct api_blocking *b = blocking_of(ctx);
  struct http_request *req = p->req;
  api_read_fn fn = p->group->fn;
  enum api_consistency mode = p->mode;
  parked_remove(b, p);
  http_request_on_cancel(req, NULL, NULL);
  struct api_read_result res;
  api_read_run(ctx, req, fn, &res);
  api_read_answer(ctx, req, &res, mode);
  api_read_result_free(&res);
}

static void group_watch_fired(void *arg)
{
  struct api_group_watch *gw = arg;
  struct api_group *g = gw->group;
  gw->w = NULL; /* the store frees a fired watch */
  if (g->dirty) return;
  struct api_blocking *b = blocking_of(g->ctx);
  g->dirty = true;
  g->next_dirty = b->dirty;
  b->dirty = g;
  if (!uv_is_active((uv_handle_t *)&b->idle)) uv_idle_start(&b->idle, blocking_idle);
}

/* Re-runs a dirty group's query once and answers every member if the index moved. */
static void group_process(struct api_ctx *ctx, struct api_blocking *b, struct api_group *g)
{
  g->dirty = false;
  struct api_read_result res;
  api_read_run(ctx, g->head->req, g->fn, &res);
  /* After a restore the index may have gone backwards: answer anyway, as Consul's blocking
   * queries return when the state store they watched is abandoned. */
  bool restored = ctx->store && state_store_restores(ctx->store) != g->restores;
  if (res.index <= g->min_index && !restored) {
    group_watch(ctx, g, &res); /* spurious wake: the change did not move this query's index */
    api_read_result_free(&res);
    return;
  }
  group_unwatch(g);
  while (g->head) {
    struct api_parked *p = g->head;
    struct http_request *req = p->req;
    enum api_consistency mode = p->mode;
    bool last = g->count == 1;
    parked_remove(b, p); /* frees g with the last member */
    http_request_on_cancel(req, NULL, NULL);
    api_read_answer(ctx, req, &res, mode);
    if (last) break;
  }
  api_read_result_free(&res);
}

static void blocking_idle(uv_idle_t *idle)
{
  struct api_ctx *ctx = idle->data;
  struct api_blocking *b = blocking_of(ctx);
  uv_idle_stop(idle);
  while (b->dirty) {
    struct api_group *g = b->dirty;
    b->dirty = g->next_dirty;
    group_process(ctx, b, g);
  }
}

static void api_park(struct api_ctx *ctx, struct http_request *req, api_read_fn fn,
                     const struct api_query_opts *opts, const struct api_read_result *res)
{
  struct api_blocking *b = blocking_of(ctx);
  struct buf key = BUF_INIT;
  buf_printf(&key, "%s?%s", req->path, req->raw_query);
  struct api_group *g = map_get(&b->groups, key.data, key.len);
  if (!g) {
    g = xcalloc(1, sizeof *g);
    g->key = buf_steal(&key, &g->key_len);
    g->fn = fn;
    g->min_index = opts->min_index;
    g->restores = ctx->store ? state_store_restores(ctx->store) : 0;
    g->mode = opts->mode;
    g->ctx = ctx;
    map_put(&b->groups, g->key, g->key_len, g);
    group_watch(ctx, g, res);
  }
  buf_free(&key);
  struct api_parked *p = xcalloc(1, sizeof *p);
  p->req = req;
  p->group = g;
  p->mode = opts->mode;
  p->ctx = ctx;
  p->next = g->head;
  if (g->head) g->head->prev = p;
  g->head = p;
  g->count++;
  b->parked++;
  uv_timer_init(ctx->loop, &p->timer);
  /* Consul adds up to wait/16 of jitter so that many clients do not return together. */
  uint64_t wait_ms = (uint64_t)opts->wait_ns / 1000000;
  uint64_t jitter = wait_ms / 16 ? rand_below(wait_ms / 16) : 0;
  uv_timer_start(&p->timer, parked_timeout, wait_ms + jitter, 0);
  http_request_on_cancel(req, parked_cancel, p);
}

/* The read proper, once consistency has been established. */
static void api_read_now(struct api_ctx *ctx, struct http_request *req, api_read_fn fn,
                         const struct api_query_opts *opts)
{
  struct api_read_result res;
  api_read_run(ctx, req, fn, &res);
  struct api_blocking *b = blocking_of(ctx);
  if (opts->min_index == 0 || res.index > opts->min_index || !b || b->closing) {
    api_read_answer(ctx, req, &res, opts->mode);
  } else {
    api_park(ctx, req, fn, opts, &res);
  }
  api_read_result_free(&res);
}

/* A ?consistent read waits for a Raft barrier: proof that this server is still leader and has
 * applied everything committed before the read arrived. Barriers are batched: reads that
 * arrive while one is in flight wait for the next, which starts when it completes, so a burst
 * of N consistent reads costs two barriers, not N (one barrier is one log entry and an fsync).
 * A read never rides a barrier proposed before it arrived: that one may precede a write the
 * client already saw acknowledged. */
struct api_barrier_op {
  struct api_ctx *ctx;
  struct http_request *req; /* NULL once the client has gone */
  api_read_fn fn;
  struct api_query_opts opts;
  struct api_barrier_op *next;
};

static void api_barrier_cancel(struct http_request *req, void *arg)
{
  (void)req;
  ((struct api_barrier_op *)arg)->req = NULL;
}

static void api_barrier_start(struct api_ctx *ctx);

static void api_barrier_done(void *arg, int status)
{
  struct api_ctx *ctx = arg;
  struct api_barrier_batch *batch = &blocking_of(ctx)->barrier;
  struct api_barrier_op *op = batch->inflight;
  batch->inflight = NULL;
  batch->running = false;
  while (op) {
    struct api_barrier_op *next = op->next;
    if (op->req) {
      http_request_on_cancel(op->req, NULL, NULL);
      if (status == 0) api_read_now(op->ctx, op->req, op->fn, &op->opts);
      else if (status == CC_ENOTLEADER) api_respond_no_leader(op->req); /* see common.c */
      else http_respond_error(op->req, 500, "consistent read failed: %s", cc_strerror(status));
    }
    free(op);
    op = next;
  }
  if (batch->waiting) api_barrier_start(ctx);
}

static void api_barrier_start(struct api_ctx *ctx)
{
  struct api_barrier_batch *batch = &blocking_of(ctx)->barrier;
  batch->inflight = batch->waiting;
  batch->waiting = NULL;
  batch->running = true;
  if (consensus_barrier(ctx->consensus, api_barrier_done, ctx) != 0) {
    /* Not leader any more: fail this batch the same way a failed barrier would. */
    api_barrier_done(ctx, CC_ENOTLEADER);
  }
}

static void api_read_consistent(struct api_ctx *ctx, struct http_request *req, api_read_fn fn,
                                const struct api_query_opts *opts)
{
  struct api_barrier_batch *batch = &blocking_of(ctx)->barrier;
  struct api_barrier_op *op = xcalloc(1, sizeof *op);
  op->ctx = ctx;
  op->req = req;
  op->fn = fn;
  op->opts = *opts;
  op->next = batch->waiting;
  batch->waiting = op;
  http_request_on_cancel(req, api_barrier_cancel, op);
  if (!batch->running) api_barrier_start(ctx);
}

void api_read(struct api_ctx *ctx, struct http_request *req, api_read_fn fn)
{
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  if (!ctx->store) {
    http_respond_error(req, 500, "No known Consul servers");
    return;
  }
  if (opts.mode == API_CONSISTENCY_STALE) {
    api_read_now(ctx, req, fn, &opts);
    return;
  }
  if (api_require_leader(ctx, req)) return;
  if (opts.mode == API_CONSISTENCY_CONSISTENT) {
    api_read_consistent(ctx, req, fn, &opts);
    return;
  }
  api_read_now(ctx, req, fn, &opts);
}

void api__blocking_init(struct api_ctx *ctx)
{
  struct api_blocking *b = xcalloc(1, sizeof *b);
  map_init(&b->groups);
  uv_idle_init(ctx->loop, &b->idle);
  b->idle.data = ctx;
  ctx->blocking = b;
}

static void blocking_idle_closed(uv_handle_t *h)
{
  struct api_blocking *b = h->data;
  map_free(&b->groups);
  free(b);
}

/* Call after the HTTP server has closed: its close cancels every parked request (their cancel
 * callbacks free them), so nothing is parked any more and the engine can go. */
void api__blocking_shutdown(struct api_ctx *ctx)
{
  struct api_blocking *b = ctx->blocking;
  if (!b) return;
  ctx->blocking = NULL;
  b->closing = true;
  uv_idle_stop(&b->idle);
  b->idle.data = b;
  uv_close((uv_handle_t *)&b->idle, blocking_idle_closed);
}

size_t api_blocking_parked(struct api_ctx *ctx)
{
  struct api_blocking *b = blocking_of(ctx);
  return b ? b->parked : 0;
}
