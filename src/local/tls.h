/* tls.h -- a TLS client session driven through memory BIOs, for httpc.c on the libuv loop.
 *
 * The caller moves bytes: ciphertext read from the socket goes in with local__tls_feed,
 * ciphertext to send comes out of local__tls_take. Nothing here touches a socket or blocks.
 * Certificates are checked against OpenSSL's default trust store (the system one, or what
 * SSL_CERT_FILE / SSL_CERT_DIR name, as Go's crypto/x509 honours them on Linux) and the name:
 * the server name when given (TLSServerName), else the URL's host. Failures are worded as Go's
 * crypto/tls words them, since they become a check's output. */
#ifndef CONCORD_LOCAL_TLS_H
#define CONCORD_LOCAL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

struct local_tls;

/* A client session for `host` (the URL's host, no brackets). server_name: TLSServerName or
 * NULL/"" to use host; it is both the SNI (not sent for an IP) and the name verified.
 * Returns NULL with Go-like text in err when OpenSSL cannot set one up. */
struct local_tls *local__tls_new(const char *host, const char *server_name, bool skip_verify,
                                 char *err, size_t errlen);
void local__tls_free(struct local_tls *t);

/* Ciphertext from the peer (len capped by the caller's read size). */
void local__tls_feed(struct local_tls *t, const char *data, size_t len);
/* Appends the ciphertext waiting to be sent to out; returns the bytes appended. */
size_t local__tls_take(struct local_tls *t, struct buf *out);

/* Drives the handshake. 1: done; 0: needs more input; -1: failed, Go's text in err. */
int local__tls_handshake(struct local_tls *t, char *err, size_t errlen);
/* Queues plaintext to send (after the handshake). 0, or -1 with err. */
int local__tls_write(struct local_tls *t, const char *data, size_t len, char *err, size_t errlen);
/* Decrypts into dst. >0: bytes; 0: needs more input; -1: the peer closed the session
 * (close_notify); -2: failed, text in err. */
int local__tls_read(struct local_tls *t, char *dst, size_t cap, char *err, size_t errlen);

#endif
