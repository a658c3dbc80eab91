/* rpc.c -- the rpc object: configuration, the listener, the housekeeping timer and the
 * orderly stop. Connections live in server.c (accepted), client.c (pooled, dialed) and raft.c
 * (Raft streams); this file only owns what they share.
 *
 * Why one port: Consul's servers take Raft and RPC on the same port (8300) and tell the two
 * apart by the first byte of each connection (agent/pool/conn.go), so an operator opens one
 * port per server. We keep that, with our own framing behind the first byte.
 *
 * Stop: every handle the rpc opens is counted in open_handles; rpc_stop closes them all and
 * the last close callback frees the rpc and runs the caller's callback. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "rpc/internal.h"

#define RPC_DEFAULT_PORT 8300
#define RPC_DEFAULT_MAX_FRAME (64u << 20)
#define RPC_LISTEN_BACKLOG 512

void rpc_config_defaults(struct rpc_config *cfg)
{
  cfg->bind_ip = "0.0.0.0";
  cfg->port = RPC_DEFAULT_PORT;
  cfg->max_frame = RPC_DEFAULT_MAX_FRAME;
  cfg->connect_timeout_ms = 5000;
  cfg->idle_timeout_ms = 120000;
}

int rpc__parse_addr(const char *addr, struct sockaddr_storage *ss)
{
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon == addr) return CC_EINVAL;
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (h[0] == '[') {
    if (hl < 3 || h[hl - 1] != ']') return CC_EINVAL;
    h++;
    hl -= 2;
  }
  if (hl >= sizeof host) return CC_EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  char *end;
  const char *ps = colon + 1;
  if (*ps < '0' || *ps > '9') return CC_EINVAL;
  long port = strtol(ps, &end, 10);
  if (*end != '\0' || port < 1 || port > 65535) return CC_EINVAL;
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return CC_EINVAL;
}

/* A peer that resets the connection while we write to it raises SIGPIPE, whose default
 * action kills the process (Raft streams are written by libraft, on our sockets). Ignored
 * process-wide unless someone installed a handler, as http/ does. */
static void ignore_sigpipe(void)
{
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

void rpc__tune_socket(uv_tcp_t *tcp)
{
  uv_tcp_nodelay(tcp, 1); /* small frames, latency matters more than packet count */
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)tcp, &fd) != 0) return;
  /* A peer that vanishes without a reset (power loss, partition) is noticed in about 30 s
   * when the connection is idle (keepalive 15 s + 3 probes 5 s apart), and in 15 s when data
   * we sent stays unacknowledged (TCP_USER_TIMEOUT): the read then fails with ETIMEDOUT and
   * everything in flight fails with CC_EIO instead of waiting for its own timeout. */
  int on = 1, idle = 15, intvl = 5, cnt = 3;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#ifdef TCP_USER_TIMEOUT
  unsigned user_timeout_ms = 15000;
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
#endif
}

static void rpc_free(struct rpc *r)
{
  rpc__handlers_free(r);
  map_free(&r->pool);
  free(r);
}

void rpc__handle_closed(struct rpc *r)
{
  if (r->open_handles > 0) r->open_handles--;
  if (!r->stopping || r->open_handles > 0) return;
  void (*cb)(void *) = r->stop_cb;
  void *arg = r->stop_arg;
  rpc__raft_detach(r);
  rpc_free(r);
  if (cb != NULL) cb(arg);
}

static void handle_close_cb(uv_handle_t *h) { rpc__handle_closed(h->data); }

static void on_connection(uv_stream_t *l, int status)
{
  struct rpc *r = l->data;
  if (status < 0) {
    log_warn("agent.rpc", "accept: %s", uv_strerror(status));
    return;
  }
  rpc__in_accept(r);
}

static void sweep_cb(uv_timer_t *t)
{
  struct rpc *r = t->data;
  uint64_t now = uv_now(r->loop);
  rpc__in_sweep(r, now);
  rpc__out_sweep(r, now);
  rpc__raft_sweep(r, now);
}

/* Coarse enough to cost nothing, fine enough that the shortest configured timeout is kept
 * within a quarter of itself. */
static uint64_t sweep_period(const struct rpc_config *cfg)
{
  uint64_t p = 1000;
  if (cfg->idle_timeout_ms / 4 < p) p = cfg->idle_timeout_ms / 4;
  if (cfg->connect_timeout_ms / 4 < p) p = cfg->connect_timeout_ms / 4;
  return p < 10 ? 10 : p;
}

int rpc_start(uv_loop_t *loop, const struct rpc_config *cfg, struct rpc **out, char *errbuf,
              size_t errlen)
{
  if (cfg->bind_ip == NULL || strlen(cfg->bind_ip) >= sizeof ((struct rpc *)0)->bind_ip) {
    snprintf(errbuf, errlen, "rpc: invalid bind address");
    return CC_EINVAL;
  }
  if (cfg->port > 65535 || cfg->max_frame < 64 || cfg->max_frame > UINT32_MAX ||
      cfg->connect_timeout_ms == 0 || cfg->idle_timeout_ms == 0) {
    snprintf(errbuf, errlen, "rpc: invalid configuration (port %d, max_frame %zu)", cfg->port,
             cfg->max_frame);
    return CC_EINVAL;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (cfg->port >= 0 && uv_ip4_addr(cfg->bind_ip, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(cfg->bind_ip, cfg->port, (struct sockaddr_in6 *)&ss) != 0) {
    snprintf(errbuf, errlen, "rpc: invalid bind address \"%s\"", cfg->bind_ip);
    return CC_EINVAL;
  }

  ignore_sigpipe();
  struct rpc *r = xcalloc(1, sizeof *r);
  r->loop = loop;
  r->cfg = *cfg;
  snprintf(r->bind_ip, sizeof r->bind_ip, "%s", cfg->bind_ip);
  r->cfg.bind_ip = r->bind_ip;
  map_init(&r->handlers);
  map_init(&r->pool);
  rpc_list_init(&r->inbound);
  rpc_list_init(&r->outbound);
  rpc_list_init(&r->deadlines);

  uv_timer_init(loop, &r->sweep);
  r->sweep.data = r;
  uv_timer_init(loop, &r->req_timer);
  r->req_timer.data = r;
  r->open_handles = 2;

  if (cfg->port >= 0) {
    uv_tcp_init(loop, &r->listener);
    r->listener.data = r;
    r->open_handles++;
    r->listening = true;
    int rv = uv_tcp_bind(&r->listener, (const struct sockaddr *)&ss, 0);
    if (rv == 0) rv = uv_listen((uv_stream_t *)&r->listener, RPC_LISTEN_BACKLOG, on_connection);
    if (rv != 0) {
      snprintf(errbuf, errlen, "rpc: listen on %s:%d: %s", cfg->bind_ip, cfg->port,
               uv_strerror(rv));
      /* The handles close on the loop; the last close callback frees r. */
      rpc_stop(r, NULL, NULL);
      return CC_EIO;
    }
  }
  uint64_t p = sweep_period(cfg);
  uv_timer_start(&r->sweep, sweep_cb, p, p);
  *out = r;
  return 0;
}

void rpc_stop(struct rpc *r, void (*cb)(void *arg), void *arg)
{
  if (r->stopping) return;
  r->stopping = true;
  r->stop_cb = cb;
  r->stop_arg = arg;
  /* Callbacks run from here on see `stopping` and cannot open anything new. */
  while (!rpc_list_empty(&r->inbound))
    rpc__in_close(RPC_CONTAINER(r->inbound.next, struct rpc_in, link));
  rpc__out_shutdown(r);
  if (r->listening) {
    r->listening = false;
    uv_close((uv_handle_t *)&r->listener, handle_close_cb);
  }
  uv_close((uv_handle_t *)&r->sweep, handle_close_cb);
  uv_close((uv_handle_t *)&r->req_timer, handle_close_cb);
}
