/* tls.c -- TLS client sessions over memory BIOs (see tls.h).
 *
 * One SSL_CTX for the process, made on first use: it loads OpenSSL's default trust store once
 * (a file read; done once, then every session shares it). The handshake runs with
 * SSL_VERIFY_NONE and the peer is checked right after it, before any request byte is sent:
 * that lets the checks run in Go's order (validity period, then the name, then the chain) so
 * that the failure text is the one Go's crypto/x509 would give for the same certificate. */
#include "local/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"

struct local_tls {
  SSL *ssl;          /* owns rbio and wbio */
  BIO *rbio, *wbio;  /* rbio: ciphertext in; wbio: ciphertext out */
  char *verify_name; /* owned: the name the certificate must carry */
  bool skip_verify, verify_is_ip, done;
  char first[5]; /* the first bytes the peer sent: "HTTP/" means a plain HTTP server */
  size_t first_len;
};

static SSL_CTX *tls_ctx;

static SSL_CTX *tls_context(void)
{
  if (tls_ctx) return tls_ctx;
  SSL_CTX *c = SSL_CTX_new(TLS_client_method());
  if (!c) return NULL;
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION); /* Go's client default */
  SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);     /* checked after the handshake */
  /* An empty or absent store is not an error: verification then fails as Go's does. */
  if (SSL_CTX_set_default_verify_paths(c) != 1) ERR_clear_error();
  tls_ctx = c; /* kept for the process's life */
  return c;
}

static bool is_ip(const char *s)
{
  unsigned char b[16];
  return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

struct local_tls *local__tls_new(const char *host, const char *server_name, bool skip_verify,
                                 char *err, size_t errlen)
{
  SSL_CTX *c = tls_context();
  SSL *ssl = c ? SSL_new(c) : NULL;
  if (!ssl) {
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    snprintf(err, errlen, "tls: cannot create a TLS client: %s", r ? r : "OpenSSL failed");
    ERR_clear_error();
    return NULL;
  }
  struct local_tls *t = xcalloc(1, sizeof *t);
  t->ssl = ssl;
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->rbio || !t->wbio) abort(); /* allocation failure: as xmalloc does */
  BIO_set_mem_eof_return(t->rbio, -1); /* an empty input means "wait", not end of stream */
  SSL_set_bio(ssl, t->rbio, t->wbio);
  SSL_set_connect_state(ssl);
  const char *name = server_name && *server_name ? server_name : host;
  t->verify_name = xstrdup(name);
  t->verify_is_ip = is_ip(name);
  t->skip_verify = skip_verify;
  /* Go sends the server name as SNI unless it is an IP address. */
  if (!t->verify_is_ip && *name && SSL_set_tlsext_host_name(ssl, name) != 1) ERR_clear_error();
  return t;
}

void local__tls_free(struct local_tls *t)
{
  if (!t) return;
  SSL_free(t->ssl);
  free(t->verify_name);
  free(t);
}

void local__tls_feed(struct local_tls *t, const char *data, size_t len)
{
  if (t->first_len < sizeof t->first) {
    size_t n = sizeof t->first - t->first_len;
    if (n > len) n = len;
    memcpy(t->first + t->first_len, data, n);
    t->first_len += n;
  }
  if (len > 0) BIO_write(t->rbio, data, (int)len);
}

size_t local__tls_take(struct local_tls *t, struct buf *out)
{
  size_t total = 0;
  char chunk[16384];
  int n;
  while ((n = BIO_read(t->wbio, chunk, sizeof chunk)) > 0) {
    buf_append(out, chunk, (size_t)n);
    total += (size_t)n;
  }
  return total;
}

/* ---- Go's wording ---- */

static const char *alert_text(int alert)
{
  switch (alert) { /* crypto/tls alert.go */
  case 10: return "unexpected message";
  case 20: return "bad record MAC";
  case 40: return "handshake failure";
  case 42: return "bad certificate";
  case 43: return "unsupported certificate";
  case 44: return "revoked certificate";
  case 45: return "expired certificate";
  case 46: return "unknown certificate";
  case 47: return "illegal parameter";
  case 48: return "unknown certificate authority";
  case 49: return "access denied";
  case 50: return "error decoding message";
  case 51: return "error decrypting message";
  case 70: return "protocol version not supported";
  case 71: return "insufficient security level";
  case 80: return "internal error";
  case 90: return "user canceled";
  case 112: return "unrecognized name";
  case 116: return "certificate required";
  case 120: return "no application protocol";
  default: return NULL;
  }
}

/* Go's error for a handshake OpenSSL refused. Clears OpenSSL's error queue. */
static void handshake_error(struct local_tls *t, char *err, size_t errlen)
{
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (t->first_len == 5 && memcmp(t->first, "HTTP/", 5) == 0) {
    snprintf(err, errlen, "http: server gave HTTP response to HTTPS client");
    return;
  }
  int reason = ERR_GET_REASON(e);
  if (e && ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET) {
    const char *a = alert_text(reason - SSL_AD_REASON_OFFSET);
    if (a) snprintf(err, errlen, "remote error: tls: %s", a);
    else snprintf(err, errlen, "remote error: tls: alert(%d)", reason - SSL_AD_REASON_OFFSET);
    return;
  }
  if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
      (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
       reason == SSL_R_UNKNOWN_PROTOCOL)) {
    snprintf(err, errlen, "tls: first record does not look like a TLS handshake");
    return;
  }
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(err, errlen, "tls: %s", r ? r : "handshake failure");
}

static void format_time(const ASN1_TIME *at, char *out, size_t outlen)
{
  struct tm tm;
  if (!at || ASN1_TIME_to_tm(at, &tm) != 1) {
    snprintf(out, outlen, "?");
    return;
  }
  strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* x509.CertificateInvalidError{Expired}: "current time ... is after/before ...". */
static bool validity_error(X509 *leaf, char *err, size_t errlen)
{
  const ASN1_TIME *nb = X509_get0_notBefore(leaf), *na = X509_get0_notAfter(leaf);
  bool early = X509_cmp_current_time(nb) > 0, late = X509_cmp_current_time(na) < 0;
  if (!early && !late) return false;
  char now[40], when[40];
  time_t tnow = time(NULL);
  struct tm tm;
  gmtime_r(&tnow, &tm);
  strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
  format_time(early ? nb : na, when, sizeof when);
  snprintf(err, errlen,
           "tls: failed to verify certificate: x509: certificate has expired or is not yet "
           "valid: current time %s is %s %s", now, early ? "before" : "after", when);
  return true;
}

/* x509.HostnameError: the names the certificate is valid for, as Go lists them. */
static bool name_error(struct local_tls *t, X509 *leaf, char *err, size_t errlen)
{
  const char *name = t->verify_name;
  int ok = t->verify_is_ip ? X509_check_ip_asc(leaf, name, 0)
                           : X509_check_host(leaf, name, 0,
                                             X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                                 X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                                             NULL);
  if (ok == 1) return false;
  struct buf valid = BUF_INIT;
  GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
  int n = sans ? sk_GENERAL_NAME_num(sans) : 0;
  for (int i = 0; i < n && valid.len < 1024; i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
    char one[INET6_ADDRSTRLEN + 1] = "";
    if (t->verify_is_ip && g->type == GEN_IPADD) {
      int len = ASN1_STRING_length(g->d.iPAddress);
      const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
      if (len == 4 || len == 16) inet_ntop(len == 4 ? AF_INET : AF_INET6, d, one, sizeof one);
    } else if (!t->verify_is_ip && g->type == GEN_DNS) {
      int len = ASN1_STRING_length(g->d.dNSName);
      buf_printf(&valid, "%s%.*s", valid.len ? ", " : "", len > 255 ? 255 : len,
                 (const char *)ASN1_STRING_get0_data(g->d.dNSName));
      continue;
    }
    if (*one) buf_printf(&valid, "%s%s", valid.len ? ", " : "", one);
  }
  GENERAL_NAMES_free(sans);
  if (t->verify_is_ip && valid.len == 0)
    snprintf(err, errlen,
             "tls: failed to verify certificate: x509: cannot validate certificate for %s "
             "because it doesn't contain any IP SANs", name);
  else if (valid.len == 0)
    snprintf(err, errlen,
             "tls: failed to verify certificate: x509: certificate is not valid for any names, "
             "but wanted to match %s", name);
  else
    snprintf(err, errlen, "tls: failed to verify certificate: x509: certificate is valid for "
                          "%s, not %s", valid.data, name);
  buf_free(&valid);
  return true;
}

/* 0 when the peer's certificate is one Go would accept; else -1 with Go's text. */
static int verify_peer(struct local_tls *t, char *err, size_t errlen)
{
  X509 *leaf = SSL_get0_peer_certificate(t->ssl);
  if (!leaf) {
    snprintf(err, errlen, "tls: server did not send a certificate");
    return -1;
  }
  if (validity_error(leaf, err, errlen) || name_error(t, leaf, err, errlen)) return -1;
  long vr = SSL_get_verify_result(t->ssl);
  switch (vr) {
  case X509_V_OK: return 0;
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_CERT_UNTRUSTED:
    snprintf(err, errlen,
             "tls: failed to verify certificate: x509: certificate signed by unknown authority");
    return -1;
  case X509_V_ERR_CERT_HAS_EXPIRED:
  case X509_V_ERR_CERT_NOT_YET_VALID:
    snprintf(err, errlen, "tls: failed to verify certificate: x509: certificate has expired or "
                          "is not yet valid");
    return -1;
  case X509_V_ERR_INVALID_PURPOSE:
    snprintf(err, errlen, "tls: failed to verify certificate: x509: certificate specifies an "
                          "incompatible key usage");
    return -1;
  default:
    snprintf(err, errlen, "tls: failed to verify certificate: x509: %s",
             X509_verify_cert_error_string(vr));
    return -1;
  }
}

int local__tls_handshake(struct local_tls *t, char *err, size_t errlen)
{
  if (t->done) return 1;
  ERR_clear_error();
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1) {
    if (!t->skip_verify && verify_peer(t, err, errlen) != 0) return -1;
    t->done = true;
    return 1;
  }
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  handshake_error(t, err, errlen);
  return -1;
}

int local__tls_write(struct local_tls *t, const char *data, size_t len, char *err, size_t errlen)
{
  size_t off = 0;
  ERR_clear_error();
  while (off < len) {
    size_t chunk = len - off > (1u << 30) ? (1u << 30) : len - off;
    int n = SSL_write(t->ssl, data + off, (int)chunk);
    if (n <= 0) { /* the output BIO grows as needed, so this is a real failure */
      unsigned long e = ERR_get_error();
      ERR_clear_error();
      snprintf(err, errlen, "tls: %s", e && ERR_reason_error_string(e) ? ERR_reason_error_string(e)
                                                                       : "write failed");
      return -1;
    }
    off += (size_t)n;
  }
  return 0;
}

int local__tls_read(struct local_tls *t, char *dst, size_t cap, char *err, size_t errlen)
{
  ERR_clear_error();
  int n = SSL_read(t->ssl, dst, cap > (1u << 30) ? (1 << 30) : (int)cap);
  if (n > 0) return n;
  int e = SSL_get_error(t->ssl, n);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (e == SSL_ERROR_ZERO_RETURN) return -1;
  unsigned long q = ERR_peek_last_error();
  ERR_clear_error();
  int reason = ERR_GET_REASON(q);
  if (q && ERR_GET_LIB(q) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET) {
    const char *a = alert_text(reason - SSL_AD_REASON_OFFSET);
    snprintf(err, errlen, "remote error: tls: %s", a ? a : "alert");
  } else {
    const char *r = q ? ERR_reason_error_string(q) : NULL;
    snprintf(err, errlen, "local error: tls: %s", r ? r : "bad record");
  }
  return -2;
}
