/* gossip_peer.c -- one Concord gossip member as a small program, for integration tests: it
 * joins the given addresses, prints what happens as JSON lines on stdout, and takes commands
 * on stdin.
 *
 *   gossip_peer -node NAME -bind IP:PORT [-tag k=v]... [-join IP:PORT]... [-log-level LEVEL]
 *               [-profile lan|wan] [-reconnect-timeout MS] [-respond]
 *
 * stdout, one JSON object per line:
 *   {"event":"ready","port":N}                       bound and gossiping
 *   {"event":"joined","n":N,"error":"..."}           a -join or "join" finished
 *   {"event":"member-join"|"member-leave"|"member-failed"|"member-update"|"member-reap",
 *    "member":{...}}
 *   {"event":"user","name":..,"payload":..,"ltime":N,"coalesce":bool}
 *   {"event":"members","members":[{"name","addr","port","status","tags",...}]}
 *   {"event":"left","error":..}                      after "leave"
 *   {"event":"query","name":..,"payload":..,"from":..}  a query reached us; with
 *                                                    -respond we answer "<node>:<payload>"
 * stdin, one command per line:
 *   event NAME [PAYLOAD]   fire a user event (payload is the rest of the line)
 *   members                print the member list
 *   join IP:PORT           join another member
 *   tags k=v [k=v]...      replace our tags
 *   force-leave NAME       force a failed member out
 *   query NAME [PAYLOAD]   ask everyone (with acks); prints "query-ack", "query-response",
 *                          then "query-done" with the counts
 *   leave                  leave gracefully, then exit
 *   quit (or EOF)          exit at once
 * SIGINT/SIGTERM exit at once, status 0. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gossip/gossip.h"
#include "lib/err.h"
#include "lib/log.h"

#define MAX_ITEMS 32

struct peer {
  uv_loop_t loop;
  uv_pipe_t in;
  uv_signal_t sigint, sigterm;
  struct gossip *g;
  char line[8192];
  size_t linelen;
  bool stopping;
  bool respond;
  const char *node;
  int query_acks, query_responses;
};

static void emit(json_t *o) {
  char *s = json_dumps(o, JSON_COMPACT);
  printf("%s\n", s);
  fflush(stdout);
  free(s);
  json_decref(o);
}

static json_t *member_json(const struct gossip_member *m) {
  json_t *tags = json_object();
  for (size_t i = 0; i < m->ntags; i++) json_object_set_new(tags, m->tags[i].key, json_string(m->tags[i].value));
  static const char *status[] = {"none", "alive", "leaving", "left", "failed"};
  return json_pack("{s:s,s:s,s:i,s:s,s:i,s:o,s:[iii],s:[iii]}", "name", m->name, "addr", m->addr,
                   "port", (int)m->port, "status", status[m->status], "status_code", (int)m->status,
                   "tags", tags, "protocol", m->protocol_min, m->protocol_max, m->protocol_cur,
                   "delegate", m->delegate_min, m->delegate_max, m->delegate_cur);
}

static void on_member(void *ctx, enum gossip_event ev, const struct gossip_member *m) {
  (void)ctx;
  static const char *names[] = {"member-join", "member-leave", "member-failed", "member-update",
                                "member-reap"};
  emit(json_pack("{s:s,s:o}", "event", names[ev], "member", member_json(m)));
}

static void on_user_event(void *ctx, const struct gossip_user_event *ev) {
  (void)ctx;
  emit(json_pack("{s:s,s:s,s:s%,s:I,s:b}", "event", "user", "name", ev->name, "payload",
                 ev->payload ? (const char *)ev->payload : "", ev->payload_len, "ltime",
                 (json_int_t)ev->ltime, "coalesce", ev->coalesce));
}

static void on_query(void *ctx, const struct gossip_query *q) {
  struct peer *p = ctx;
  emit(json_pack("{s:s,s:s,s:s%,s:s}", "event", "query", "name", q->name, "payload",
                 q->payload ? (const char *)q->payload : "", q->payload_len, "from",
                 q->token.source_node));
  if (p->respond && p->g) {
    char out[600];
    int n = snprintf(out, sizeof out, "%s:%.*s", p->node, (int)(q->payload_len > 500 ? 500 : q->payload_len),
                     q->payload ? (const char *)q->payload : "");
    int rc = gossip_query_respond(p->g, &q->token, out, (size_t)n);
    if (rc) emit(json_pack("{s:s,s:s}", "event", "error", "error", cc_strerror(rc)));
  }
}

static void on_query_result(void *arg, enum gossip_query_result what, const char *from,
                            const uint8_t *payload, size_t len) {
  struct peer *p = arg;
  if (what == GOSSIP_QUERY_ACK) {
    p->query_acks++;
    emit(json_pack("{s:s,s:s}", "event", "query-ack", "from", from));
  } else if (what == GOSSIP_QUERY_RESPONSE) {
    p->query_responses++;
    emit(json_pack("{s:s,s:s,s:s%}", "event", "query-response", "from", from, "payload",
                   payload ? (const char *)payload : "", len));
  } else {
    emit(json_pack("{s:s,s:i,s:i}", "event", "query-done", "acks", p->query_acks, "responses",
                   p->query_responses));
    p->query_acks = p->query_responses = 0;
  }
}

static void on_joined(void *arg, int n, int err) {
  (void)arg;
  emit(json_pack("{s:s,s:i,s:s}", "event", "joined", "n", n, "error", err ? cc_strerror(err) : ""));
}

static void on_closed(uv_handle_t *h) { (void)h; }

static void stop(struct peer *p) {
  if (p->stopping) return;
  p->stopping = true;
  if (p->g) gossip_stop(p->g, NULL, NULL);
  p->g = NULL;
  uv_close((uv_handle_t *)&p->in, on_closed);
  uv_close((uv_handle_t *)&p->sigint, on_closed);
  uv_close((uv_handle_t *)&p->sigterm, on_closed);
}

static void on_left(void *arg, int err) {
  struct peer *p = arg;
  emit(json_pack("{s:s,s:s}", "event", "left", "error", err ? cc_strerror(err) : ""));
  stop(p);
}

static void print_members(struct peer *p) {
  struct gossip_member *ms;
  size_t n;
  gossip_members(p->g, &ms, &n);
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, member_json(&ms[i]));
  gossip_members_free(ms, n);
  emit(json_pack("{s:s,s:o}", "event", "members", "members", arr));
}

/* Splits "k=v" items into tags (pointing into the line). */
static size_t parse_tags(char *rest, struct gossip_tag *tags) {
  size_t n = 0;
  for (char *tok = strtok(rest, " "); tok && n < MAX_ITEMS; tok = strtok(NULL, " ")) {
    char *eq = strchr(tok, '=');
    if (!eq) continue;
    *eq = '\0';
    tags[n].key = tok;
    tags[n].value = eq + 1;
    n++;
  }
  return n;
}

static void command(struct peer *p, char *line) {
  if (p->stopping || !p->g) return;
  char *rest = strchr(line, ' ');
  if (rest) *rest++ = '\0';
  int rc = 0;
  if (strcmp(line, "event") == 0 && rest) {
    char *payload = strchr(rest, ' ');
    if (payload) *payload++ = '\0';
    rc = gossip_user_event(p->g, rest, payload, payload ? strlen(payload) : 0, false);
  } else if (strcmp(line, "members") == 0) {
    print_members(p);
  } else if (strcmp(line, "join") == 0 && rest) {
    const char *a[1] = {rest};
    rc = gossip_join(p->g, a, 1, on_joined, p);
  } else if (strcmp(line, "tags") == 0) {
    struct gossip_tag tags[MAX_ITEMS];
    size_t n = rest ? parse_tags(rest, tags) : 0;
    rc = gossip_set_tags(p->g, tags, n);
  } else if (strcmp(line, "force-leave") == 0 && rest) {
    rc = gossip_force_leave(p->g, rest, false);
  } else if (strcmp(line, "query") == 0 && rest) {
    char *payload = strchr(rest, ' ');
    if (payload) *payload++ = '\0';
    struct gossip_query_params qp = {.request_ack = true, .timeout = 3000};
    rc = gossip_query(p->g, rest, payload, payload ? strlen(payload) : 0, &qp, on_query_result, p);
  } else if (strcmp(line, "leave") == 0) {
    rc = gossip_leave(p->g, on_left, p);
  } else if (strcmp(line, "quit") == 0) {
    stop(p);
    return;
  } else {
    rc = CC_EINVAL;
  }
  if (rc) emit(json_pack("{s:s,s:s,s:s}", "event", "error", "command", line, "error", cc_strerror(rc)));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  static char b[4096];
  (void)suggested;
  buf->base = b;
  buf->len = sizeof b;
}

static void on_stdin(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct peer *p = s->data;
  if (nread < 0) {
    stop(p);
    return;
  }
  for (ssize_t i = 0; i < nread; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      p->line[p->linelen] = '\0';
      if (p->linelen && p->line[p->linelen - 1] == '\r') p->line[p->linelen - 1] = '\0';
      command(p, p->line);
      p->linelen = 0;
    } else if (p->linelen + 1 < sizeof p->line) {
      p->line[p->linelen++] = c;
    }
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  stop(h->data);
}

static void usage(void) {
  fprintf(stderr, "usage: gossip_peer -node NAME -bind IP:PORT [-tag k=v]... [-join IP:PORT]...\n"
                  "                   [-log-level LEVEL] [-profile lan|wan] [-reconnect-timeout MS]\n"
                  "                   [-encrypt KEY]... [-verify-incoming 0|1] [-verify-outgoing 0|1]\n");
  exit(2);
}

int main(int argc, char **argv) {
  struct peer p;
  memset(&p, 0, sizeof p);
  struct gossip_config cfg;
  gossip_config_default(&cfg);
  struct gossip_tag tags[MAX_ITEMS];
  size_t ntags = 0;
  const char *joins[MAX_ITEMS], *keys[MAX_ITEMS];
  size_t njoins = 0, nkeys = 0;
  char bind_ip[64] = "127.0.0.1";
  log_set_level(LOG_WARN);
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i];
    if (strcmp(a, "-respond") == 0) { /* the one flag without a value */
      p.respond = true;
      i--;
      continue;
    }
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (strcmp(a, "-node") == 0) {
      cfg.node_name = v;
    } else if (strcmp(a, "-bind") == 0) {
      const char *colon = strrchr(v, ':');
      if (!colon || (size_t)(colon - v) >= sizeof bind_ip) usage();
      memcpy(bind_ip, v, (size_t)(colon - v));
      bind_ip[colon - v] = '\0';
      cfg.bind_port = (uint16_t)atoi(colon + 1);
    } else if (strcmp(a, "-tag") == 0 && ntags < MAX_ITEMS) {
      char *kv = strdup(v), *eq = strchr(kv, '=');
      if (!eq) usage();
      *eq = '\0';
      tags[ntags].key = kv;
      tags[ntags].value = eq + 1;
      ntags++;
    } else if (strcmp(a, "-join") == 0 && njoins < MAX_ITEMS) {
      joins[njoins++] = v;
    } else if (strcmp(a, "-log-level") == 0) {
      enum log_level lv;
      if (log_parse_level(v, &lv) == 0) log_set_level(lv);
    } else if (strcmp(a, "-profile") == 0) {
      if (strcmp(v, "wan") == 0) gossip_timing_wan(&cfg.timing);
    } else if (strcmp(a, "-encrypt") == 0 && nkeys < MAX_ITEMS) {
      keys[nkeys++] = v; /* the first is primary */
    } else if (strcmp(a, "-verify-incoming") == 0) {
      cfg.encrypt_verify_incoming = atoi(v) != 0;
    } else if (strcmp(a, "-verify-outgoing") == 0) {
      cfg.encrypt_verify_outgoing = atoi(v) != 0;
    } else if (strcmp(a, "-reconnect-timeout") == 0) {
      cfg.reconnect_timeout = strtoull(v, NULL, 10);
    } else {
      usage();
    }
  }
  if (!cfg.node_name) usage();
  p.node = cfg.node_name;
  cfg.bind_addr = bind_ip;
  cfg.tags = tags;
  cfg.ntags = ntags;
  cfg.encrypt_keys = keys;
  cfg.nencrypt_keys = nkeys;
  cfg.on_member = on_member;
  cfg.on_user_event = on_user_event;
  cfg.on_query = on_query;
  cfg.cb_ctx = &p;
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&p.loop);
  char err[256];
  int rc = gossip_start(&p.loop, &cfg, &p.g, err, sizeof err);
  if (rc) {
    fprintf(stderr, "gossip_peer: %s\n", err);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    uv_loop_close(&p.loop);
    return 1;
  }
  struct gossip_member self;
  gossip_local_member(p.g, &self);
  emit(json_pack("{s:s,s:i}", "event", "ready", "port", (int)self.port));
  gossip_member_free(&self);

  uv_pipe_init(&p.loop, &p.in, 0);
  uv_pipe_open(&p.in, 0);
  p.in.data = &p;
  uv_read_start((uv_stream_t *)&p.in, on_alloc, on_stdin);
  uv_signal_init(&p.loop, &p.sigint);
  uv_signal_init(&p.loop, &p.sigterm);
  p.sigint.data = p.sigterm.data = &p;
  uv_signal_start(&p.sigint, on_signal, SIGINT);
  uv_signal_start(&p.sigterm, on_signal, SIGTERM);
  if (njoins && gossip_join(p.g, joins, njoins, on_joined, &p) != 0) on_joined(&p, 0, CC_EINVAL);

  uv_run(&p.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&p.loop);
  for (size_t i = 0; i < ntags; i++) free(tags[i].key);
  return rc == 0 ? 0 : 3;
}
