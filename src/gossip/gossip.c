/* gossip.c -- the public face (gossip.h): a serf member (serf.c over swim.c) on libuv
 * (io_uv.c). Everything protocol-related lives in those files; this one resolves addresses,
 * wires the pieces and forwards calls. */
#include "gossip/gossip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/io_uv.h"
#include "gossip/keyring.h"
#include "gossip/serf.h"
#include "gossip/swim.h"
#include "lib/alloc.h"
#include "lib/err.h"

struct gossip {
  uv_loop_t *loop;
  struct io_uv *io;
  struct serf *serf;
  uint16_t port;
  void (*done)(void *arg);
  void *done_arg;
};

int gossip_start(uv_loop_t *loop, const struct gossip_config *cfg, struct gossip **out,
                 char *errbuf, size_t errlen) {
  struct gossip_addr bind, adv;
  const char *bind_ip = cfg->bind_addr ? cfg->bind_addr : "0.0.0.0";
  if (gossip_addr_parse(bind_ip, cfg->bind_port, &bind) != 0) {
    snprintf(errbuf, errlen, "bind address '%s' is not an IP address", bind_ip);
    return CC_EINVAL;
  }
  bind.port = cfg->bind_port; /* the port always comes from bind_port */
  const char *adv_ip = cfg->advertise_addr;
  if (!adv_ip) {
    static const uint8_t any4[4] = {0};
    static const uint8_t any6[16] = {0};
    if ((bind.len == 4 && memcmp(bind.ip, any4, 4) == 0) ||
        (bind.len == 16 && memcmp(bind.ip, any6, 16) == 0)) {
      snprintf(errbuf, errlen, "an advertise address is required when binding to %s", bind_ip);
      return CC_EINVAL;
    }
    adv = bind;
  } else if (gossip_addr_parse(adv_ip, 0, &adv) != 0) {
    snprintf(errbuf, errlen, "advertise address '%s' is not an IP address", adv_ip);
    return CC_EINVAL;
  }
  struct io_uv *io;
  uint16_t port;
  int rc = io_uv_open(loop, &bind, &io, &port, errbuf, errlen);
  if (rc) return rc;
  adv.port = cfg->advertise_port ? cfg->advertise_port : port;
  struct serf *s = serf_new(cfg, &adv, io_uv_io(io), errbuf, errlen);
  if (!s) {
    io_uv_close(io, NULL, NULL);
    return CC_EINVAL;
  }
  struct gossip *g = xcalloc(1, sizeof *g);
  g->loop = loop;
  g->io = io;
  g->serf = s;
  g->port = port;
  serf_start(s);
  *out = g;
  return 0;
}

/* The io's handles are closed: nothing can reach the protocol any more, free it. */
static void stopped(void *arg) {
  struct gossip *g = arg;
  void (*done)(void *) = g->done;
  void *done_arg = g->done_arg;
  serf_free(g->serf);
  free(g);
  if (done) done(done_arg);
}

/* Stopping may be asked from inside one of our own callbacks (a leave callback that stops, a
 * member callback that decides to quit): everything below us on the stack still uses the
 * protocol's memory, so it is only shut down here and freed from the io's close callbacks. */
void gossip_stop(struct gossip *g, void (*done)(void *arg), void *arg) {
  g->done = done;
  g->done_arg = arg;
  serf_shutdown(g->serf);
  io_uv_close(g->io, stopped, g);
}

int gossip_join(struct gossip *g, const char *const *addrs, size_t n,
                void (*cb)(void *arg, int nsuccess, int err), void *arg) {
  return serf_join(g->serf, addrs, n, g->port, cb, arg);
}

int gossip_leave(struct gossip *g, void (*cb)(void *arg, int err), void *arg) {
  return serf_leave(g->serf, cb, arg);
}

int gossip_force_leave(struct gossip *g, const char *node, bool prune) {
  return serf_force_leave(g->serf, node, prune);
}

int gossip_set_tags(struct gossip *g, const struct gossip_tag *tags, size_t n) {
  return serf_set_tags(g->serf, tags, n);
}

int gossip_user_event(struct gossip *g, const char *name, const void *payload, size_t len,
                      bool coalesce) {
  return serf_user_event(g->serf, name, payload, len, coalesce);
}

int gossip_query(struct gossip *g, const char *name, const void *payload, size_t len,
                 const struct gossip_query_params *params, gossip_query_cb cb, void *arg) {
  return serf_query(g->serf, name, payload, len, params, cb, arg);
}

int gossip_query_respond(struct gossip *g, const struct gossip_query_token *t, const void *payload,
                         size_t len) {
  return serf_query_respond(g->serf, t, payload, len);
}

int gossip_members(struct gossip *g, struct gossip_member **out, size_t *n) {
  return serf_members(g->serf, out, n);
}

size_t gossip_member_count(struct gossip *g) { return serf_num_members(g->serf); }

int gossip_local_member(struct gossip *g, struct gossip_member *out) {
  return serf_local_member(g->serf, out);
}

int gossip_health_score(struct gossip *g) { return serf_health_score(g->serf); }

int gossip_key_op(struct gossip *g, enum gossip_key_op op, const char *key, gossip_key_cb cb,
                  void *arg, char *errbuf, size_t errlen) {
  return serf_keys_op(g->serf, op, key, cb, arg, errbuf, errlen);
}

size_t gossip_local_keys(struct gossip *g, char (*out)[48], size_t max) {
  const struct keyring *k = &serf_ml(g->serf)->cfg.keyring;
  size_t n = k->n < max ? k->n : max;
  for (size_t i = 0; i < n; i++) keyring_encode(k, i, out[i]);
  return n;
}
