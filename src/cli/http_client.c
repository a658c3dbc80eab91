/* http_client.c -- a small blocking HTTP/1.1 client for the CLI: one request per connection
 * ("Connection: close"), to a TCP address or a unix socket, with a connect timeout, an
 * inactivity timeout, and caps on the header and body sizes.
 *
 * The CLI makes one or a few requests and exits, so it has no loop, no pooling and no
 * keep-alive. Its error texts copy what Go's net/http client gives Consul's CLI
 * (`Get "http://127.0.0.1:8500/v1/kv/a": dial tcp 127.0.0.1:8500: connect: connection
 * refused`), because users and scripts grep for them. The response parser is incremental
 * (fed as bytes arrive) so a 256 MiB export is parsed in one pass. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "cli/internal.h"
#include "lib/alloc.h"

/* ---- Addresses ---- */

void cli__addr_free(struct cli__addr *a)
{
  free(a->authority);
  free(a->host);
  free(a->port);
  free(a->path_prefix);
  free(a->unix_path);
  memset(a, 0, sizeof(*a));
}

/* Splits "host:port", "[v6]:port" or "host" into host and port (default by scheme). */
static int split_host_port(const char *auth, bool tls, struct cli__addr *a, char *err,
                           size_t errlen)
{
  const char *def = tls ? "443" : "80";
  if (auth[0] == '[') {
    const char *rb = strchr(auth, ']');
    if (!rb) {
      snprintf(err, errlen, "address %s: missing ']' in address", auth);
      return -1;
    }
    a->host = xstrndup(auth + 1, (size_t)(rb - auth - 1));
    if (rb[1] == ':' && rb[2]) a->port = xstrdup(rb + 2);
    else if (rb[1] == '\0' || (rb[1] == ':' && !rb[2])) a->port = xstrdup(def);
    else {
      snprintf(err, errlen, "address %s: unexpected characters after ']'", auth);
      return -1;
    }
  } else {
    const char *c = strchr(auth, ':');
    if (c && strchr(c + 1, ':')) {
      snprintf(err, errlen, "address %s: too many colons in address", auth);
      return -1;
    }
    if (c) {
      a->host = xstrndup(auth, (size_t)(c - auth));
      a->port = xstrdup(c[1] ? c + 1 : def);
    } else {
      a->host = xstrdup(auth);
      a->port = xstrdup(def);
    }
  }
  for (const char *p = a->port; *p; p++) {
    if (!isdigit((unsigned char)*p) || p - a->port > 5) {
      snprintf(err, errlen, "address %s: invalid port", auth);
      return -1;
    }
  }
  if (atoi(a->port) > 65535) {
    snprintf(err, errlen, "address %s: invalid port", auth);
    return -1;
  }
  /* Go dials an empty host as the local system. */
  if (a->host[0] == '\0') {
    free(a->host);
    a->host = xstrdup("127.0.0.1");
  }
  return 0;
}

int cli__addr_parse(const char *s, bool tls_default, struct cli__addr *a, char *err,
                    size_t errlen)
{
  memset(a, 0, sizeof(*a));
  a->scheme = CLI__HTTP;
  a->tls = tls_default;
  const char *rest = s;
  const char *sep = strstr(s, "://");
  bool http_like = false;
  if (sep) {
    size_t sl = (size_t)(sep - s);
    rest = sep + 3;
    if (sl == 4 && memcmp(s, "http", 4) == 0) {
      /* Never downgrade when TLS was asked for with CONSUL_HTTP_SSL (as Consul). */
      http_like = true;
    } else if (sl == 5 && memcmp(s, "https", 5) == 0) {
      a->tls = true;
      http_like = true;
    } else if (sl == 4 && memcmp(s, "unix", 4) == 0) {
      a->scheme = CLI__UNIX;
      if (strlen(rest) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "unix socket path too long: %s", rest);
        return -1;
      }
      a->unix_path = xstrdup(rest);
      a->authority = xstrdup(rest);
      a->host = xstrdup("localhost");
      a->port = xstrdup("");
      a->path_prefix = xstrdup("");
      return 0;
    } else {
      snprintf(err, errlen, "Unknown protocol scheme: %.*s", (int)sl, s);
      return -1;
    }
  }
  if (a->tls) a->scheme = CLI__HTTPS;
  /* Only an explicit scheme may carry a path prefix (Consul splits it off then only). */
  const char *slash = http_like ? strchr(rest, '/') : NULL;
  if (slash) {
    a->authority = xstrndup(rest, (size_t)(slash - rest));
    a->path_prefix = xstrdup(slash);
    size_t pl = strlen(a->path_prefix);
    if (pl > 0 && a->path_prefix[pl - 1] == '/') a->path_prefix[pl - 1] = '\0';
  } else {
    a->authority = xstrdup(rest);
    a->path_prefix = xstrdup("");
  }
  if (split_host_port(a->authority, a->tls, a, err, errlen) != 0) {
    cli__addr_free(a);
    return -1;
  }
  return 0;
}

/* ---- Response parsing ---- */

enum {
  P_STATUS,      /* waiting for the status line */
  P_HEADERS,
  P_BODY_LENGTH, /* Content-Length body */
  P_BODY_EOF,    /* body until the peer closes */
  P_CHUNK_SIZE,
  P_CHUNK_DATA,
  P_CHUNK_CRLF,
  P_TRAILERS,
  P_DONE,
};

void cli__http_parser_init(struct cli__http_parser *p, size_t max_body)
{
  memset(p, 0, sizeof(*p));
  p->state = P_STATUS;
  p->max_body = max_body;
}

void cli__http_parser_free(struct cli__http_parser *p) { buf_free(&p->raw); }

void cli__http_resp_free(struct cli__http_resp *r)
{
  buf_free(&r->body);
  memset(r, 0, sizeof(*r));
}

/* Takes one line (without CRLF or LF) off the front of raw. Returns its length in *len and a
 * pointer to it valid until the next consume, or NULL when no full line is buffered. */
static const char *take_line(struct cli__http_parser *p, size_t *len, size_t *eaten)
{
  char *nl = p->raw.len ? memchr(p->raw.data, '\n', p->raw.len) : NULL;
  if (!nl) return NULL;
  size_t l = (size_t)(nl - p->raw.data);
  *eaten = l + 1;
  if (l > 0 && p->raw.data[l - 1] == '\r') l--;
  p->raw.data[l] = '\0';
  *len = l;
  return p->raw.data;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value)
{
  size_t n = strlen(name);
  if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0) return false;
  const char *v = line + n + 1;
  while (*v == ' ' || *v == '\t') v++;
  *value = v;
  return true;
}

static int body_append(struct cli__http_parser *p, struct cli__http_resp *resp,
                       const char *d, size_t n, char *err, size_t errlen)
{
  if (p->on_body && resp->status == 200) {
    p->on_body(p->on_body_arg, d, n);
    return 0;
  }
  if (resp->body.len + n > p->max_body) {
    snprintf(err, errlen, "response body larger than %zu bytes", p->max_body);
    return -1;
  }
  buf_append(&resp->body, d, n);
  return 0;
}

/* Advances through whatever is buffered. Returns 1 done, 0 need more, -1 error. */
static int parse_step(struct cli__http_parser *p, struct cli__http_resp *resp, char *err,
                      size_t errlen)
{
  for (;;) {
    size_t len, eaten;
    const char *line;
    switch (p->state) {
    case P_STATUS:
    case P_HEADERS:
    case P_TRAILERS:
      line = take_line(p, &len, &eaten);
      if (!line) {
        if (p->header_bytes + p->raw.len > CLI__MAX_HEADER) {
          snprintf(err, errlen, "response headers larger than %zu bytes", CLI__MAX_HEADER);
          return -1;
        }
        return 0;
      }
      p->header_bytes += eaten;
      if (p->header_bytes > CLI__MAX_HEADER) {
        snprintf(err, errlen, "response headers larger than %zu bytes", CLI__MAX_HEADER);
        return -1;
      }
      if (p->state == P_STATUS) {
        int major, minor, status;
        if (sscanf(line, "HTTP/%d.%d %3d", &major, &minor, &status) != 3 || major != 1 ||
            status < 100 || status > 999) {
          snprintf(err, errlen, "malformed HTTP response %s", line);
          return -1;
        }
        resp->status = status;
        p->state = P_HEADERS;
      } else if (p->state == P_TRAILERS) {
        if (len == 0) {
          buf_consume(&p->raw, eaten);
          p->state = P_DONE;
          return 1;
        }
      } else if (len == 0) {
        buf_consume(&p->raw, eaten);
        if (resp->status >= 100 && resp->status < 200) {
          /* An interim answer: the real one follows. */
          p->state = P_STATUS;
          p->chunked = p->has_length = false;
          continue;
        }
        if (resp->status == 204 || resp->status == 304) {
          p->state = P_DONE;
          return 1;
        }
        if (p->chunked) p->state = P_CHUNK_SIZE;
        else if (p->has_length) p->state = p->remaining ? P_BODY_LENGTH : P_DONE;
        else p->state = P_BODY_EOF;
        if (p->state == P_DONE) return 1;
        continue;
      } else {
        const char *v;
        if (header_is(line, len, "Content-Length", &v)) {
          char *end;
          errno = 0;
          unsigned long long cl = strtoull(v, &end, 10);
          if (errno || end == v || *end || !isdigit((unsigned char)*v)) {
            snprintf(err, errlen, "bad Content-Length %s", v);
            return -1;
          }
          if (cl > p->max_body) {
            snprintf(err, errlen, "response body larger than %zu bytes", p->max_body);
            return -1;
          }
          p->has_length = true;
          p->remaining = cl;
        } else if (header_is(line, len, "Transfer-Encoding", &v)) {
          /* chunked is always the last coding when present */
          size_t vl = strlen(v);
          while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
          if (vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0) p->chunked = true;
        } else if (header_is(line, len, "X-Consul-Index", &v)) {
          resp->index = strtoull(v, NULL, 10);
        }
      }
      buf_consume(&p->raw, eaten);
      break;
    case P_BODY_LENGTH: {
      size_t n = p->raw.len < p->remaining ? p->raw.len : (size_t)p->remaining;
      if (n == 0) return 0;
      if (body_append(p, resp, p->raw.data, n, err, errlen) != 0) return -1;
      buf_consume(&p->raw, n);
      p->remaining -= n;
      if (p->remaining == 0) {
        p->state = P_DONE;
        return 1;
      }
      return 0;
    }
    case P_BODY_EOF:
      if (p->raw.len == 0) return 0;
      if (body_append(p, resp, p->raw.data, p->raw.len, err, errlen) != 0) return -1;
      buf_consume(&p->raw, p->raw.len);
      return 0;
    case P_CHUNK_SIZE: {
      line = take_line(p, &len, &eaten);
      if (!line) {
        if (p->raw.len > 1024) {
          snprintf(err, errlen, "malformed chunked encoding");
          return -1;
        }
        return 0;
      }
      char *end;
      errno = 0;
      unsigned long long sz = strtoull(line, &end, 16);
      if (errno || end == line || (*end && *end != ';' && *end != ' ')) {
        snprintf(err, errlen, "malformed chunked encoding");
        return -1;
      }
      buf_consume(&p->raw, eaten);
      if (sz > p->max_body) {
        snprintf(err, errlen, "response body larger than %zu bytes", p->max_body);
        return -1;
      }
      p->remaining = sz;
      p->state = sz ? P_CHUNK_DATA : P_TRAILERS;
      break;
    }
    case P_CHUNK_DATA: {
      size_t n = p->raw.len < p->remaining ? p->raw.len : (size_t)p->remaining;
      if (n == 0) return 0;
      if (body_append(p, resp, p->raw.data, n, err, errlen) != 0) return -1;
      buf_consume(&p->raw, n);
      p->remaining -= n;
      if (p->remaining == 0) p->state = P_CHUNK_CRLF;
      break;
    }
    case P_CHUNK_CRLF:
      line = take_line(p, &len, &eaten);
      if (!line) {
        if (p->raw.len > 2) {
          snprintf(err, errlen, "malformed chunked encoding");
          return -1;
        }
        return 0;
      }
      if (len != 0) {
        snprintf(err, errlen, "malformed chunked encoding");
        return -1;
      }
      buf_consume(&p->raw, eaten);
      p->state = P_CHUNK_SIZE;
      break;
    case P_DONE: return 1;
    }
  }
}

int cli__http_parser_feed(struct cli__http_parser *p, const char *data, size_t len, bool eof,
                          struct cli__http_resp *resp, char *err, size_t errlen)
{
  if (p->state == P_DONE) return 1;
  if (len) buf_append(&p->raw, data, len);
  int rc = parse_step(p, resp, err, errlen);
  if (rc != 0 || !eof) return rc;
  if (p->state == P_BODY_EOF) {
    p->state = P_DONE;
    return 1;
  }
  /* Go's net/http: nothing at all is "EOF", a cut-off response "unexpected EOF". */
  snprintf(err, errlen, p->state == P_STATUS && p->header_bytes == 0 && p->raw.len == 0
                            ? "EOF" : "unexpected EOF");
  return -1;
}

/* ---- The request ---- */

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void errno_text(char *dst, size_t len, int e)
{
  snprintf(dst, len, "%s", strerror(e));
  if (dst[0]) dst[0] = (char)tolower((unsigned char)dst[0]);
}

/* Waits for fd to be ready for events, at most ms. Returns 1, 0 on timeout, -1 on error. */
static int wait_fd(int fd, short events, int ms)
{
  struct pollfd pfd = {.fd = fd, .events = events};
  for (;;) {
    int r = poll(&pfd, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -1 : r;
  }
}

/* Non-blocking connect with a timeout. Returns the fd, or -1 with Go's dial error text
 * ("connect: connection refused", "i/o timeout") in err. */
static int connect_timeout(const struct sockaddr *sa, socklen_t salen, int ms, char *err,
                           size_t errlen)
{
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    char es[128];
    errno_text(es, sizeof(es), errno);
    snprintf(err, errlen, "socket: %s", es);
    return -1;
  }
  if (connect(fd, sa, salen) != 0) {
    if (errno != EINPROGRESS) {
      char es[128];
      errno_text(es, sizeof(es), errno);
      snprintf(err, errlen, "connect: %s", es);
      close(fd);
      return -1;
    }
    int r = wait_fd(fd, POLLOUT, ms);
    if (r == 0) {
      snprintf(err, errlen, "i/o timeout");
      close(fd);
      return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
      char es[128];
      errno_text(es, sizeof(es), soerr ? soerr : errno);
      snprintf(err, errlen, "connect: %s", es);
      close(fd);
      return -1;
    }
  }
  return fd;
}

static void sockaddr_text(const struct sockaddr *sa, char *out, size_t len)
{
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    snprintf(out, len, "%s:%u", ip, ntohs(in->sin_port));
  } else {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    snprintf(out, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
  }
}

/* Connects to the agent. Returns the fd, or -1 with "dial tcp ...: ..." in err. */
static int dial(const struct cli__ctx *ctx, const struct cli__addr *a, char *err, size_t errlen)
{
  char e[512];
  if (a->scheme == CLI__UNIX) {
    struct sockaddr_un su;
    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    memcpy(su.sun_path, a->unix_path, strlen(a->unix_path) + 1);
    int fd = connect_timeout((struct sockaddr *)&su, sizeof(su), ctx->connect_timeout_ms, e,
                             sizeof(e));
    if (fd < 0) snprintf(err, errlen, "dial unix %s: %s", a->unix_path, e);
    return fd;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(a->host, a->port, &hints, &res);
  if (g != 0) {
    snprintf(err, errlen, "dial tcp: lookup %s: %s", a->host,
             g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    return -1;
  }
  int fd = -1;
  long long deadline = now_ms() + ctx->connect_timeout_ms;
  for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
    long long left = deadline - now_ms();
    char where[INET6_ADDRSTRLEN + 16];
    sockaddr_text(ai->ai_addr, where, sizeof(where));
    if (left <= 0) {
      snprintf(err, errlen, "dial tcp %s: i/o timeout", where);
      break;
    }
    fd = connect_timeout(ai->ai_addr, ai->ai_addrlen, (int)left, e, sizeof(e));
    if (fd < 0) snprintf(err, errlen, "dial tcp %s: %s", where, e);
  }
  freeaddrinfo(res);
  return fd;
}

static int send_all(int fd, const char *d, size_t n, int ms, char *err, size_t errlen)
{
  while (n > 0) {
    ssize_t w = send(fd, d, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int r = wait_fd(fd, POLLOUT, ms);
      if (r == 0) {
        snprintf(err, errlen, "write: i/o timeout");
        return -1;
      }
      continue;
    }
    if (w < 0) {
      char es[128];
      errno_text(es, sizeof(es), errno);
      snprintf(err, errlen, "write: %s", es);
      return -1;
    }
    d += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Go's url.Error operation: the method with only its first letter upper-case. */
static void method_op(const char *m, char *out, size_t len)
{
  snprintf(out, len, "%s", m);
  for (size_t i = 1; out[i]; i++) out[i] = (char)tolower((unsigned char)out[i]);
}

int cli__http_do(const struct cli__ctx *ctx, const struct cli__addr *a,
                 const struct cli__http_req *req, size_t max_body,
                 struct cli__http_resp *resp, char *err, size_t errlen)
{
  char e[CLI__ERRLEN], op[16];
  method_op(req->method, op, sizeof(op));
  memset(resp, 0, sizeof(*resp));

  /* The URL as Go prints it in errors; a unix socket path is the host, escaped. */
  struct buf url = BUF_INIT;
  buf_puts(&url, a->tls ? "https://" : "http://");
  if (a->scheme == CLI__UNIX) {
    for (const char *p = a->unix_path; *p; p++) {
      if (*p == '/') buf_puts(&url, "%2F");
      else buf_putc(&url, *p);
    }
  } else {
    buf_puts(&url, a->authority);
  }
  buf_puts(&url, a->path_prefix);
  buf_puts(&url, req->target);

  int rc = -1, fd = -1;
  struct buf out = BUF_INIT;
  struct cli__http_parser p;
  cli__http_parser_init(&p, max_body);
  p.on_body = req->on_body;
  p.on_body_arg = req->on_body_arg;

  if (a->tls) {
    snprintf(e, sizeof(e), "HTTPS is not supported by this version of Concord yet");
    goto fail;
  }
  fd = dial(ctx, a, e, sizeof(e));
  if (fd < 0) goto fail;

  buf_printf(&out, "%s %s%s HTTP/1.1\r\n", req->method, a->path_prefix, req->target);
  buf_printf(&out, "Host: %s\r\n", a->scheme == CLI__UNIX ? "localhost" : a->authority);
  buf_puts(&out, "User-Agent: concord-cli\r\nAccept: */*\r\nConnection: close\r\n");
  if (req->token) buf_printf(&out, "X-Consul-Token: %s\r\n", req->token);
  if (req->authorization) buf_printf(&out, "Authorization: %s\r\n", req->authorization);
  if (req->body) {
    /* Consul's api package labels every body JSON, raw KV values included. */
    buf_printf(&out, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
               req->body_len);
  }
  buf_puts(&out, "\r\n");
  if (send_all(fd, out.data, out.len, ctx->io_timeout_ms, e, sizeof(e)) != 0) goto fail;
  if (req->body && req->body_len &&
      send_all(fd, req->body, req->body_len, ctx->io_timeout_ms, e, sizeof(e)) != 0)
    goto fail;

  char chunk[65536];
  for (;;) {
    if (req->stop && *req->stop) break;
    int r = wait_fd(fd, POLLIN, req->on_body ? 200 : ctx->io_timeout_ms);
    if (r == 0 && req->on_body) continue; /* a stream may be silent for long */
    if (r == 0) {
      snprintf(e, sizeof(e), "read: i/o timeout");
      goto fail;
    }
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) {
      /* A reset before any byte of the answer reads, like Go's, as the reset. */
      char es[128];
      errno_text(es, sizeof(es), errno);
      snprintf(e, sizeof(e), "read: %s", es);
      goto fail;
    }
    int pr = cli__http_parser_feed(&p, chunk, (size_t)n, n == 0, resp, e, sizeof(e));
    if (pr < 0) goto fail;
    if (pr == 1) break;
  }
  if (!resp->body.data) buf_reserve(&resp->body, 0), resp->body.data[0] = '\0';
  rc = 0;
  goto done;

fail:
  if (req->on_body && resp->status == 200) {
    /* a stream that broke after its 200: it simply ended (the agent went away) */
    rc = 0;
    goto done;
  }
  snprintf(err, errlen, "%s \"%s\": %s", op, url.data, e);
  cli__http_resp_free(resp);
done:
  if (fd >= 0) close(fd);
  cli__http_parser_free(&p);
  buf_free(&out);
  buf_free(&url);
  return rc;
}
