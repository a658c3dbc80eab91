/* cli_harness.h -- what the CLI unit tests share: a scripted HTTP server on a thread (each
 * connection gets the next canned reply; the request bytes are kept for assertions), and
 * running cli_main in-process with captured stdout/stderr, a fake environment and an exit
 * code. Included by one test file each; everything is static. */
#ifndef CONCORD_TESTS_CLI_HARNESS_H
#define CONCORD_TESTS_CLI_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/internal.h"
#include "lib/alloc.h"
#include "lib/buf.h"

#define MAX_EXCHANGES 16

struct fake {
  int lfd;
  int port;
  pthread_t thread;
  int n;                             /* exchanges scripted */
  const char *replies[MAX_EXCHANGES]; /* raw bytes to answer each connection with */
  char *requests[MAX_EXCHANGES];     /* what each connection sent (head and body) */
  int served;
};

/* Reads one request: headers, then Content-Length bytes of body. */
static inline char *read_request(int fd)
{
  struct buf b = BUF_INIT;
  char tmp[4096];
  size_t need = (size_t)-1;
  while (b.len < need) {
    ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
    if (r <= 0) break;
    buf_append(&b, tmp, (size_t)r);
    char *end = strstr(b.data, "\r\n\r\n");
    if (end && need == (size_t)-1) {
      size_t head = (size_t)(end - b.data) + 4;
      char *cl = strcasestr(b.data, "Content-Length:");
      need = head + (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
    }
  }
  if (!b.data) buf_puts(&b, "");
  return buf_steal(&b, NULL);
}

static inline void *fake_main(void *arg)
{
  struct fake *f = arg;
  for (int i = 0; i < f->n; i++) {
    int c = accept(f->lfd, NULL, NULL);
    if (c < 0) break;
    f->requests[i] = read_request(c);
    /* counted before the answer goes out: the test reads `served` as soon as its command
     * has the answer, so counting after the send raced with it */
    __atomic_add_fetch(&f->served, 1, __ATOMIC_SEQ_CST);
    const char *rep = f->replies[i];
    size_t len = strlen(rep);
    while (len) {
      ssize_t w = send(c, rep, len, MSG_NOSIGNAL);
      if (w <= 0) break;
      rep += w;
      len -= (size_t)w;
    }
    close(c);
  }
  return NULL;
}

static inline void fake_start(struct fake *f, int n, ...)
{
  memset(f, 0, sizeof(*f));
  f->n = n;
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) f->replies[i] = va_arg(ap, const char *);
  va_end(ap);
  f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(f->lfd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(f->lfd, 8), 0);
  socklen_t sl = sizeof(sa);
  getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
  f->port = ntohs(sa.sin_port);
  assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static inline void fake_stop(struct fake *f)
{
  /* Unblock an accept that will never come. */
  shutdown(f->lfd, SHUT_RDWR);
  pthread_join(f->thread, NULL);
  close(f->lfd);
  for (int i = 0; i < MAX_EXCHANGES; i++) free(f->requests[i]);
}

/* A port nothing listens on: bind one, note it, close it. */
static inline int dead_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  socklen_t sl = sizeof(sa);
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  close(fd);
  return ntohs(sa.sin_port);
}

/* ---- Running a command with captured streams ---- */

struct run {
  int code;
  char *out, *err;
  size_t outlen, errlen;
};

static const char *env_table[16];

static inline const char *fake_getenv(void *arg, const char *name)
{
  (void)arg;
  size_t n = strlen(name);
  for (int i = 0; env_table[i]; i++)
    if (strncmp(env_table[i], name, n) == 0 && env_table[i][n] == '=') return env_table[i] + n + 1;
  return NULL;
}

/* Runs `concord args...` (NULL-terminated) with the given stdin text and environment
 * entries ("NAME=value", NULL-terminated list in env_table). */
static inline struct run run_cli(const char *stdin_text, const char *const *args)
{
  struct run r;
  memset(&r, 0, sizeof(r));
  char *argv[32];
  int argc = 0;
  for (; args[argc]; argc++) argv[argc] = (char *)args[argc];
  argv[argc] = NULL;
  FILE *out = open_memstream(&r.out, &r.outlen);
  FILE *err = open_memstream(&r.err, &r.errlen);
  const char *in_text = stdin_text ? stdin_text : "";
  FILE *in = fmemopen((void *)in_text, strlen(in_text) ? strlen(in_text) : 1, "r");
  if (!stdin_text || !stdin_text[0]) fgetc(in); /* leave it at EOF */
  struct cli__ctx ctx = {
      .out = out,
      .err = err,
      .in = in,
      .getenv = fake_getenv,
      .connect_timeout_ms = 5000,
      .io_timeout_ms = 5000,
  };
  r.code = cli__dispatch(&ctx, argc, argv);
  fclose(out);
  fclose(err);
  fclose(in);
  return r;
}

static inline void run_free(struct run *r)
{
  free(r->out);
  free(r->err);
}

#define RUN(stdin_text, ...) run_cli(stdin_text, (const char *const[]){__VA_ARGS__, NULL})

static char addr_env[64];

static inline void set_addr(int port)
{
  snprintf(addr_env, sizeof(addr_env), "CONSUL_HTTP_ADDR=127.0.0.1:%d", port);
  env_table[0] = addr_env;
  env_table[1] = NULL;
}

/* A canned answer with a JSON content type. Returns one of a few rotating static buffers,
 * enough for the exchanges of one scripted server. */
static inline char *reply(int status, const char *body)
{
  static char bufs[MAX_EXCHANGES][8192];
  static int next;
  char *b = bufs[next++ % MAX_EXCHANGES];
  snprintf(b, 8192, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
           "\r\n%s", status, strlen(body), body);
  return b;
}

#endif
