/* fuzz_local_h2c.c -- libFuzzer target for the HTTP/2 client of gRPC and H2PING checks
 * (src/local/h2c.c): everything it parses comes from whatever listens on the checked port.
 *
 * The first byte picks the session (bit 0: H2PING, else a gRPC call) and, in its upper bits,
 * how the rest is cut into reads; the rest is fed as the server's bytes, with the client's
 * output drained after each read, then the connection "closes". The same bytes also go to the
 * HealthCheckResponse decoder. Any bytes must give a result, never a crash, leak or sanitizer
 * report. Seeds: fuzz/corpus/local_h2c/. */
#include <stdint.h>
#include <stdlib.h>

#include "lib/buf.h"
#include "local/h2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > (1u << 20)) return 0;
  uint8_t mode = data[0];
  const uint8_t *rest = data + 1;
  size_t len = size - 1;
  int64_t st;
  (void)local__h2c_health_status(rest, len, &st);

  struct local_h2c_sess *s = local__h2c_sess_new("127.0.0.1:9", "127.0.0.1:9/svc", "svc",
                                                 mode & 1);
  size_t chunk = (size_t)(mode >> 1) * 7 + 1; /* 1 .. 890 bytes per read */
  struct buf out = BUF_INIT;
  local__h2c_sess_send(s, &out);
  for (size_t off = 0; off < len; off += chunk) {
    size_t n = len - off < chunk ? len - off : chunk;
    if (local__h2c_sess_recv(s, rest + off, n) != 0) break;
    buf_reset(&out);
    local__h2c_sess_send(s, &out);
  }
  local__h2c_sess_eof(s);
  bool passing;
  const char *o;
  if (!local__h2c_sess_result(s, &passing, &o) || !o) abort(); /* eof always gives one */
  buf_free(&out);
  local__h2c_sess_free(s);
  return 0;
}
