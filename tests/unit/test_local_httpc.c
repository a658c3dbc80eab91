/* test_local_httpc.c -- https in the check client (src/local/httpc.c over src/local/tls.c)
 * against an in-process TLS server: a thread with blocking sockets and OpenSSL, serving
 * certificates generated here at run time (a CA the client trusts through SSL_CERT_FILE, a
 * self-signed one, one without IP SANs, an expired one). The client runs on a real libuv loop
 * and each case checks the result as a check would report it: verified and passing, Go's
 * texts for an unknown authority / a name mismatch / no IP SANs / an expired certificate,
 * TLSSkipVerify, TLSServerName, a relative redirect kept on https, the body cap, the deadline
 * during a handshake that never comes, and plain http still working alongside. */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <sys/socket.h>
#include <uv.h>

#include "local/httpc.h"

/* ---- certificates ---- */

static EVP_PKEY *ca_key;
static X509 *ca_cert;
static char ca_path[64];

/* A v3 certificate for key, signed by issuer (NULL: self-signed). Caller owns it. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, long from_s, long to_s,
                       bool ca, X509 *issuer, EVP_PKEY *issuer_key)
{
  static long serial = 1;
  X509 *x = X509_new();
  assert_non_null(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), from_s);
  X509_gmtime_adj(X509_getm_notAfter(x), to_s);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
  X509V3_CTX v;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
  if (san) {
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, NID_subject_alt_name, san);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
  if (ca) {
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, NID_basic_constraints, "critical,CA:TRUE");
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
  assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return x;
}

/* ---- the server thread ---- */

enum srv_kind { SRV_TRUSTED, SRV_SELF_SIGNED, SRV_NO_IP_SAN, SRV_EXPIRED, SRV_SILENT };

struct tls_server {
  int fd;
  int port;
  SSL_CTX *ctx; /* NULL: SRV_SILENT, accepts and never answers */
  pthread_t th;
  int served;
};

static void serve_one(struct tls_server *s, int c)
{
  SSL *ssl = SSL_new(s->ctx);
  SSL_set_fd(ssl, c);
  if (SSL_accept(ssl) != 1) { /* the client refused the certificate */
    SSL_free(ssl);
    ERR_clear_error();
    return;
  }
  char req[8192];
  size_t len = 0;
  while (len < sizeof req - 1) {
    int n = SSL_read(ssl, req + len, (int)(sizeof req - 1 - len));
    if (n <= 0) break;
    len += (size_t)n;
    req[len] = '\0';
    if (strstr(req, "\r\n\r\n")) break;
  }
  req[len] = '\0';
  char head[512];
  if (strncmp(req, "GET /moved ", 11) == 0) {
    snprintf(head, sizeof head, "HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n");
    SSL_write(ssl, head, (int)strlen(head));
  } else if (strncmp(req, "GET /big ", 9) == 0) {
    static char big[100000];
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = 'E';
    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof big);
    SSL_write(ssl, head, (int)strlen(head));
    SSL_write(ssl, big, sizeof big);
  } else {
    const char *host = strstr(req, "\r\nHost: ");
    char body[128];
    snprintf(body, sizeof body, "hello tls %.*s", host ? (int)strcspn(host + 8, "\r") : 0,
             host ? host + 8 : "");
    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    SSL_write(ssl, head, (int)strlen(head));
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
}

static void *server_main(void *arg)
{
  struct tls_server *s = arg;
  for (;;) {
    int c = accept(s->fd, NULL, NULL);
    if (c < 0) return NULL; /* shut down */
    s->served++;
    if (s->ctx) {
      serve_one(s, c);
      close(c);
    } else {
      char b[4096];
      while (recv(c, b, sizeof b, 0) > 0) {
      } /* never answers; ends when the client closes */
      close(c);
    }
  }
}

static void server_start(struct tls_server *s, enum srv_kind kind)
{
  memset(s, 0, sizeof *s);
  if (kind != SRV_SILENT) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *cert;
    switch (kind) {
    case SRV_TRUSTED:
      cert = make_cert(key, "localhost", "DNS:localhost,IP:127.0.0.1", -60, 86400, false,
                       ca_cert, ca_key);
      break;
    case SRV_NO_IP_SAN:
      cert = make_cert(key, "localhost", "DNS:localhost", -60, 86400, false, ca_cert, ca_key);
      break;
    case SRV_EXPIRED:
      cert = make_cert(key, "localhost", "DNS:localhost,IP:127.0.0.1", -7200, -3600, false,
                       ca_cert, ca_key);
      break;
    default:
      cert = make_cert(key, "localhost", "DNS:localhost,IP:127.0.0.1", -60, 86400, false, NULL,
                       NULL);
      break;
    }
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(s->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, key), 1);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(s->fd, 16), 0);
  socklen_t al = sizeof a;
  getsockname(s->fd, (struct sockaddr *)&a, &al);
  s->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_stop(struct tls_server *s)
{
  shutdown(s->fd, SHUT_RDWR);
  pthread_join(s->th, NULL);
  close(s->fd);
  SSL_CTX_free(s->ctx);
}

/* ---- the client ---- */

struct outcome {
  bool done;
  int code;
  char *body, *error;
  size_t body_len, body_total;
};

static void on_result(void *arg, const struct local_httpc_result *res)
{
  struct outcome *o = arg;
  o->done = true;
  o->code = res->status_code;
  o->body = strndup(res->body, res->body_len);
  o->body_len = res->body_len;
  o->body_total = res->body_total;
  o->error = res->error ? strdup(res->error) : NULL;
}

/* One request to url on a fresh loop, run to completion. */
static struct outcome fetch(const char *url, bool skip, const char *server_name, size_t max_body,
                            uint64_t timeout_ms)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct outcome o = {0};
  struct local_httpc_req req = {.url = url, .timeout_ms = timeout_ms, .max_body = max_body,
                                .tls_skip_verify = skip, .tls_server_name = server_name};
  local__httpc_start(&loop, &req, on_result, &o);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once every handle of the client is closed */
  assert_true(o.done);
  assert_int_equal(uv_loop_close(&loop), 0);
  return o;
}

static void outcome_free(struct outcome *o)
{
  free(o->body);
  free(o->error);
}

static char *urlf(const char *fmt, int port)
{
  static char u[128];
  snprintf(u, sizeof u, fmt, port);
  return u;
}

/* ---- cases ---- */

static void test_trusted_passes(void **st)
{
  (void)st;
  struct tls_server s;
  server_start(&s, SRV_TRUSTED);
  struct outcome o = fetch(urlf("https://127.0.0.1:%d/ok", s.port), false, NULL, 4096, 5000);
  assert_null(o.error);
  assert_int_equal(o.code, 200);
  char want[128];
  snprintf(want, sizeof want, "hello tls 127.0.0.1:%d", s.port);
  assert_string_equal(o.body, want);
  outcome_free(&o);
  o = fetch(urlf("https://localhost:%d/ok", s.port), false, NULL, 4096, 5000);
  assert_int_equal(o.code, 200);
  outcome_free(&o);
  server_stop(&s);
}

static void test_unknown_authority_and_skip_verify(void **st)
{
  (void)st;
  struct tls_server s;
  server_start(&s, SRV_SELF_SIGNED);
  const char *u = urlf("https://127.0.0.1:%d/ok", s.port);
  struct outcome o = fetch(u, false, NULL, 4096, 5000);
  assert_int_equal(o.code, 0);
  char want[512];
  snprintf(want, sizeof want,
           "Get \"%s\": tls: failed to verify certificate: x509: certificate signed by unknown "
           "authority", u);
  assert_string_equal(o.error, want);
  outcome_free(&o);
  o = fetch(u, true, NULL, 4096, 5000);
  assert_null(o.error);
  assert_int_equal(o.code, 200);
  outcome_free(&o);
  server_stop(&s);
}

static void test_server_name(void **st)
{
  (void)st;
  struct tls_server s;
  server_start(&s, SRV_TRUSTED);
  const char *u = urlf("https://127.0.0.1:%d/ok", s.port);
  struct outcome o = fetch(u, false, "other.example", 4096, 5000);
  char want[512];
  snprintf(want, sizeof want,
           "Get \"%s\": tls: failed to verify certificate: x509: certificate is valid for "
           "localhost, not other.example", u);
  assert_string_equal(o.error, want);
  outcome_free(&o);
  o = fetch(u, false, "localhost", 4096, 5000);
  assert_int_equal(o.code, 200);
  outcome_free(&o);
  /* A name mismatch is not checked with TLSSkipVerify, as Go's InsecureSkipVerify. */
  o = fetch(u, true, "other.example", 4096, 5000);
  assert_int_equal(o.code, 200);
  outcome_free(&o);
  server_stop(&s);
}

static void test_no_ip_sans(void **st)
{
  (void)st;
  struct tls_server s;
  server_start(&s, SRV_NO_IP_SAN);
  const char *u = urlf("https://127.0.0.1:%d/", s.port);
  struct outcome o = fetch(u, false, NULL, 4096, 5000);
  char want[512];
  snprintf(want, sizeof want,
           "Get \"%s\": tls: failed to verify certificate: x509: cannot validate certificate for "
           "127.0.0.1 because it doesn't contain any IP SANs", u);
  assert_string_equal(o.error, want);
  outcome_free(&o);
  server_stop(&s);
}

static void test_expired(void **st)
{
  (void)st;
  struct tls_server s;
  server_start(&s, SRV_EXPIRED);
  const char *u = urlf("https://127.0.0.1:%d/", s.port);
  struct outcome o = fetch(u, false, NULL, 4096, 5000);
  assert_int_equal(o.code, 0);
  assert_non_null(strstr(o.error, "tls: failed to verify certificate: x509: certificate has "
                                  "expired or is not yet valid: current time "));
  assert_non_null(strstr(o.error, " is after "));
  outcome_free(&o);
  server_stop(&s);
}

static void test_redirect_and_body_cap(void **st)
{
  (void)st;
  struct tls_server s;
  server_start(&s, SRV_TRUSTED);
  struct outcome o = fetch(urlf("https://127.0.0.1:%d/moved", s.port), false, NULL, 4096, 5000);
  assert_int_equal(o.code, 200);
  assert_non_null(strstr(o.body, "hello tls"));
  outcome_free(&o);
  o = fetch(urlf("https://127.0.0.1:%d/big", s.port), false, NULL, 100, 5000);
  assert_int_equal(o.code, 200);
  assert_int_equal(o.body_len, 100);
  assert_int_equal(o.body_total, 100000);
  assert_int_equal(o.body[99], 'E'); /* the last bytes are kept */
  outcome_free(&o);
  server_stop(&s);
}

static void test_handshake_deadline(void **st)
{
  (void)st;
  struct tls_server s;
  server_start(&s, SRV_SILENT);
  const char *u = urlf("https://127.0.0.1:%d/", s.port);
  struct outcome o = fetch(u, false, NULL, 4096, 200);
  char want[512];
  snprintf(want, sizeof want,
           "Get \"%s\": context deadline exceeded (Client.Timeout exceeded while awaiting "
           "headers)", u);
  assert_string_equal(o.error, want);
  outcome_free(&o);
  server_stop(&s);
}

static void test_refused(void **st)
{
  (void)st;
  /* Nothing listens: the dial error is the same as for http. */
  struct tls_server s;
  server_start(&s, SRV_SILENT);
  int port = s.port;
  server_stop(&s);
  const char *u = urlf("https://127.0.0.1:%d/", port);
  struct outcome o = fetch(u, false, NULL, 4096, 2000);
  assert_non_null(strstr(o.error, "dial tcp 127.0.0.1:"));
  assert_non_null(strstr(o.error, "connect: connection refused"));
  outcome_free(&o);
}

/* ---- main ---- */

static int setup(void **st)
{
  (void)st;
  ca_key = EVP_EC_gen("P-256");
  ca_cert = make_cert(ca_key, "Concord Test CA", NULL, -60, 86400, true, NULL, NULL);
  snprintf(ca_path, sizeof ca_path, "/tmp/concord-test-ca-XXXXXX");
  int fd = mkstemp(ca_path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  PEM_write_X509(f, ca_cert);
  fclose(f);
  /* Read by OpenSSL's default store when the client makes its context (first use). */
  setenv("SSL_CERT_FILE", ca_path, 1);
  return 0;
}

static int teardown(void **st)
{
  (void)st;
  unlink(ca_path);
  X509_free(ca_cert);
  EVP_PKEY_free(ca_key);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trusted_passes),
      cmocka_unit_test(test_unknown_authority_and_skip_verify),
      cmocka_unit_test(test_server_name),
      cmocka_unit_test(test_no_ip_sans),
      cmocka_unit_test(test_expired),
      cmocka_unit_test(test_redirect_and_body_cap),
      cmocka_unit_test(test_handshake_deadline),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
