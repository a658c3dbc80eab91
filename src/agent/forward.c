/* forward.c -- HTTP requests and catalog writes sent to a server or to the leader over RPC,
 * and the server side that answers them. See forward.h. */
#include "agent/forward.h"

#include "agent/wan_dcs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/log.h"
#include "rpc/rpc.h"
#include "state/catalog.h"
#include "state/cmd.h"

#define HOLD_RETRY_MS 100
#define DEFAULT_HOLD_MS 7000
/* A request that is not a blocking query: how long the server may take. */
#define PLAIN_TIMEOUT_MS 30000
/* A blocking query waits up to ?wait plus wait/16 jitter on the server; give it slack. */
#define BLOCKING_SLACK_MS 15000
#define MAX_TRIES 3

struct forward {
  uv_loop_t *loop;
  struct rpc *rpc;
  struct servers *servers;
  struct http_server *http;
  struct consensus *consensus;
  struct state_store *store;
  unsigned hold_ms;
  char *node_name;
  struct fwd_op *ops; /* HTTP forwards in flight */
  struct wan_dcs *dcs; /* servers: other datacenters' servers (WAN); NULL: none */
};

/* ---- the answer's wire form: u16 status, u32 + content type, u32 + headers, body ---- */

static void put_u32(struct buf *b, uint32_t v)
{
  unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 8), (unsigned char)v};
  buf_append(b, x, 4);
}

static bool get_u32(const uint8_t **p, const uint8_t *end, uint32_t *v)
{
  if (end - *p < 4) return false;
  *v = (uint32_t)(*p)[0] << 24 | (uint32_t)(*p)[1] << 16 | (uint32_t)(*p)[2] << 8 | (*p)[3];
  *p += 4;
  return true;
}

/* ---- client side: one forwarded HTTP request ---- */

struct fwd_op {
  struct forward *f;
  struct http_request *req;
  struct fwd_op *prev, *next;
  struct buf raw;        /* the request's HTTP/1.1 bytes */
  bool to_leader;
  bool read;             /* GET/HEAD: safe to retry on another server */
  unsigned tries;
  unsigned timeout_ms;
  uint64_t hold_until;   /* loop time until which a missing leader/server is waited for */
  struct rpc_req *rreq;
  uv_timer_t *timer;     /* while holding; freed in its close callback */
  char addr[80];
  char dc[128];          /* "": this datacenter; else the one the request goes to (?dc=) */
};

static void op_unlink(struct fwd_op *op)
{
  struct forward *f = op->f;
  if (op->prev) op->prev->next = op->next; else if (f->ops == op) f->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

static void timer_freed(uv_handle_t *h) { free(h); }

static void op_free(struct fwd_op *op)
{
  op_unlink(op);
  if (op->timer) uv_close((uv_handle_t *)op->timer, timer_freed);
  buf_free(&op->raw);
  free(op);
}

/* Takes the request back from op, which no longer answers it: the caller does, now. */
static struct http_request *op_take(struct fwd_op *op)
{
  struct http_request *req = op->req;
  op->req = NULL;
  http_request_on_cancel(req, NULL, NULL);
  return req;
}

/* Answers op's request with a 500 and Consul's kind of message, and frees op. */
static void op_fail(struct fwd_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void op_fail(struct fwd_op *op, const char *fmt, ...)
{
  struct http_request *req = op_take(op);
  struct buf msg = BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(&msg, fmt, ap);
  va_end(ap);
  http_respond_buf(req, 500, "text/plain; charset=utf-8", &msg);
  op_free(op);
}

static bool unreserved(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         strchr("-._~/!$&'()*+,;=:@", c) != NULL;
}

static bool hop_header(const char *name)
{
  static const char *const skip[] = {"Connection", "Keep-Alive", "Transfer-Encoding",
                                     "Content-Length", "Expect", "Upgrade", "TE", "Trailer",
                                     "Proxy-Connection", API_FORWARD_HEADER};
  for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
    if (strcasecmp(name, skip[i]) == 0) return true;
  return false;
}

/* The request as HTTP/1.1 bytes: the decoded path escaped again (the server decodes it to
 * the same string), the raw query as received, the end-to-end headers, the hop count. */
static void serialize_request(const struct http_request *req, unsigned hops, unsigned next_hops,
                              const char *node_name, struct buf *out)
{
  static const char hex[] = "0123456789ABCDEF";
  buf_printf(out, "%s ", req->method_name);
  for (const char *p = req->path; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (unreserved(c)) {
      buf_putc(out, (char)c);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      buf_append(out, e, 3);
    }
  }
  if (req->raw_query[0]) buf_printf(out, "?%s", req->raw_query);
  buf_puts(out, " HTTP/1.1\r\n");
  bool host = false;
  size_t n = http_header_count(req);
  for (size_t i = 0; i < n; i++) {
    const char *name, *value;
    http_header_at(req, i, &name, &value);
    if (hop_header(name)) continue;
    /* the first agent says who it is; later hops pass that on */
    if (hops == 0 && strcasecmp(name, API_ORIGIN_NODE_HEADER) == 0) continue;
    if (strcasecmp(name, "Host") == 0) host = true;
    buf_printf(out, "%s: %s\r\n", name, value);
  }
  if (!host) buf_puts(out, "Host: concord\r\n");
  if (hops == 0) buf_printf(out, "%s: %s\r\n", API_ORIGIN_NODE_HEADER, node_name);
  buf_printf(out, "%s: %u\r\nContent-Length: %zu\r\n\r\n", API_FORWARD_HEADER, next_hops,
             req->body_len);
  buf_append(out, req->body, req->body_len);
}

/* How long the server may take: a blocking query's wait plus slack, else PLAIN_TIMEOUT_MS. */
static unsigned request_timeout(const struct http_request *req)
{
  const char *index = http_query(req, "index");
  if (!index || !*index || strcmp(index, "0") == 0) return PLAIN_TIMEOUT_MS;
  int64_t wait_ns = 5 * 60 * 1000000000LL;
  const char *w = http_query(req, "wait");
  int64_t ns;
  if (w && *w && duration_parse(w, strlen(w), &ns) == 0 && ns > 0) wait_ns = ns;
  if (wait_ns > 10 * 60 * 1000000000LL) wait_ns = 10 * 60 * 1000000000LL;
  uint64_t ms = (uint64_t)(wait_ns / 1000000) + (uint64_t)(wait_ns / 16000000) + BLOCKING_SLACK_MS;
  return (unsigned)ms;
}

static void relay_answer(struct fwd_op *op, const uint8_t *body, size_t len)
{
  struct http_request *req = op->req;
  const uint8_t *p = body, *end = body + len;
  uint32_t ctlen = 0, hlen = 0;
  if (len < 2) goto bad;
  int status = p[0] << 8 | p[1];
  p += 2;
  if (!get_u32(&p, end, &ctlen) || (size_t)(end - p) < ctlen) goto bad;
  char *ctype = ctlen ? xstrndup((const char *)p, ctlen) : NULL;
  p += ctlen;
  if (!get_u32(&p, end, &hlen) || (size_t)(end - p) < hlen) {
    free(ctype);
    goto bad;
  }
  /* "Name: value\r\n" lines */
  const char *h = (const char *)p, *hend = h + hlen;
  while (h < hend) {
    const char *eol = memchr(h, '\r', (size_t)(hend - h));
    if (!eol) eol = hend;
    const char *colon = memchr(h, ':', (size_t)(eol - h));
    if (colon) {
      char *name = xstrndup(h, (size_t)(colon - h));
      const char *v = colon + 1;
      while (v < eol && *v == ' ') v++;
      char *value = xstrndup(v, (size_t)(eol - v));
      http_set_header(req, name, value);
      free(name);
      free(value);
    }
    h = eol + 2;
  }
  p += hlen;
  http_respond(op_take(op), status, ctype, p, (size_t)(end - p));
  free(ctype);
  op_free(op);
  return;
bad:
  op_fail(op, "rpc error: malformed forwarded answer");
}

static void op_send(struct fwd_op *op);


/* The server at op->addr could not be reached: pick another next time. */
static void op_server_failed(struct fwd_op *op)
{
  if (op->dc[0]) {
    if (op->f->dcs) wan_dcs_failed(op->f->dcs, op->dc, op->addr);
  } else if (op->f->servers && !op->to_leader) {
    servers_failed(op->f->servers, op->addr);
  }
}

static void hold_tick(uv_timer_t *t)
{
  struct fwd_op *op = t->data;
  op_send(op);
}

/* Waits a little and tries again, or, when the hold is over, gives up with Consul's error
 * for what could not be reached. */
static void op_hold(struct fwd_op *op)
{
  if (uv_now(op->f->loop) >= op->hold_until) {
    if (op->dc[0]) {
      op_fail(op, "No path to datacenter");
    } else if (op->to_leader) {
      http_set_header(op->req, "X-Consul-KnownLeader", "false");
      op_fail(op, "No cluster leader");
    } else {
      op_fail(op, "No known Consul servers");
    }
    return;
  }
  if (!op->timer) {
    op->timer = xmalloc(sizeof *op->timer);
    uv_timer_init(op->f->loop, op->timer);
    op->timer->data = op;
  }
  uv_timer_start(op->timer, hold_tick, HOLD_RETRY_MS, 0);
}

static void op_reply(void *arg, int status, const char *error, const uint8_t *body, size_t len)
{
  struct fwd_op *op = arg;
  op->rreq = NULL; /* a cancelled request never gets here: cancel drops the callback */
  if (status == 0 && !error) {
    relay_answer(op, body, len);
    return;
  }
  if (status == 0) {
    op_fail(op, "rpc error: %s", error);
    return;
  }
  /* the server could not be reached or went away */
  op_server_failed(op);
  log_debug("agent.forward", "%s %s via %s: %s", op->req->method_name, op->req->path, op->addr,
            cc_strerror(status));
  /* Not connecting means nothing was sent: any request may go again (to another server, or to
   * the leader once one is known) until the hold time is over. A lost connection or a timeout
   * may have run the request: only reads go again. */
  if (status == CC_ENOCONN || (status != CC_ESHUTDOWN && op->read && ++op->tries < MAX_TRIES)) {
    op_hold(op);
    return;
  }
  op_fail(op, "rpc error making call: %s", cc_strerror(status));
}

static void op_cancel(struct http_request *req, void *arg)
{
  struct fwd_op *op = arg;
  (void)req;
  op->req = NULL;
  if (op->rreq) rpc_request_cancel(op->rreq);
  op->rreq = NULL;
  op_free(op);
}

static void op_send(struct fwd_op *op)
{
  struct forward *f = op->f;
  const char *addr = NULL;
  if (op->dc[0]) {
    addr = f->dcs ? wan_dcs_pick(f->dcs, op->dc) : NULL;
  } else if (op->to_leader) {
    addr = f->consensus ? consensus_leader_address(f->consensus) : NULL;
  } else if (f->servers) {
    addr = servers_pick(f->servers);
  }
  if (!addr) {
    op_hold(op);
    return;
  }
  snprintf(op->addr, sizeof op->addr, "%s", addr);
  int rv = rpc_request(f->rpc, op->addr, "HTTP.Forward", op->raw.data, op->raw.len,
                       op->timeout_ms, op_reply, op, &op->rreq);
  if (rv == CC_ENOCONN) {
    op_server_failed(op);
    op_hold(op);
    return;
  }
  if (rv != 0) op_fail(op, "rpc error making call: %s", cc_strerror(rv));
}

static void op_start(struct forward *f, struct http_request *req, bool to_leader, const char *dc,
                     unsigned hops)
{
  struct fwd_op *op = xcalloc(1, sizeof *op);
  op->f = f;
  op->req = req;
  op->to_leader = to_leader;
  if (dc) snprintf(op->dc, sizeof op->dc, "%s", dc);
  op->read = req->method == HTTP_M_GET || req->method == HTTP_M_HEAD;
  op->timeout_ms = request_timeout(req);
  op->hold_until = uv_now(f->loop) + f->hold_ms;
  /* A request for another datacenter arrives there as if from one of its clients (one hop),
   * so a follower there may still send it on to its leader. It cannot come back: it names
   * that datacenter, which its servers serve themselves. */
  serialize_request(req, hops, dc ? 1 : hops + 1, f->node_name, &op->raw);
  op->next = f->ops;
  if (f->ops) f->ops->prev = op;
  f->ops = op;
  http_request_on_cancel(req, op_cancel, op);
  op_send(op);
}

void forward_http(void *arg, struct http_request *req, bool to_leader, unsigned hops)
{
  op_start(arg, req, to_leader, NULL, hops);
}

void forward_http_dc(void *arg, struct http_request *req, const char *dc, unsigned hops)
{
  struct forward *f = arg;
  if (!f->dcs || !wan_dcs_known(f->dcs, dc) || strlen(dc) >= sizeof ((struct fwd_op *)0)->dc) {
    http_respond_error(req, 500, "No path to datacenter");
    return;
  }
  op_start(f, req, false, dc, hops);
}

void forward_set_datacenters(struct forward *f, struct wan_dcs *dcs)
{
  f->dcs = dcs;
}

/* ---- server side: HTTP.Forward ---- */

struct served {
  struct rpc_call *call;
  struct http_injected *inj; /* set once inject returned with the request still pending */
  bool in_inject;            /* inside http_server_inject: done must not free */
  bool answered;
};

static void served_done(void *arg, int status, const char *content_type, const char *headers,
                        size_t headers_len, char *body, size_t body_len)
{
  struct served *sv = arg;
  sv->inj = NULL;
  sv->answered = true;
  if (status == 0) {
    rpc_call_reply(sv->call, "agent is shutting down", NULL, 0);
  } else {
    struct buf out = BUF_INIT;
    unsigned char st[2] = {(unsigned char)(status >> 8), (unsigned char)status};
    buf_append(&out, st, 2);
    size_t ctlen = content_type ? strlen(content_type) : 0;
    put_u32(&out, (uint32_t)ctlen);
    buf_append(&out, content_type ? content_type : "", ctlen);
    put_u32(&out, (uint32_t)headers_len);
    buf_append(&out, headers, headers_len);
    buf_append(&out, body ? body : "", body_len);
    rpc_call_reply(sv->call, NULL, out.data, out.len);
    buf_free(&out);
  }
  free(body);
  if (!sv->in_inject) free(sv);
}

static void served_cancel(struct rpc_call *call, void *arg)
{
  struct served *sv = arg;
  (void)call;
  if (sv->inj) http_injected_cancel(sv->inj);
  free(sv);
}

static void handle_http_forward(struct rpc_call *call, const uint8_t *body, size_t len,
                                void *arg)
{
  struct forward *f = arg;
  struct served *sv = xcalloc(1, sizeof *sv);
  sv->call = call;
  rpc_call_on_cancel(call, served_cancel, sv);
  struct http_injected *inj = NULL;
  sv->in_inject = true; /* an answer that needs no waiting comes back inside inject */
  int rv = http_server_inject(f->http, (const char *)body, len, rpc_call_peer(call), served_done,
                              sv, &inj);
  sv->in_inject = false;
  if (rv != 0) {
    rpc_call_on_cancel(call, NULL, NULL);
    rpc_call_reply(call, rv == CC_ESHUTDOWN ? "agent is shutting down"
                                            : "malformed forwarded request", NULL, 0);
    free(sv);
  } else if (sv->answered) {
    free(sv);
  } else {
    sv->inj = inj;
  }
}

/* ---- catalog writes for anti-entropy: Catalog.Apply ---- */

struct apply_ctx {
  local_remote_done_fn done; /* client side: the local agent's callback */
  void *arg;
  struct rpc_call *call;     /* server side: the caller to answer */
  struct forward *f;
  char addr[80];
};

static void encode_result(struct buf *out, const struct state_cmd_result *res)
{
  put_u32(out, (uint32_t)(int32_t)res->err);
  buf_putc(out, res->ok ? 1 : 0);
  buf_puts(out, res->msg);
}

static bool decode_result(const uint8_t *p, size_t len, struct state_cmd_result *res)
{
  const uint8_t *end = p + len;
  uint32_t err;
  memset(res, 0, sizeof *res);
  if (!get_u32(&p, end, &err) || p == end) return false;
  res->err = (int)(int32_t)err;
  res->ok = *p++ != 0;
  size_t n = (size_t)(end - p);
  if (n >= sizeof res->msg) n = sizeof res->msg - 1;
  memcpy(res->msg, p, n);
  res->msg[n] = '\0';
  return true;
}

static void applied_for_caller(void *arg, int status, const struct state_cmd_result *res,
                               uint64_t index)
{
  struct apply_ctx *ac = arg;
  (void)index;
  if (status != 0) {
    rpc_call_reply(ac->call, cc_strerror(status), NULL, 0);
  } else {
    struct buf out = BUF_INIT;
    encode_result(&out, res);
    rpc_call_reply(ac->call, NULL, out.data, out.len);
    buf_free(&out);
  }
  free(ac);
}

static void relayed_for_caller(void *arg, int status, const char *error, const uint8_t *body,
                               size_t len)
{
  struct apply_ctx *ac = arg;
  if (status != 0) rpc_call_reply(ac->call, cc_strerror(status), NULL, 0);
  else rpc_call_reply(ac->call, error, body, len);
  free(ac);
}

/* The only commands a remote agent may propose: its own catalog entries. */
static bool catalog_command(const uint8_t *cmd, size_t len)
{
  return len > 1 && (cmd[0] == STATE_CMD_REGISTER || cmd[0] == STATE_CMD_DEREGISTER) &&
         state_cmd_validate(cmd, len) == 0;
}

static void handle_catalog_apply(struct rpc_call *call, const uint8_t *body, size_t len,
                                 void *arg)
{
  struct forward *f = arg;
  /* body: one hop byte, then the command */
  if (len < 2 || !catalog_command(body + 1, len - 1)) {
    rpc_call_reply(call, "invalid catalog command", NULL, 0);
    return;
  }
  struct apply_ctx *ac = xcalloc(1, sizeof *ac);
  ac->call = call;
  ac->f = f;
  if (consensus_is_leader(f->consensus)) {
    struct buf cmd = BUF_INIT;
    buf_append(&cmd, body + 1, len - 1);
    int rv = consensus_apply(f->consensus, &cmd, applied_for_caller, ac);
    buf_free(&cmd);
    if (rv != 0) {
      rpc_call_reply(call, cc_strerror(rv), NULL, 0);
      free(ac);
    }
    return;
  }
  const char *leader = consensus_leader_address(f->consensus);
  if (!leader || body[0] >= 1) {
    rpc_call_reply(call, "No cluster leader", NULL, 0);
    free(ac);
    return;
  }
  struct buf relay = BUF_INIT;
  buf_putc(&relay, 1);
  buf_append(&relay, body + 1, len - 1);
  int rv = rpc_request(f->rpc, leader, "Catalog.Apply", relay.data, relay.len, PLAIN_TIMEOUT_MS,
                       relayed_for_caller, ac, NULL);
  buf_free(&relay);
  if (rv != 0) {
    rpc_call_reply(call, cc_strerror(rv), NULL, 0);
    free(ac);
  }
}

static void remote_applied(void *arg, int status, const struct state_cmd_result *res,
                           uint64_t index)
{
  struct apply_ctx *ac = arg;
  (void)index;
  ac->done(ac->arg, status, res);
  free(ac);
}

static void remote_replied(void *arg, int status, const char *error, const uint8_t *body,
                           size_t len)
{
  struct apply_ctx *ac = arg;
  struct state_cmd_result res;
  if (status != 0) {
    if (ac->f->servers) servers_failed(ac->f->servers, ac->addr);
    ac->done(ac->arg, status, NULL);
  } else if (error) {
    ac->done(ac->arg, strcmp(error, "No cluster leader") == 0 ? CC_ENOTLEADER : CC_EIO, NULL);
  } else if (!decode_result(body, len, &res)) {
    ac->done(ac->arg, CC_EIO, NULL);
  } else {
    ac->done(ac->arg, 0, &res);
  }
  free(ac);
}

static int remote_write(void *ctx, const struct buf *cmd, local_remote_done_fn done, void *arg)
{
  struct forward *f = ctx;
  struct apply_ctx *ac = xcalloc(1, sizeof *ac);
  ac->done = done;
  ac->arg = arg;
  ac->f = f;
  if (f->consensus && consensus_is_leader(f->consensus)) {
    int rv = consensus_apply(f->consensus, cmd, remote_applied, ac);
    if (rv != 0) free(ac);
    return rv;
  }
  const char *addr = f->consensus ? consensus_leader_address(f->consensus)
                                  : f->servers ? servers_pick(f->servers) : NULL;
  if (!addr) {
    free(ac);
    return CC_ENOTLEADER; /* anti-entropy tries again later */
  }
  snprintf(ac->addr, sizeof ac->addr, "%s", addr);
  struct buf body = BUF_INIT;
  buf_putc(&body, f->consensus ? 1 : 0); /* a follower asks the leader directly */
  buf_append(&body, cmd->data, cmd->len);
  int rv = rpc_request(f->rpc, ac->addr, "Catalog.Apply", body.data, body.len, PLAIN_TIMEOUT_MS,
                       remote_replied, ac, NULL);
  buf_free(&body);
  if (rv != 0) free(ac);
  return rv;
}

/* ---- anti-entropy on clients: this node's catalog rows, read from a server ----
 *
 * Catalog.NodeDump answers with the node's rows as catalog register commands (each as a u32
 * length and the command): the node, each service, each check. The client applies them to a
 * store of its own, which anti-entropy compares with what the agent has, exactly as a server
 * compares with its replica. */

static void dump_cmd(struct buf *out, const struct state_register *reg)
{
  struct buf cmd = BUF_INIT;
  state_cmd_encode_register(&cmd, reg);
  put_u32(out, (uint32_t)cmd.len);
  buf_append(out, cmd.data, cmd.len);
  buf_free(&cmd);
}

struct dump_ctx {
  struct buf *out;
  const struct state_node *node;
};

static int dump_service(const struct state_service *svc, void *arg)
{
  struct dump_ctx *d = arg;
  struct state_register_service rs = {
      .kind = svc->kind, .id = svc->id, .name = svc->name, .tags = svc->tags,
      .n_tags = svc->n_tags, .tags_null = svc->tags_null, .address = svc->address,
      .tagged_addresses = svc->tagged_addresses, .n_tagged = svc->n_tagged, .meta = svc->meta,
      .port = svc->port, .socket_path = svc->socket_path, .has_weights = true,
      .weight_passing = svc->weight_passing, .weight_warning = svc->weight_warning,
      .enable_tag_override = svc->enable_tag_override, .proxy = svc->proxy,
      .connect = svc->connect, .locality = svc->locality,
  };
  struct state_register reg = {.node = d->node->name, .address = d->node->address,
                               .skip_node_update = true, .service = &rs};
  dump_cmd(d->out, &reg);
  return 0;
}

static int dump_check(const struct state_check *c, void *arg)
{
  struct dump_ctx *d = arg;
  struct state_register_check rc = {
      .node = d->node->name, .check_id = c->check_id, .name = c->name, .status = c->status,
      .notes = c->notes, .output = c->output, .service_id = c->service_id, .type = c->type,
      .interval = c->interval, .timeout = c->timeout, .exposed_port = c->exposed_port,
      .definition = c->definition,
  };
  struct state_register reg = {.node = d->node->name, .address = d->node->address,
                               .skip_node_update = true, .checks = &rc, .n_checks = 1};
  dump_cmd(d->out, &reg);
  return 0;
}

static void handle_node_dump(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  struct forward *f = arg;
  if (len == 0 || len > 256 || memchr(body, 0, len)) {
    rpc_call_reply(call, "invalid node name", NULL, 0);
    return;
  }
  char *name = xstrndup((const char *)body, len);
  struct buf out = BUF_INIT;
  const struct state_node *n = state_node_get(f->store, name);
  if (n) {
    struct state_register reg = {
        .id = n->id, .node = n->name, .address = n->address, .datacenter = n->datacenter,
        .tagged_addresses = n->tagged_addresses, .node_meta = n->meta, .locality = n->locality,
    };
    dump_cmd(&out, &reg);
    struct dump_ctx d = {&out, n};
    state_node_services(f->store, name, dump_service, &d);
    state_node_checks(f->store, name, dump_check, &d);
  }
  rpc_call_reply(call, NULL, out.data ? out.data : "", out.len);
  buf_free(&out);
  free(name);
}

struct fetch_op {
  struct forward *f;
  void (*cb)(void *arg, struct state_store *st);
  void *arg;
  struct rpc_req *req;
  char addr[64];
};

static void fetch_replied(void *arg, int status, const char *error, const uint8_t *body,
                          size_t len)
{
  struct fetch_op *op = arg;
  struct state_store *st = NULL;
  if (status == 0 && !error) {
    st = state_store_new();
    const uint8_t *p = body, *end = body + len;
    uint64_t index = 1;
    while (p < end && st) {
      uint32_t n;
      struct state_cmd_result res;
      if (!get_u32(&p, end, &n) || (size_t)(end - p) < n ||
          state_cmd_apply(st, index++, p, n, &res) != 0 || res.err != 0) {
        log_warn("agent.forward", "catalog rows from %s: malformed answer", op->addr);
        state_store_free(st);
        st = NULL;
        break;
      }
      p += n;
    }
  } else if (status != 0 && op->f->servers) {
    servers_failed(op->f->servers, op->addr);
  }
  op->cb(op->arg, st);
  if (st) state_store_free(st);
  free(op);
}

static int remote_fetch(void *ctx, const char *node, void (*cb)(void *arg, struct state_store *st),
                        void *arg, void **handle)
{
  struct forward *f = ctx;
  const char *addr = f->servers ? servers_pick(f->servers) : NULL;
  if (!addr) return CC_ENOTFOUND;
  struct fetch_op *op = xcalloc(1, sizeof *op);
  op->f = f;
  op->cb = cb;
  op->arg = arg;
  snprintf(op->addr, sizeof op->addr, "%s", addr);
  int rv = rpc_request(f->rpc, op->addr, "Catalog.NodeDump", node, strlen(node), PLAIN_TIMEOUT_MS,
                       fetch_replied, op, &op->req);
  if (rv != 0) {
    free(op);
    return rv;
  }
  *handle = op;
  return 0;
}

static void remote_fetch_cancel(void *ctx, void *handle)
{
  struct fetch_op *op = handle;
  (void)ctx;
  rpc_request_cancel(op->req);
  free(op);
}

static struct state_store *remote_store(void *ctx)
{
  struct forward *f = ctx;
  return f->store;
}

void forward_local_remote(struct forward *f, struct local_remote *out)
{
  *out = (struct local_remote){.write = remote_write, .store = remote_store, .ctx = f};
  if (!f->store) {
    out->fetch = remote_fetch;
    out->fetch_cancel = remote_fetch_cancel;
  }
}

/* ---- life ---- */

struct forward *forward_new(uv_loop_t *loop, const struct forward_config *cfg)
{
  struct forward *f = xcalloc(1, sizeof *f);
  f->loop = loop;
  f->rpc = cfg->rpc;
  f->servers = cfg->servers;
  f->consensus = cfg->consensus;
  f->store = cfg->store;
  f->hold_ms = cfg->hold_timeout_ms ? cfg->hold_timeout_ms : DEFAULT_HOLD_MS;
  f->node_name = xstrdup(cfg->node_name);
  if (f->consensus) {
    rpc_handle(f->rpc, "Catalog.Apply", handle_catalog_apply, f);
    rpc_handle(f->rpc, "Catalog.NodeDump", handle_node_dump, f);
  }
  return f;
}

void forward_serve_http(struct forward *f, struct http_server *http)
{
  f->http = http;
  if (f->consensus && http) rpc_handle(f->rpc, "HTTP.Forward", handle_http_forward, f);
}

void forward_free(struct forward *f)
{
  /* every HTTP forward was cancelled when the HTTP server closed; any left is answered */
  while (f->ops) {
    struct fwd_op *op = f->ops;
    if (op->rreq) rpc_request_cancel(op->rreq);
    op->rreq = NULL;
    op_fail(op, "agent is shutting down");
  }
  free(f->node_name);
  free(f);
}
