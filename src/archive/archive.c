/* archive.c -- writes and reads Consul's snapshot archive (archive.h): gzip through zlib, a
 * minimal ustar writer/reader of our own (three small regular files, nothing else), SHA-256
 * from libcrypto, meta.json through jansson.
 *
 * Reading inflates the whole archive into memory first (capped), then walks the tar: the
 * archive is at most a few tens of MB, and a restore needs all of state.bin anyway. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "archive/archive.h"
#include "lib/err.h"

#define BLOCK 512
#define META_MAX (16 * 1024)
#define SUMS_MAX (4 * 1024)

/* ---- helpers ---- */

static void sha256(const void *data, size_t len, uint8_t out[32])
{
  unsigned n = 32;
  EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static void hex(const uint8_t *in, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* ---- writing ---- */

/* Octal, zero-padded to width-1 digits and a NUL, as ustar fields are. */
static void octal(char *field, size_t width, uint64_t v)
{
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%0*llo", (int)(width - 1), (unsigned long long)v);
  memcpy(field, tmp, width - 1);
  field[width - 1] = '\0';
}

static void tar_file(struct buf *tar, const char *name, const void *data, size_t len,
                     int64_t mtime_s)
{
  char h[BLOCK] = {0};
  snprintf(h, 100, "%s", name);
  octal(h + 100, 8, 0600);
  octal(h + 108, 8, 0);
  octal(h + 116, 8, 0);
  octal(h + 124, 12, len);
  octal(h + 136, 12, mtime_s > 0 ? (uint64_t)mtime_s : 0);
  h[156] = '0';
  memcpy(h + 257, "ustar\0" "00", 8);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < BLOCK; i++) sum += (unsigned char)h[i];
  octal(h + 148, 7, sum); /* six digits, NUL, then the space already there */
  buf_append(tar, h, BLOCK);
  buf_append(tar, data, len);
  static const char zeros[BLOCK];
  if (len % BLOCK) buf_append(tar, zeros, BLOCK - len % BLOCK);
}

static void gzip(struct buf *out, const struct buf *in)
{
  z_stream z = {0};
  /* 31 = 15-bit window with a gzip wrapper; zlib only fails here on OOM or bad arguments */
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    abort();
  uLong bound = deflateBound(&z, (uLong)in->len);
  buf_reserve(out, bound);
  z.next_in = (Bytef *)in->data;
  z.avail_in = (uInt)in->len;
  z.next_out = (Bytef *)out->data + out->len;
  z.avail_out = (uInt)bound;
  int rc = deflate(&z, Z_FINISH);
  if (rc != Z_STREAM_END) abort(); /* the bound guarantees room */
  out->len += z.total_out;
  deflateEnd(&z);
}

void archive_write(struct buf *out, const struct archive_meta *meta, const void *state,
                   size_t len, int64_t mtime_s)
{
  struct buf m = BUF_INIT, sums = BUF_INIT, tar = BUF_INIT;
  json_t *j = json_pack("{s:I,s:s,s:I,s:I,s:n,s:{s:n},s:I,s:I}", "Version",
                        (json_int_t)meta->version, "ID", meta->id, "Index",
                        (json_int_t)meta->index, "Term", (json_int_t)meta->term, "Peers",
                        "Configuration", "Servers", "ConfigurationIndex", (json_int_t)0, "Size",
                        (json_int_t)len);
  char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  buf_puts(&m, text);
  buf_putc(&m, '\n'); /* Go's json.Encoder ends with a newline */
  free(text);
  json_decref(j);

  uint8_t d[32];
  char hx[65];
  sha256(m.data, m.len, d);
  hex(d, 32, hx);
  buf_printf(&sums, "%s  meta.json\n", hx);
  sha256(state, len, d);
  hex(d, 32, hx);
  buf_printf(&sums, "%s  state.bin\n", hx);

  tar_file(&tar, "meta.json", m.data, m.len, mtime_s);
  tar_file(&tar, "state.bin", state, len, mtime_s);
  tar_file(&tar, "SHA256SUMS", sums.data, sums.len, mtime_s);
  static const char end[2 * BLOCK];
  buf_append(&tar, end, sizeof end);
  gzip(out, &tar);
  buf_free(&m);
  buf_free(&sums);
  buf_free(&tar);
}

/* ---- reading ---- */

/* Inflates one gzip member into out, at most max bytes. */
static int gunzip(const void *data, size_t len, size_t max, struct buf *out, char *err,
                  size_t errlen)
{
  z_stream z = {0};
  if (inflateInit2(&z, 31) != Z_OK) abort();
  z.next_in = (Bytef *)data;
  z.avail_in = (uInt)len;
  int rc = Z_OK;
  while (rc == Z_OK) {
    if (out->len >= max) {
      inflateEnd(&z);
      return fail(err, errlen, CC_ETOOBIG, "snapshot is larger than %zu bytes uncompressed",
                  max);
    }
    size_t chunk = max - out->len < 256 * 1024 ? max - out->len : 256 * 1024;
    buf_reserve(out, chunk);
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = (uInt)chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    out->len += chunk - z.avail_out;
    if (rc == Z_BUF_ERROR && z.avail_out) break; /* input ran out */
    if (rc == Z_BUF_ERROR) rc = Z_OK;             /* output full: go round */
  }
  size_t left = z.avail_in;
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return fail(err, errlen, CC_ECORRUPT, "snapshot is not a complete gzip stream");
  if (left) return fail(err, errlen, CC_ECORRUPT, "unexpected data after the gzip stream");
  return 0;
}

/* An octal field (digits, optionally surrounded by spaces and NULs). */
static int parse_octal(const char *f, size_t width, uint64_t *out)
{
  size_t i = 0;
  while (i < width && f[i] == ' ') i++;
  uint64_t v = 0;
  size_t digits = 0;
  for (; i < width && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
    if (v >> 60) return -1;
    v = v * 8 + (uint64_t)(f[i] - '0');
  }
  for (; i < width; i++)
    if (f[i] != ' ' && f[i] != '\0') return -1;
  if (!digits) return -1;
  *out = v;
  return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

struct part {
  const uint8_t *data;
  size_t len;
  bool seen;
};

static int parse_sums(const struct part *sums, const struct part *meta,
                      const struct part *state, char *err, size_t errlen)
{
  const char *p = (const char *)sums->data, *end = p + sums->len;
  bool ok_meta = false, ok_state = false;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    size_t n = (size_t)(le - p);
    /* "<64 hex>  <name>" */
    if (n < 67 || p[64] != ' ' || p[65] != ' ')
      return fail(err, errlen, CC_ECORRUPT, "failed checking integrity of snapshot: bad SHA256SUMS line");
    const char *name = p + 66;
    size_t name_len = n - 66;
    const struct part *f = NULL;
    bool *ok = NULL;
    if (name_len == 9 && !memcmp(name, "meta.json", 9)) f = meta, ok = &ok_meta;
    else if (name_len == 9 && !memcmp(name, "state.bin", 9)) f = state, ok = &ok_state;
    else
      return fail(err, errlen, CC_ECORRUPT, "failed checking integrity of snapshot: list missing hash for %.*s",
                  (int)(name_len > 64 ? 64 : name_len), name);
    uint8_t d[32];
    char hx[65];
    sha256(f->data, f->len, d);
    hex(d, 32, hx);
    if (strncasecmp(hx, p, 64) != 0)
      return fail(err, errlen, CC_ECORRUPT, "failed checking integrity of snapshot: hash check failed for \"%.*s\"",
                  (int)name_len, name);
    *ok = true;
    p = nl ? nl + 1 : end;
  }
  if (!ok_meta || !ok_state)
    return fail(err, errlen, CC_ECORRUPT, "failed checking integrity of snapshot: file missing for \"%s\"",
                ok_meta ? "state.bin" : "meta.json");
  return 0;
}

static int parse_meta(const struct part *m, size_t state_len, struct archive_meta *meta,
                      char *err, size_t errlen)
{
  json_error_t je;
  json_t *j = json_loadb((const char *)m->data, m->len, JSON_DISABLE_EOF_CHECK, &je);
  json_int_t version = 0, index = 0, term = 0, size = -1;
  const char *id = NULL;
  int rc = 0;
  if (!j || json_unpack(j, "{s:I,s:s,s:I,s:I,s:I}", "Version", &version, "ID", &id, "Index",
                        &index, "Term", &term, "Size", &size) != 0)
    rc = fail(err, errlen, CC_ECORRUPT, "failed to decode snapshot metadata");
  else if (version != 1)
    rc = fail(err, errlen, CC_ECORRUPT, "unsupported snapshot version %lld", (long long)version);
  else if (index < 0 || term < 0 || strlen(id) >= sizeof meta->id)
    rc = fail(err, errlen, CC_ECORRUPT, "failed to decode snapshot metadata");
  else if (size < 0 || (uint64_t)size != state_len)
    rc = fail(err, errlen, CC_ECORRUPT, "snapshot metadata says %lld bytes, state.bin has %zu",
              (long long)size, state_len);
  if (!rc) {
    snprintf(meta->id, sizeof meta->id, "%s", id);
    meta->version = (uint64_t)version;
    meta->index = (uint64_t)index;
    meta->term = (uint64_t)term;
    meta->size = (uint64_t)size;
  }
  json_decref(j);
  return rc;
}

static int read_tar(const uint8_t *p, size_t len, size_t max_state, struct part *meta,
                    struct part *state, struct part *sums, char *err, size_t errlen)
{
  size_t off = 0;
  while (off < len) {
    if (len - off < BLOCK) return fail(err, errlen, CC_ECORRUPT, "failed reading snapshot: truncated tar header");
    const uint8_t *h = p + off;
    if (all_zero(h, BLOCK)) break; /* end of archive */
    uint64_t want, size;
    if (parse_octal((const char *)h + 148, 8, &want) || parse_octal((const char *)h + 124, 12, &size))
      return fail(err, errlen, CC_ECORRUPT, "failed reading snapshot: bad tar header");
    unsigned sum = 0;
    for (size_t i = 0; i < BLOCK; i++) sum += (i >= 148 && i < 156) ? ' ' : h[i];
    if (sum != want) return fail(err, errlen, CC_ECORRUPT, "failed reading snapshot: tar header checksum mismatch");
    if (memcmp(h + 257, "ustar", 5) != 0)
      return fail(err, errlen, CC_ECORRUPT, "failed reading snapshot: not a ustar archive");
    if (h[156] != '0' && h[156] != '\0')
      return fail(err, errlen, CC_ECORRUPT, "failed reading snapshot: unexpected entry type in snapshot");
    char name[101];
    memcpy(name, h, 100);
    name[100] = '\0';
    if (h[345] != '\0') /* a prefix: none of our three names has one */
      return fail(err, errlen, CC_ECORRUPT, "unexpected file in snapshot");
    off += BLOCK;
    if (size > len - off) return fail(err, errlen, CC_ECORRUPT, "failed reading snapshot: unexpected EOF");
    struct part *f;
    size_t cap;
    if (!strcmp(name, "meta.json")) f = meta, cap = META_MAX;
    else if (!strcmp(name, "state.bin")) f = state, cap = max_state;
    else if (!strcmp(name, "SHA256SUMS")) f = sums, cap = SUMS_MAX;
    else return fail(err, errlen, CC_ECORRUPT, "unexpected file \"%.64s\" in snapshot", name);
    if (f->seen) return fail(err, errlen, CC_ECORRUPT, "duplicate file \"%s\" in snapshot", name);
    if (size > cap)
      return fail(err, errlen, f == state ? CC_ETOOBIG : CC_ECORRUPT,
                  "%s is %llu bytes, over the limit of %zu", name, (unsigned long long)size, cap);
    f->data = p + off;
    f->len = (size_t)size;
    f->seen = true;
    size_t padded = (size_t)size + (BLOCK - size % BLOCK) % BLOCK;
    off += padded > len - off ? len - off : padded;
  }
  return 0;
}

int archive_read(const void *data, size_t len, size_t max_state, struct archive_meta *meta,
                 struct buf *state, char *err, size_t errlen)
{
  if (err && errlen) err[0] = '\0';
  struct buf tar = BUF_INIT;
  size_t cap = max_state > SIZE_MAX - ARCHIVE_SLACK ? SIZE_MAX : max_state + ARCHIVE_SLACK;
  int rc = gunzip(data, len, cap, &tar, err, errlen);
  struct part m = {0}, st = {0}, sums = {0};
  if (!rc) rc = read_tar((const uint8_t *)tar.data, tar.len, max_state, &m, &st, &sums, err, errlen);
  if (!rc && (!m.seen || !st.seen || !sums.seen))
    rc = fail(err, errlen, CC_ECORRUPT, "failed checking integrity of snapshot: file missing for \"%s\"",
              !m.seen ? "meta.json" : !st.seen ? "state.bin" : "SHA256SUMS");
  if (!rc) rc = parse_sums(&sums, &m, &st, err, errlen);
  if (!rc) rc = parse_meta(&m, st.len, meta, err, errlen);
  if (!rc) buf_append(state, st.data, st.len);
  buf_free(&tar);
  return rc;
}
