/* test_local.c -- the agent's local services and checks (src/local): the StatusHandler
 * thresholds, definition decoding and Consul's validation messages, the HTTP API functions'
 * status codes, check runners on a real loop with short timings (TTL expiry, TCP, UDP, HTTP,
 * script, alias), maintenance mode, output coalescing, reaping, persistence across a restart,
 * and anti-entropy against a real state store through a fake (asynchronous) remote. */
#define _XOPEN_SOURCE 700 /* nftw */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <ftw.h>
#include <uv.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "local/internal.h"
#include "local/local.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/store.h"

/* ---- harness ---- */

/* A remote that applies commands to a real store, completing on a later loop turn (as Raft
 * does), and can pretend not to be the leader. */
struct fake_remote {
  uv_loop_t *loop;
  struct state_store *store;
  uint64_t index;
  int writes, refused;
  bool follower;
  uv_timer_t timer;
  struct pend {
    struct buf cmd;
    local_remote_done_fn done;
    void *arg;
  } q[4096];
  size_t nq;
};

static void fake_flush(uv_timer_t *t)
{
  struct fake_remote *f = t->data;
  size_t n = f->nq;
  struct pend *batch = xcalloc(n + 1, sizeof *batch);
  memcpy(batch, f->q, n * sizeof *batch);
  f->nq = 0;
  for (size_t i = 0; i < n; i++) {
    struct state_cmd_result res;
    memset(&res, 0, sizeof res);
    int rv = state_cmd_apply(f->store, ++f->index, batch[i].cmd.data, batch[i].cmd.len, &res);
    batch[i].done(batch[i].arg, rv, &res);
    buf_free(&batch[i].cmd);
  }
  free(batch);
}

static int fake_write(void *ctx, const struct buf *cmd, local_remote_done_fn done, void *arg)
{
  struct fake_remote *f = ctx;
  if (f->follower) {
    f->refused++;
    return CC_ENOTLEADER;
  }
  assert_true(f->nq < 4096);
  f->writes++;
  struct pend *p = &f->q[f->nq++];
  buf_init(&p->cmd);
  buf_append(&p->cmd, cmd->data, cmd->len);
  p->done = done;
  p->arg = arg;
  if (!uv_is_active((uv_handle_t *)&f->timer)) uv_timer_start(&f->timer, fake_flush, 1, 0);
  return 0;
}

static struct state_store *fake_store(void *ctx)
{
  return ((struct fake_remote *)ctx)->store;
}

struct env {
  uv_loop_t loop;
  struct fake_remote remote;
  struct local_agent *la;
  struct local_config cfg;
  char dir[64];
  bool closed;
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void env_start(struct env *e);

static void env_init(struct env *e, bool persist, bool scripts)
{
  uv_loop_init(&e->loop);
  e->remote.loop = &e->loop;
  e->remote.store = state_store_new();
  uv_timer_init(&e->loop, &e->remote.timer);
  e->remote.timer.data = &e->remote;
  local_config_defaults(&e->cfg);
  e->cfg.node_name = "node1";
  e->cfg.node_id = "11111111-2222-3333-4444-555555555555";
  e->cfg.datacenter = "dc1";
  e->cfg.advertise_addr = "127.0.0.1";
  e->cfg.check_min_interval_ms = 1;
  e->cfg.check_update_interval_ms = 0;
  e->cfg.enable_script_checks = scripts;
  if (persist) {
    if (!e->dir[0]) {
      snprintf(e->dir, sizeof e->dir, "/tmp/test-local-XXXXXX");
      assert_non_null(mkdtemp(e->dir));
    }
    e->cfg.data_dir = e->dir;
  }
}

static void env_start(struct env *e)
{
  char err[256];
  e->la = local_agent_new(&e->loop, &e->cfg, NULL, NULL, err, sizeof err);
  assert_non_null(e->la);
  struct local_remote r = {.write = fake_write, .store = fake_store, .ctx = &e->remote};
  local_agent_set_remote(e->la, &r);
}

static void env_open(struct env *e, bool persist, bool scripts)
{
  env_init(e, persist, scripts);
  env_start(e);
}

static void closed_cb(void *arg)
{
  ((struct env *)arg)->closed = true;
}

/* Closes the agent only (the store and the data dir stay, for a restart). */
static void env_stop_agent(struct env *e)
{
  local_agent_close(e->la, closed_cb, e);
  while (!e->closed) uv_run(&e->loop, UV_RUN_ONCE);
  e->closed = false;
  e->la = NULL;
}

static void walk_close(uv_handle_t *h, void *arg)
{
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void env_close(struct env *e)
{
  if (e->la) env_stop_agent(e);
  uv_timer_stop(&e->remote.timer);
  fake_flush(&e->remote.timer); /* nothing may be left pending */
  uv_close((uv_handle_t *)&e->remote.timer, NULL);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  uv_walk(&e->loop, walk_close, NULL);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  state_store_free(e->remote.store);
  if (e->dir[0]) nftw(e->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void load(struct env *e)
{
  char err[256];
  assert_int_equal(local_agent_load(e->la, NULL, err, sizeof err), 0);
}

/* Runs the loop until pred holds or ms pass. */
struct wait {
  bool expired;
};

static void wait_timeout(uv_timer_t *t)
{
  ((struct wait *)t->data)->expired = true;
}

static bool run_until(struct env *e, bool (*pred)(struct env *, const void *), const void *arg,
                      uint64_t ms)
{
  struct wait w = {false};
  uv_timer_t t;
  uv_timer_init(&e->loop, &t);
  t.data = &w;
  uv_timer_start(&t, wait_timeout, ms, 0);
  bool ok = pred(e, arg);
  while (!ok && !w.expired) {
    uv_run(&e->loop, UV_RUN_ONCE);
    ok = pred(e, arg);
  }
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&e->loop, UV_RUN_NOWAIT);
  return ok;
}

static void run_for(struct env *e, uint64_t ms)
{
  struct wait w = {false};
  uv_timer_t t;
  uv_timer_init(&e->loop, &t);
  t.data = &w;
  uv_timer_start(&t, wait_timeout, ms, 0);
  while (!w.expired) uv_run(&e->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&e->loop, UV_RUN_NOWAIT);
}

static int reg_service(struct env *e, const char *json, char *err, size_t errlen)
{
  return local_service_register(e->la, json, strlen(json), false, "", err, errlen);
}

static int reg_check(struct env *e, const char *json, char *err, size_t errlen)
{
  return local_check_register(e->la, json, strlen(json), "", err, errlen);
}

/* A check's field from /v1/agent/checks. */
static const char *check_field(struct env *e, const char *id, const char *field)
{
  static char out[8192];
  json_t *all = local_checks_json(e->la);
  json_t *v = json_object_get(json_object_get(all, id), field);
  snprintf(out, sizeof out, "%s", json_is_string(v) ? json_string_value(v) : "<none>");
  json_decref(all);
  return out;
}

struct status_want {
  const char *id, *status;
};

static bool check_has_status(struct env *e, const void *arg)
{
  const struct status_want *w = arg;
  return strcmp(check_field(e, w->id, "Status"), w->status) == 0;
}

static bool wait_status(struct env *e, const char *id, const char *status, uint64_t ms)
{
  struct status_want w = {id, status};
  return run_until(e, check_has_status, &w, ms);
}

static bool synced(struct env *e, const void *arg)
{
  (void)arg;
  for (struct map_iter it = map_iter_start(&e->la->services); map_iter_next(&it);) {
    struct local_svc *s = it.entry->value;
    if (!s->in_sync || s->deleted || s->inflight) return false;
  }
  for (struct map_iter it = map_iter_start(&e->la->checks); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (!c->in_sync || c->deleted || c->inflight) return false;
  }
  return e->remote.nq == 0;
}

static bool wait_synced(struct env *e)
{
  return run_until(e, synced, NULL, 3000);
}

/* ---- StatusHandler ---- */

static void test_status_handler_defaults(void **state)
{
  (void)state;
  struct local_status_handler h;
  local__status_handler_init(&h, 0, 0, 0);
  assert_string_equal(local__status_handler_update(&h, "passing"), "passing");
  assert_string_equal(local__status_handler_update(&h, "critical"), "critical");
  assert_string_equal(local__status_handler_update(&h, "warning"), "warning");
}

static void test_status_handler_thresholds(void **state)
{
  (void)state;
  /* SuccessBeforePassing 2, FailuresBeforeWarning 1, FailuresBeforeCritical 3 (Consul's
   * TestStatusHandlerUpdateStatusAfterWarning...). The first result is reported at once. */
  struct local_status_handler h;
  local__status_handler_init(&h, 2, 1, 3);
  assert_string_equal(local__status_handler_update(&h, "passing"), "passing");
  assert_string_equal(local__status_handler_update(&h, "critical"), "warning");
  assert_string_equal(local__status_handler_update(&h, "critical"), "warning");
  assert_string_equal(local__status_handler_update(&h, "critical"), "critical");
  assert_null(local__status_handler_update(&h, "passing"));
  assert_string_equal(local__status_handler_update(&h, "passing"), "passing");
  /* One failure after passing stays unreported only below the warning threshold. */
  struct local_status_handler h2;
  local__status_handler_init(&h2, 0, 2, 2);
  assert_string_equal(local__status_handler_update(&h2, "critical"), "critical");
  assert_string_equal(local__status_handler_update(&h2, "passing"), "passing");
  assert_null(local__status_handler_update(&h2, "critical"));
  assert_string_equal(local__status_handler_update(&h2, "critical"), "critical");
}

/* ---- definitions ---- */

static json_t *J(const char *text)
{
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  assert_non_null(j);
  return j;
}

static void test_defs_python_consul_shapes(void **state)
{
  (void)state;
  char err[512];
  /* python-consul sends lowercase keys for checks; Go matches them case-insensitively. */
  json_t *j = J("{\"Name\":\"web\",\"ID\":\"web1\",\"Port\":8080,\"Tags\":[\"a\",\"b\"],"
                "\"Check\":{\"http\":\"http://127.0.0.1:1/\",\"interval\":\"10s\",\"timeout\":\"1s\","
                "\"DeregisterCriticalServiceAfter\":\"90m\"},"
                "\"Checks\":[{\"ttl\":\"15s\",\"CheckID\":\"t\"},{\"args\":[\"/bin/true\"],\"interval\":1000000000}],"
                "\"enable_tag_override\":true,\"Meta\":{\"v\":\"1\"}}");
  struct local_service_def *d = local__service_def_decode(j, err, sizeof err);
  json_decref(j);
  assert_non_null(d);
  assert_string_equal(d->id, "web1");
  assert_int_equal(d->port, 8080);
  assert_int_equal(d->n_tags, 2);
  assert_true(d->enable_tag_override);
  assert_int_equal(d->n_meta, 1);
  assert_int_equal(d->n_checks, 3);
  assert_string_equal(d->checks[0]->http, "http://127.0.0.1:1/");
  assert_int_equal(d->checks[0]->interval, 10000000000LL);
  assert_int_equal(d->checks[0]->dcsa, 90LL * 60 * 1000000000LL);
  assert_string_equal(local__check_def_type(d->checks[0]), "http");
  assert_string_equal(local__check_def_type(d->checks[1]), "ttl");
  assert_string_equal(d->checks[1]->id, "t");
  assert_string_equal(local__check_def_type(d->checks[2]), "script");
  char *text = local__definition_text(d->checks[0]);
  assert_string_equal(text, "{\"Interval\":\"10s\",\"Timeout\":\"1s\","
                            "\"DeregisterCriticalServiceAfter\":\"1h30m0s\",\"HTTP\":\"http://127.0.0.1:1/\"}");
  free(text);
  local__service_def_free(d);
}

static void test_defs_errors(void **state)
{
  (void)state;
  char err[512];
  json_t *j = J("{\"Name\":\"web\",\"Port\":\"80\"}");
  assert_null(local__service_def_decode(j, err, sizeof err));
  assert_string_equal(err, "json: cannot unmarshal string into Go struct field "
                           "ServiceDefinition.Port of type int");
  json_decref(j);
  j = J("{\"Name\":\"c\",\"TTL\":\"ten\"}");
  assert_null(local__check_def_decode(j, "CheckDefinition", err, sizeof err));
  assert_string_equal(err, "time: invalid duration \"ten\"");
  json_decref(j);
  /* CheckType.Validate. */
  const char *cases[][2] = {
      {"{\"HTTP\":\"http://x/\"}", "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"},
      {"{\"TTL\":\"1s\",\"Interval\":\"1s\"}", "Interval and TTL cannot both be specified"},
      {"{}", "TTL must be > 0 for TTL checks"},
      {"{\"AliasService\":\"x\",\"TTL\":\"1s\"}", "TTL must be not be set for Alias checks"},
      {"{\"TTL\":\"1s\",\"FailuresBeforeWarning\":2}", "FailuresBeforeWarning can't be higher than FailuresBeforeCritical"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    j = J(cases[i][0]);
    struct local_check_def *c = local__check_def_decode(j, "CheckType", err, sizeof err);
    assert_non_null(c);
    assert_int_equal(local__check_def_validate(c, err, sizeof err), -1);
    assert_string_equal(err, cases[i][1]);
    local__check_def_free(c);
    json_decref(j);
  }
  struct state_pair bad[] = {{"consul-x", "v"}};
  assert_int_equal(local__meta_validate(bad, 1, err, sizeof err), -1);
  assert_string_equal(err, "Couldn't load metadata pair ('consul-x', 'v'): Key prefix 'consul-' "
                           "is reserved for internal use");
}

static void test_defs_config_files(void **state)
{
  (void)state;
  char err[512];
  struct local_defs *d = local_defs_new();
  json_t *doc = J("{\"service\":{\"name\":\"a\",\"port\":1,\"check\":{\"ttl\":\"5s\"}},"
                  "\"services\":[{\"name\":\"b\",\"checks\":[{\"tcp\":\"127.0.0.1:1\",\"interval\":\"5s\"}]}],"
                  "\"check\":{\"id\":\"mem\",\"name\":\"Memory\",\"args\":[\"/bin/true\"],\"interval\":\"10s\"},"
                  "\"datacenter\":\"ignored\"}");
  assert_int_equal(local_defs_add_config(d, doc, "f.json", err, sizeof err), 0);
  json_decref(doc);
  assert_int_equal(local_defs_count(d), 3);
  doc = J("{\"service\":{\"name\":\"c\",\"check\":{\"http\":\"http://x/\"}}}");
  assert_int_equal(local_defs_add_config(d, doc, "g.json", err, sizeof err), -1);
  assert_string_equal(err, "g.json: Failed to validate checks for service \"c\": Interval must be "
                           "> 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks");
  json_decref(doc);
  doc = J("{\"services\":{\"name\":\"x\"}}");
  assert_int_equal(local_defs_add_config(d, doc, "h.json", err, sizeof err), -1);
  json_decref(doc);
  assert_int_equal(local_defs_count(d), 3); /* failed documents add nothing */
  local_defs_free(d);
}

/* ---- the API functions ---- */

static void test_api_errors(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024];
  assert_int_equal(reg_service(&e, "", err, sizeof err), 400);
  assert_string_equal(err, "Request decode failed: EOF");
  assert_int_equal(reg_service(&e, "{\"Port\":1}", err, sizeof err), 400);
  assert_string_equal(err, "Missing service name");
  assert_int_equal(reg_service(&e, "{\"Name\":\"a\",\"Address\":\"0.0.0.0\"}", err, sizeof err), 400);
  assert_string_equal(err, "Invalid service address");
  assert_int_equal(reg_service(&e, "{\"Name\":\"a\",\"Weights\":{\"Passing\":0}}", err, sizeof err), 400);
  assert_string_equal(err, "Invalid Weights: Passing must be greater than 0");
  assert_int_equal(reg_service(&e, "{\"Name\":\"a\",\"Check\":{\"TTL\":\"1s\",\"Status\":\"bogus\"}}", err,
                               sizeof err),
                   400);
  assert_string_equal(err, "Status for checks must 'passing', 'warning', 'critical'");
  assert_int_equal(reg_service(&e, "{\"Name\":\"a\",\"Check\":{\"Interval\":\"1s\",\"Args\":[\"/bin/true\"]}}",
                               err, sizeof err),
                   500);
  assert_string_equal(err, "Scripts are disabled on this agent from remote calls; to enable, "
                           "configure 'enable_script_checks' to true");
  assert_int_equal(local_service_deregister(e.la, "nope", err, sizeof err), 404);
  assert_string_equal(err, "Unknown service ID \"nope\". Ensure that the service ID is passed, not "
                           "the service name.");
  assert_int_equal(reg_check(&e, "{\"TTL\":\"1s\"}", err, sizeof err), 400);
  assert_string_equal(err, "Missing check name");
  assert_int_equal(reg_check(&e, "{\"Name\":\"c\",\"Status\":\"up\",\"TTL\":\"1s\"}", err, sizeof err), 400);
  assert_string_equal(err, "Bad check status");
  assert_int_equal(reg_check(&e, "{\"Name\":\"c\"}", err, sizeof err), 400);
  assert_string_equal(err, "Invalid check: TTL must be > 0 for TTL checks");
  assert_int_equal(reg_check(&e, "{\"Name\":\"c\",\"TTL\":\"1s\",\"ServiceID\":\"nope\"}", err, sizeof err), 404);
  assert_string_equal(err, "ServiceID \"nope\" does not exist");
  assert_int_equal(local_check_update(e.la, "nope", "passing", "", err, sizeof err), 404);
  assert_string_equal(err, "Unknown check ID \"nope\". Ensure that the check ID is passed, not the "
                           "check name.");
  assert_int_equal(reg_check(&e, "{\"Name\":\"tcp\",\"TCP\":\"127.0.0.1:1\",\"Interval\":\"1h\"}", err,
                             sizeof err),
                   0);
  assert_int_equal(local_check_update(e.la, "tcp", "passing", "", err, sizeof err), 500);
  assert_string_equal(err, "CheckID \"tcp\" does not have associated TTL");
  assert_int_equal(local_check_deregister(e.la, "nope", err, sizeof err), 404);
  assert_int_equal(local_service_maintenance(e.la, "nope", true, "", err, sizeof err), 404);
  env_close(&e);
}

static void test_register_shapes(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024];
  assert_int_equal(reg_service(&e, "{\"Name\":\"web\",\"Address\":\"10.1.2.3\",\"Port\":80,"
                                   "\"Checks\":[{\"TTL\":\"30s\"},{\"TTL\":\"30s\",\"Name\":\"second\"}]}",
                               err, sizeof err),
                   0);
  json_t *svcs = local_services_json(e.la);
  json_t *web = json_object_get(svcs, "web");
  assert_non_null(web);
  assert_string_equal(json_string_value(json_object_get(web, "Service")), "web");
  assert_int_equal(json_array_size(json_object_get(web, "Tags")), 0);
  json_t *ta = json_object_get(web, "TaggedAddresses");
  assert_string_equal(json_string_value(json_object_get(json_object_get(ta, "lan_ipv4"), "Address")),
                      "10.1.2.3");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(web, "Weights"), "Passing")), 1);
  assert_string_equal(json_string_value(json_object_get(web, "Datacenter")), "dc1");
  json_decref(svcs);
  /* Two checks: service:web:1 and service:web:2, critical until told otherwise. */
  assert_string_equal(check_field(&e, "service:web:1", "Name"), "Service 'web' check");
  assert_string_equal(check_field(&e, "service:web:2", "Name"), "second");
  assert_string_equal(check_field(&e, "service:web:1", "Status"), "critical");
  assert_string_equal(check_field(&e, "service:web:1", "Type"), "ttl");
  json_t *one = local_service_json(e.la, "web");
  assert_non_null(json_object_get(one, "ContentHash"));
  json_decref(one);
  assert_null(local_service_json(e.la, "nope"));
  /* Re-registering with ?replace-existing-checks drops the checks it does not name. */
  const char *again = "{\"Name\":\"web\",\"Address\":\"10.1.2.3\",\"Port\":80,\"Check\":{\"TTL\":\"30s\"}}";
  assert_int_equal(local_service_register(e.la, again, strlen(again), true, "", err, sizeof err), 0);
  assert_string_equal(check_field(&e, "service:web", "Status"), "critical");
  assert_string_equal(check_field(&e, "service:web:1", "Status"), "<none>");
  assert_string_equal(check_field(&e, "service:web:2", "Status"), "<none>");
  /* Deregistering the service takes its checks. */
  assert_int_equal(local_service_deregister(e.la, "web", err, sizeof err), 0);
  assert_string_equal(check_field(&e, "service:web", "Status"), "<none>");
  svcs = local_services_json(e.la);
  assert_int_equal(json_object_size(svcs), 0);
  json_decref(svcs);
  env_close(&e);
}

/* ---- runners ---- */

static void test_ttl_expiry_and_updates(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024];
  assert_int_equal(reg_check(&e, "{\"Name\":\"ttl\",\"TTL\":\"80ms\",\"Status\":\"passing\"}", err, sizeof err), 0);
  assert_string_equal(check_field(&e, "ttl", "Status"), "passing");
  assert_string_equal(check_field(&e, "ttl", "Interval"), "0s");
  assert_true(wait_status(&e, "ttl", "critical", 2000));
  assert_string_equal(check_field(&e, "ttl", "Output"), "TTL expired");
  assert_int_equal(local_check_update(e.la, "ttl", "passing", "all good", err, sizeof err), 0);
  assert_string_equal(check_field(&e, "ttl", "Status"), "passing");
  assert_string_equal(check_field(&e, "ttl", "Output"), "all good");
  assert_true(wait_status(&e, "ttl", "critical", 2000));
  assert_string_equal(check_field(&e, "ttl", "Output"),
                      "TTL expired (last output before timeout follows): all good");
  /* Outputs over the cap are cut with Consul's note. */
  char *big = xmalloc(5001);
  memset(big, 'x', 5000);
  big[5000] = '\0';
  assert_int_equal(local_check_update(e.la, "ttl", "warning", big, err, sizeof err), 0);
  const char *out = check_field(&e, "ttl", "Output");
  assert_int_equal(strlen(out), 4096 + strlen(" ... (captured 4096 of 5000 bytes)"));
  assert_non_null(strstr(out, " ... (captured 4096 of 5000 bytes)"));
  free(big);
  env_close(&e);
}

/* A TCP listener answering HTTP with a fixed status, for HTTP checks. */
struct http_srv {
  uv_tcp_t tcp;
  int port;
  int status;
  int hits;
  char last_request[4096];
};

struct http_conn {
  uv_tcp_t tcp;
  struct http_srv *srv;
  uv_write_t w;
  char resp[512];
};

static void conn_closed(uv_handle_t *h)
{
  free(h->data);
}

static void srv_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
  (void)h;
  b->base = xmalloc(s);
  b->len = s;
}

static void srv_written(uv_write_t *w, int status)
{
  (void)status;
  struct http_conn *c = w->data;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
  struct http_conn *c = s->data;
  if (n > 0 && strstr(b->base, "\r\n\r\n") == NULL && (size_t)n < sizeof c->srv->last_request) {
    /* wait for the rest (requests here are small) */
  }
  if (n > 0) {
    snprintf(c->srv->last_request, sizeof c->srv->last_request, "%.*s", (int)n, b->base);
    c->srv->hits++;
    const char *body = c->srv->status == 200 ? "hello" : "nope";
    if (strncmp(b->base, "GET /redir ", 11) == 0)
      snprintf(c->resp, sizeof c->resp,
               "HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 0\r\n\r\n");
    else
    snprintf(c->resp, sizeof c->resp, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n\r\n%s",
             c->srv->status, c->srv->status == 200 ? "OK" : c->srv->status == 429 ? "Too Many Requests"
                                                                                  : "Service Unavailable",
             strlen(body), body);
    uv_read_stop(s);
    uv_buf_t out = uv_buf_init(c->resp, (unsigned)strlen(c->resp));
    c->w.data = c;
    uv_write(&c->w, s, &out, 1, srv_written);
  } else if (n < 0) {
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
  }
  free(b->base);
}

static void srv_conn(uv_stream_t *server, int status)
{
  assert_int_equal(status, 0);
  struct http_srv *srv = server->data;
  struct http_conn *c = xcalloc(1, sizeof *c);
  c->srv = srv;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
  uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static void srv_start(struct env *e, struct http_srv *srv)
{
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(&e->loop, &srv->tcp);
  srv->tcp.data = srv;
  assert_int_equal(uv_tcp_bind(&srv->tcp, (struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&srv->tcp, 16, srv_conn), 0);
  struct sockaddr_in got;
  int len = sizeof got;
  uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&got, &len);
  srv->port = ntohs(got.sin_port);
}

static void test_http_check(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  struct http_srv srv = {.status = 200};
  srv_start(&e, &srv);
  char err[1024], body[512];
  snprintf(body, sizeof body,
           "{\"Name\":\"h\",\"HTTP\":\"http://127.0.0.1:%d/health?x=1\",\"Interval\":\"30ms\","
           "\"Header\":{\"X-Test\":[\"yes\"]},\"Method\":\"POST\",\"Body\":\"ping\"}",
           srv.port);
  assert_int_equal(reg_check(&e, body, err, sizeof err), 0);
  assert_true(wait_status(&e, "h", "passing", 3000));
  char want[256];
  snprintf(want, sizeof want, "HTTP POST http://127.0.0.1:%d/health?x=1: 200 OK Output: hello", srv.port);
  assert_string_equal(check_field(&e, "h", "Output"), want);
  assert_non_null(strstr(srv.last_request, "POST /health?x=1 HTTP/1.1\r\n"));
  assert_non_null(strstr(srv.last_request, "X-Test: yes\r\n"));
  assert_non_null(strstr(srv.last_request, "User-Agent: Consul Health Check\r\n"));
  assert_non_null(strstr(srv.last_request, "\r\n\r\nping"));
  srv.status = 429;
  assert_true(wait_status(&e, "h", "warning", 3000));
  srv.status = 503;
  assert_true(wait_status(&e, "h", "critical", 3000));
  uv_close((uv_handle_t *)&srv.tcp, NULL);
  /* Nobody listening: Go's words. */
  snprintf(body, sizeof body,
           "{\"Name\":\"h2\",\"HTTP\":\"http://127.0.0.1:%d/\",\"Interval\":\"30ms\",\"Status\":\"passing\"}",
           srv.port);
  assert_int_equal(reg_check(&e, body, err, sizeof err), 0);
  assert_true(wait_status(&e, "h2", "critical", 3000));
  snprintf(want, sizeof want,
           "Post \"http://127.0.0.1:%d/\": dial tcp 127.0.0.1:%d: connect: connection refused",
           srv.port, srv.port);
  /* (method defaults to GET) */
  snprintf(want, sizeof want,
           "Get \"http://127.0.0.1:%d/\": dial tcp 127.0.0.1:%d: connect: connection refused", srv.port,
           srv.port);
  assert_string_equal(check_field(&e, "h2", "Output"), want);
  env_close(&e);
}

static void test_http_redirects(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  struct http_srv srv = {.status = 200};
  srv_start(&e, &srv);
  char err[1024], body[512], want[256];
  /* Go's client follows redirects: the check reports the final answer... */
  snprintf(body, sizeof body, "{\"Name\":\"r\",\"HTTP\":\"http://127.0.0.1:%d/redir\",\"Interval\":\"30ms\"}",
           srv.port);
  assert_int_equal(reg_check(&e, body, err, sizeof err), 0);
  assert_true(wait_status(&e, "r", "passing", 3000));
  snprintf(want, sizeof want, "HTTP GET http://127.0.0.1:%d/redir: 200 OK Output: hello", srv.port);
  assert_string_equal(check_field(&e, "r", "Output"), want);
  assert_non_null(strstr(srv.last_request, "GET /final HTTP/1.1"));
  /* ...unless DisableRedirects: a 302 is then critical. */
  snprintf(body, sizeof body,
           "{\"Name\":\"nr\",\"HTTP\":\"http://127.0.0.1:%d/redir\",\"Interval\":\"30ms\","
           "\"DisableRedirects\":true,\"Status\":\"passing\"}",
           srv.port);
  assert_int_equal(reg_check(&e, body, err, sizeof err), 0);
  assert_true(wait_status(&e, "nr", "critical", 3000));
  snprintf(want, sizeof want, "HTTP GET http://127.0.0.1:%d/redir: 302 Found Output: ", srv.port);
  assert_string_equal(check_field(&e, "nr", "Output"), want);
  uv_close((uv_handle_t *)&srv.tcp, NULL);
  env_close(&e);
}

/* https goes through the same dial path (TLS itself: test_local_httpc.c). */
static void test_http_https_refused(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024];
  assert_int_equal(reg_check(&e, "{\"Name\":\"h3\",\"HTTP\":\"https://127.0.0.1:1/\",\"Interval\":\"30ms\","
                                 "\"Status\":\"passing\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "h3", "critical", 3000));
  assert_string_equal(check_field(&e, "h3", "Output"),
                      "Get \"https://127.0.0.1:1/\": dial tcp 127.0.0.1:1: connect: connection refused");
  env_close(&e);
}

static void test_tcp_and_udp_checks(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  struct http_srv srv = {.status = 200};
  srv_start(&e, &srv);
  uv_udp_t quiet; /* a UDP socket that never answers */
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_udp_init(&e.loop, &quiet);
  assert_int_equal(uv_udp_bind(&quiet, (struct sockaddr *)&a, 0), 0);
  struct sockaddr_in got;
  int len = sizeof got;
  uv_udp_getsockname(&quiet, (struct sockaddr *)&got, &len);
  int udp_port = ntohs(got.sin_port);
  char err[1024], body[512], want[256];
  snprintf(body, sizeof body, "{\"Name\":\"t\",\"TCP\":\"127.0.0.1:%d\",\"Interval\":\"30ms\"}", srv.port);
  assert_int_equal(reg_check(&e, body, err, sizeof err), 0);
  assert_true(wait_status(&e, "t", "passing", 3000));
  snprintf(want, sizeof want, "TCP connect 127.0.0.1:%d: Success", srv.port);
  assert_string_equal(check_field(&e, "t", "Output"), want);
  uv_close((uv_handle_t *)&srv.tcp, NULL);
  assert_true(wait_status(&e, "t", "critical", 3000));
  snprintf(want, sizeof want, "dial tcp 127.0.0.1:%d: connect: connection refused", srv.port);
  assert_string_equal(check_field(&e, "t", "Output"), want);
  assert_int_equal(reg_check(&e, "{\"Name\":\"bad\",\"TCP\":\"nocolon\",\"Interval\":\"30ms\",\"Status\":\"passing\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "bad", "critical", 3000));
  assert_string_equal(check_field(&e, "bad", "Output"),
                      "dial tcp: address nocolon: missing port in address");
  /* UDP: silence within the timeout passes; a closed port's ICMP error fails. */
  snprintf(body, sizeof body,
           "{\"Name\":\"u\",\"UDP\":\"127.0.0.1:%d\",\"Interval\":\"30ms\",\"Timeout\":\"50ms\"}", udp_port);
  assert_int_equal(reg_check(&e, body, err, sizeof err), 0);
  assert_true(wait_status(&e, "u", "passing", 3000));
  uv_close((uv_handle_t *)&quiet, NULL);
  assert_true(wait_status(&e, "u", "critical", 3000));
  assert_non_null(strstr(check_field(&e, "u", "Output"), "connection refused"));
  env_close(&e);
}

static void test_script_checks(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, true);
  load(&e);
  char err[1024];
  assert_int_equal(reg_check(&e, "{\"Name\":\"s1\",\"Args\":[\"/bin/sh\",\"-c\",\"echo hi; exit 1\"],"
                                 "\"Interval\":\"50ms\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "s1", "warning", 3000));
  assert_string_equal(check_field(&e, "s1", "Output"), "hi\n");
  assert_int_equal(reg_check(&e, "{\"Name\":\"s2\",\"Args\":[\"/bin/sh\",\"-c\",\"exit 0\"],\"Interval\":\"50ms\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "s2", "passing", 3000));
  assert_int_equal(reg_check(&e, "{\"Name\":\"s3\",\"Args\":[\"/bin/sh\",\"-c\",\"exit 3\"],\"Interval\":\"50ms\","
                                 "\"Status\":\"passing\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "s3", "critical", 3000));
  /* Too much output is cut to the last 4 KiB with Consul's note. */
  assert_int_equal(reg_check(&e, "{\"Name\":\"s4\",\"Args\":[\"/bin/sh\",\"-c\",\"head -c 10000 /dev/zero | tr '\\\\0' x\"],"
                                 "\"Interval\":\"50ms\",\"Status\":\"critical\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "s4", "passing", 3000));
  assert_int_equal(strncmp(check_field(&e, "s4", "Output"), "Captured 4096 of 10000 bytes\n...\nxxx", 36), 0);
  /* A script that outlives its timeout is killed (with its children) and goes critical. */
  assert_int_equal(reg_check(&e, "{\"Name\":\"s5\",\"Args\":[\"/bin/sh\",\"-c\",\"echo start; sleep 30\"],"
                                 "\"Interval\":\"200ms\",\"Timeout\":\"100ms\",\"Status\":\"passing\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "s5", "critical", 5000));
  assert_string_equal(check_field(&e, "s5", "Output"), "Timed out (100ms) running check\n\nstart\n");
  assert_int_equal(reg_check(&e, "{\"Name\":\"s6\",\"Args\":[\"/nonexistent/x\"],\"Interval\":\"50ms\","
                                 "\"Status\":\"passing\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "s6", "critical", 3000));
  assert_string_equal(check_field(&e, "s6", "Output"),
                      "exec: \"/nonexistent/x\": executable file not found in $PATH");
  env_close(&e);
}

static void test_alias_remote_node(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024];
  struct state_register_check chk = {.check_id = "disk", .name = "disk", .status = "passing"};
  struct state_register reg = {.node = "node2", .address = "10.0.0.2", .datacenter = "dc1",
                               .checks = &chk, .n_checks = 1};
  assert_int_equal(state_catalog_register(e.remote.store, ++e.remote.index, &reg, err, sizeof err), 0);
  assert_int_equal(reg_check(&e, "{\"Name\":\"other\",\"AliasNode\":\"node2\"}", err, sizeof err), 0);
  assert_true(wait_status(&e, "other", "passing", 2000));
  assert_string_equal(check_field(&e, "other", "Output"), "All checks passing.");
  /* The other node's check turns critical in the catalog: the alias follows (a store watch). */
  chk.status = "critical";
  chk.output = "full";
  assert_int_equal(state_catalog_register(e.remote.store, ++e.remote.index, &reg, err, sizeof err), 0);
  assert_true(wait_status(&e, "other", "critical", 2000));
  assert_string_equal(check_field(&e, "other", "Output"), "Aliased check \"disk\" failing: full");
  assert_int_equal(reg_check(&e, "{\"Name\":\"svc\",\"AliasNode\":\"node2\",\"AliasService\":\"web\"}",
                             err, sizeof err),
                   0);
  assert_true(wait_status(&e, "svc", "critical", 2000));
  env_close(&e);
}

static void test_alias_and_maintenance(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024];
  assert_int_equal(reg_service(&e, "{\"Name\":\"db\",\"Check\":{\"TTL\":\"1h\",\"Status\":\"passing\"}}", err,
                               sizeof err),
                   0);
  assert_int_equal(reg_check(&e, "{\"Name\":\"alias\",\"AliasService\":\"db\"}", err, sizeof err), 0);
  assert_true(wait_status(&e, "alias", "passing", 2000));
  assert_string_equal(check_field(&e, "alias", "Output"), "All checks passing.");
  assert_int_equal(local_check_update(e.la, "service:db", "critical", "down", err, sizeof err), 0);
  assert_true(wait_status(&e, "alias", "critical", 2000));
  assert_string_equal(check_field(&e, "alias", "Output"), "Aliased check \"Service 'db' check\" failing: down");
  /* Maintenance: a critical check with Consul's name and notes. */
  assert_int_equal(local_service_maintenance(e.la, "db", true, "", err, sizeof err), 0);
  assert_string_equal(check_field(&e, "_service_maintenance:db", "Name"), "Service Maintenance Mode");
  assert_string_equal(check_field(&e, "_service_maintenance:db", "Notes"),
                      "Maintenance mode is enabled for this service, but no reason was provided. "
                      "This is a default message.");
  assert_string_equal(check_field(&e, "_service_maintenance:db", "Type"), "maintenance");
  assert_int_equal(local_node_maintenance(e.la, true, "patching", err, sizeof err), 0);
  assert_string_equal(check_field(&e, "_node_maintenance", "Notes"), "patching");
  assert_string_equal(check_field(&e, "_node_maintenance", "Status"), "critical");
  assert_int_equal(local_node_maintenance(e.la, false, NULL, err, sizeof err), 0);
  assert_string_equal(check_field(&e, "_node_maintenance", "Status"), "<none>");
  assert_int_equal(local_service_maintenance(e.la, "db", false, NULL, err, sizeof err), 0);
  assert_string_equal(check_field(&e, "_service_maintenance:db", "Status"), "<none>");
  /* The aliased service goes: the alias says so. */
  assert_int_equal(local_service_deregister(e.la, "db", err, sizeof err), 0);
  assert_true(wait_status(&e, "alias", "critical", 2000));
  assert_string_equal(check_field(&e, "alias", "Output"), "Service db could not be found on node node1");
  env_close(&e);
}

/* ---- anti-entropy ---- */

static void test_sync_to_catalog(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024];
  assert_int_equal(reg_service(&e, "{\"Name\":\"web\",\"Port\":80,\"Tags\":[\"x\"],\"Check\":{\"TTL\":\"1h\"}}",
                               err, sizeof err),
                   0);
  assert_true(wait_synced(&e));
  const struct state_service *s = state_service_get(e.remote.store, "node1", "web");
  assert_non_null(s);
  assert_int_equal(s->port, 80);
  const struct state_check *c = state_check_get(e.remote.store, "node1", "service:web");
  assert_non_null(c);
  assert_string_equal(c->status, "critical");
  assert_string_equal(c->service_name, "web");
  /* A status change syncs at once. */
  int writes = e.remote.writes;
  assert_int_equal(local_check_update(e.la, "service:web", "passing", "ok", err, sizeof err), 0);
  assert_true(wait_synced(&e));
  assert_string_equal(state_check_get(e.remote.store, "node1", "service:web")->status, "passing");
  assert_true(e.remote.writes > writes);
  /* Not leader: refused and retried later; nothing is lost. */
  e.remote.follower = true;
  assert_int_equal(local_check_update(e.la, "service:web", "warning", "meh", err, sizeof err), 0);
  run_for(&e, 50);
  assert_true(e.remote.refused > 0);
  assert_string_equal(state_check_get(e.remote.store, "node1", "service:web")->status, "passing");
  e.remote.follower = false;
  local__sync_full(e.la);
  assert_true(wait_synced(&e));
  assert_string_equal(state_check_get(e.remote.store, "node1", "service:web")->status, "warning");
  /* A full sync removes what the catalog has for this node and the agent does not, except
   * serfHealth and the "consul" service, which are the leader's. */
  struct state_register_service foreign = {.id = "stale", .name = "stale", .tags_null = true,
                                           .meta = {NULL, 0, true}};
  struct state_register_service consul = {.id = "consul", .name = "consul", .tags_null = true,
                                          .meta = {NULL, 0, true}};
  struct state_register_check serf = {.check_id = "serfHealth", .name = "Serf Health Status",
                                      .status = "passing"};
  struct state_register reg = {.node = "node1", .address = "127.0.0.1", .datacenter = "dc1",
                               .service = &foreign, .skip_node_update = true};
  assert_int_equal(state_catalog_register(e.remote.store, ++e.remote.index, &reg, err, sizeof err), 0);
  reg.service = &consul;
  reg.checks = &serf;
  reg.n_checks = 1;
  assert_int_equal(state_catalog_register(e.remote.store, ++e.remote.index, &reg, err, sizeof err), 0);
  assert_int_equal(state_service_count(e.remote.store), 3);
  local__sync_full(e.la);
  assert_true(wait_synced(&e));
  assert_null(state_service_get(e.remote.store, "node1", "stale"));
  assert_non_null(state_service_get(e.remote.store, "node1", "consul"));
  assert_non_null(state_check_get(e.remote.store, "node1", "serfHealth"));
  /* Deregistering removes it from the catalog. */
  assert_int_equal(local_service_deregister(e.la, "web", err, sizeof err), 0);
  assert_true(wait_synced(&e));
  assert_null(state_service_get(e.remote.store, "node1", "web"));
  assert_null(state_check_get(e.remote.store, "node1", "service:web"));
  env_close(&e);
}

static void test_output_coalescing(void **state)
{
  (void)state;
  struct env e = {0};
  env_init(&e, false, false);
  e.cfg.check_update_interval_ms = 60000;
  env_start(&e);
  load(&e);
  char err[1024];
  assert_int_equal(reg_check(&e, "{\"Name\":\"c\",\"TTL\":\"1h\",\"Status\":\"passing\"}", err, sizeof err), 0);
  assert_true(wait_synced(&e));
  int writes = e.remote.writes;
  /* Output-only changes stay local for a while (check_update_interval)... */
  assert_int_equal(local_check_update(e.la, "c", "passing", "one", err, sizeof err), 0);
  assert_int_equal(local_check_update(e.la, "c", "passing", "two", err, sizeof err), 0);
  run_for(&e, 50);
  assert_int_equal(e.remote.writes, writes);
  assert_string_equal(check_field(&e, "c", "Output"), "two");
  /* ...a status change goes at once. */
  assert_int_equal(local_check_update(e.la, "c", "critical", "three", err, sizeof err), 0);
  assert_true(wait_synced(&e));
  assert_int_equal(e.remote.writes, writes + 1);
  assert_string_equal(state_check_get(e.remote.store, "node1", "c")->output, "three");
  env_close(&e);
}

static void test_reap_critical_service(void **state)
{
  (void)state;
  struct env e = {0};
  env_init(&e, false, false);
  e.cfg.check_reap_interval_ms = 20;
  e.cfg.check_deregister_interval_min_ms = 50;
  env_start(&e);
  load(&e);
  char err[1024];
  assert_int_equal(reg_service(&e, "{\"Name\":\"gone\",\"Check\":{\"TTL\":\"1h\",\"Status\":\"passing\","
                                   "\"DeregisterCriticalServiceAfter\":\"10ms\"}}",
                               err, sizeof err),
                   0);
  run_for(&e, 150);
  json_t *svcs = local_services_json(e.la);
  assert_int_equal(json_object_size(svcs), 1); /* passing: stays */
  json_decref(svcs);
  assert_int_equal(local_check_update(e.la, "service:gone", "critical", "", err, sizeof err), 0);
  run_for(&e, 300);
  svcs = local_services_json(e.la);
  assert_int_equal(json_object_size(svcs), 0); /* critical longer than the minimum (50ms) */
  json_decref(svcs);
  env_close(&e);
}

/* ---- persistence ---- */

static void test_persist_and_restore(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, true, false);
  load(&e);
  char err[1024];
  assert_int_equal(reg_service(&e, "{\"Name\":\"api\",\"ID\":\"api-1\",\"Port\":9,\"Meta\":{\"k\":\"v\"},"
                                   "\"Check\":{\"TTL\":\"1h\"}}",
                               err, sizeof err),
                   0);
  assert_int_equal(reg_check(&e, "{\"Name\":\"disk\",\"TTL\":\"1h\"}", err, sizeof err), 0);
  assert_int_equal(local_check_update(e.la, "disk", "passing", "fine", err, sizeof err), 0);
  assert_int_equal(local_node_maintenance(e.la, true, "why not", err, sizeof err), 0);
  assert_int_equal(reg_service(&e, "{\"Name\":\"tmp\"}", err, sizeof err), 0);
  assert_int_equal(local_service_deregister(e.la, "tmp", err, sizeof err), 0);
  env_stop_agent(&e);
  /* A new agent on the same data dir gets the API registrations back; the TTL check's state
   * comes back too (not expired). */
  env_start(&e);
  load(&e);
  json_t *svcs = local_services_json(e.la);
  assert_int_equal(json_object_size(svcs), 1);
  json_t *api = json_object_get(svcs, "api-1");
  assert_non_null(api);
  assert_string_equal(json_string_value(json_object_get(json_object_get(api, "Meta"), "k")), "v");
  json_decref(svcs);
  assert_string_equal(check_field(&e, "service:api-1", "Status"), "critical");
  assert_string_equal(check_field(&e, "service:api-1", "ServiceName"), "api");
  assert_string_equal(check_field(&e, "service:api-1", "Timeout"), "");
  assert_string_equal(check_field(&e, "disk", "Timeout"), "0s");
  assert_string_equal(check_field(&e, "disk", "Status"), "passing");
  assert_string_equal(check_field(&e, "disk", "Output"), "fine");
  assert_string_equal(check_field(&e, "_node_maintenance", "Notes"), "why not");
  assert_int_equal(local_check_update(e.la, "disk", "passing", "", err, sizeof err), 0);
  env_close(&e);
}

static void test_config_load_and_reload(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, true, false);
  char err[1024];
  struct local_defs *d = local_defs_new();
  json_t *doc = J("{\"services\":[{\"name\":\"cfg\",\"port\":1,\"check\":{\"ttl\":\"1h\",\"status\":\"passing\"}}],"
                  "\"check\":{\"name\":\"nodecheck\",\"ttl\":\"1h\"}}");
  assert_int_equal(local_defs_add_config(d, doc, "a.json", err, sizeof err), 0);
  json_decref(doc);
  assert_int_equal(local_agent_load(e.la, d, err, sizeof err), 0);
  assert_string_equal(check_field(&e, "service:cfg", "Status"), "passing");
  assert_string_equal(check_field(&e, "nodecheck", "Status"), "critical");
  assert_int_equal(local_check_update(e.la, "nodecheck", "warning", "w", err, sizeof err), 0);
  /* An API registration survives a reload; a config service that left the files goes; a
   * config check's status carries over. */
  assert_int_equal(reg_service(&e, "{\"Name\":\"viaapi\"}", err, sizeof err), 0);
  local_defs_free(d);
  d = local_defs_new();
  doc = J("{\"check\":{\"name\":\"nodecheck\",\"ttl\":\"1h\"}}");
  assert_int_equal(local_defs_add_config(d, doc, "a.json", err, sizeof err), 0);
  json_decref(doc);
  assert_int_equal(local_agent_load(e.la, d, err, sizeof err), 0);
  local_defs_free(d);
  json_t *svcs = local_services_json(e.la);
  assert_null(json_object_get(svcs, "cfg"));
  assert_non_null(json_object_get(svcs, "viaapi"));
  json_decref(svcs);
  assert_string_equal(check_field(&e, "nodecheck", "Status"), "warning");
  /* Script checks in config files need enable_local_script_checks. */
  d = local_defs_new();
  doc = J("{\"check\":{\"name\":\"scr\",\"args\":[\"/bin/true\"],\"interval\":\"1h\"}}");
  assert_int_equal(local_defs_add_config(d, doc, "a.json", err, sizeof err), 0);
  json_decref(doc);
  assert_int_equal(local_agent_load(e.la, d, err, sizeof err), -1);
  assert_string_equal(err, "Failed to register check 'scr': Scripts are disabled on this agent; to "
                           "enable, configure 'enable_script_checks' or 'enable_local_script_checks' "
                           "to true");
  local_defs_free(d);
  env_close(&e);
}

static void test_many_services(void **state)
{
  (void)state;
  struct env e = {0};
  env_open(&e, false, false);
  load(&e);
  char err[1024], body[256];
  for (int i = 0; i < 1000; i++) {
    snprintf(body, sizeof body, "{\"Name\":\"svc\",\"ID\":\"svc-%d\",\"Port\":%d,\"Check\":{\"TTL\":\"1h\"}}",
             i, 1000 + i);
    assert_int_equal(reg_service(&e, body, err, sizeof err), 0);
  }
  assert_true(run_until(&e, synced, NULL, 20000));
  assert_int_equal(state_service_count(e.remote.store), 1000);
  assert_int_equal(state_check_count(e.remote.store), 1000);
  struct local_stats st;
  local_agent_stats(e.la, &st);
  assert_int_equal(st.services, 1000);
  assert_int_equal(st.check_ttls, 1000);
  env_close(&e);
}

/* Consul's ae scaleFactor: ceil(log2(n) - log2(128)) + 1 intervals above 128 agents. */
static void test_sync_interval_scaled(void **state)
{
  (void)state;
  assert_int_equal(local_sync_interval_scaled(60000, 1), 60000);
  assert_int_equal(local_sync_interval_scaled(60000, 128), 60000);
  assert_int_equal(local_sync_interval_scaled(60000, 129), 120000);
  assert_int_equal(local_sync_interval_scaled(60000, 256), 120000);
  assert_int_equal(local_sync_interval_scaled(60000, 257), 180000);
  assert_int_equal(local_sync_interval_scaled(60000, 10000), 480000);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_handler_defaults),
      cmocka_unit_test(test_status_handler_thresholds),
      cmocka_unit_test(test_defs_python_consul_shapes),
      cmocka_unit_test(test_defs_errors),
      cmocka_unit_test(test_defs_config_files),
      cmocka_unit_test(test_api_errors),
      cmocka_unit_test(test_register_shapes),
      cmocka_unit_test(test_ttl_expiry_and_updates),
      cmocka_unit_test(test_http_check),
      cmocka_unit_test(test_http_redirects),
      cmocka_unit_test(test_http_https_refused),
      cmocka_unit_test(test_alias_remote_node),
      cmocka_unit_test(test_tcp_and_udp_checks),
      cmocka_unit_test(test_script_checks),
      cmocka_unit_test(test_alias_and_maintenance),
      cmocka_unit_test(test_sync_to_catalog),
      cmocka_unit_test(test_output_coalescing),
      cmocka_unit_test(test_reap_critical_service),
      cmocka_unit_test(test_persist_and_restore),
      cmocka_unit_test(test_config_load_and_reload),
      cmocka_unit_test(test_many_services),
      cmocka_unit_test(test_sync_interval_scaled),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
