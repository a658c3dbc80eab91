/* query_remote.c -- PreparedQuery.ExecuteRemote, both sides. See query_remote.h. */
#include "agent/query_remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "rpc/rpc.h"

#define METHOD "PreparedQuery.ExecuteRemote"
#define TIMEOUT_MS 10000
#define MAX_BODY (512 * 1024)

struct query_remote {
  struct rpc *rpc;
  struct wan_dcs *dcs;
  struct api_ctx *api;
};

static void handle_execute_remote(struct rpc_call *call, const uint8_t *body, size_t len,
                                  void *arg)
{
  struct query_remote *qr = arg;
  char err[128] = "";
  json_t *o = len <= MAX_BODY ? api_query_execute_remote(qr->api, body, len, err, sizeof err)
                              : NULL;
  char *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!out) {
    rpc_call_reply(call, err[0] ? err : "invalid remote prepared query", NULL, 0);
    return;
  }
  rpc_call_reply(call, NULL, out, strlen(out));
  free(out);
}

struct sent {
  void (*done)(void *cbarg, json_t *answer);
  void *cbarg;
  char dc[128];
};

static void replied(void *arg, int status, const char *error, const uint8_t *body, size_t len)
{
  struct sent *s = arg;
  json_t *answer = NULL;
  if (status != 0 || error) {
    log_warn("prepared_query", "failover to %s: %s", s->dc,
             status ? cc_strerror(status) : error);
  } else {
    json_error_t jerr;
    answer = json_loadb((const char *)body, len, 0, &jerr);
  }
  s->done(s->cbarg, answer);
  free(s);
}

void query_remote_send(void *arg, const char *dc, const char *body, size_t len,
                       void (*done)(void *cbarg, json_t *answer), void *cbarg)
{
  struct query_remote *qr = arg;
  struct sent *s = xcalloc(1, sizeof *s);
  s->done = done;
  s->cbarg = cbarg;
  snprintf(s->dc, sizeof s->dc, "%s", dc);
  const char *addr = qr->dcs ? wan_dcs_pick(qr->dcs, dc) : NULL;
  int rv = addr ? rpc_request(qr->rpc, addr, METHOD, body, len, TIMEOUT_MS, replied, s, NULL)
                : CC_ENOTFOUND;
  if (rv != 0) {
    if (addr && rv == CC_ENOCONN) wan_dcs_failed(qr->dcs, dc, addr);
    /* nothing was sent: done runs now (the caller moves on to the next datacenter) */
    replied(s, rv, NULL, NULL, 0);
  }
}

struct query_remote *query_remote_new(struct rpc *rpc, struct wan_dcs *dcs, struct api_ctx *api)
{
  struct query_remote *qr = xcalloc(1, sizeof *qr);
  qr->rpc = rpc;
  qr->dcs = dcs;
  qr->api = api;
  rpc_handle(rpc, METHOD, handle_execute_remote, qr);
  return qr;
}

void query_remote_free(struct query_remote *qr)
{
  if (!qr) return;
  rpc_handle(qr->rpc, METHOD, NULL, NULL);
  free(qr);
}
