/* test_archive.c -- the snapshot archive (archive/archive.c): round trip, and every kind of
 * damage rejected with a sentence: truncation, a changed file under an intact gzip stream,
 * a missing or extra file, a wrong hash list, metadata that disagrees, size caps. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "archive/archive.h"
#include "lib/err.h"

static const struct archive_meta META = {.id = "2-42-1700000000000", .index = 42, .term = 2,
                                         .version = 1};

/* With CONCORD_ARCHIVE_CORPUS=dir, every archive a test makes or damages is saved there as
 * a seed for fuzz/fuzz_archive.c. */
static void seed(const struct buf *gz)
{
  const char *dir = getenv("CONCORD_ARCHIVE_CORPUS");
  if (!dir) return;
  static int n;
  char path[512];
  snprintf(path, sizeof path, "%s/seed-%03d", dir, n++);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(gz->data, 1, gz->len, f);
  fclose(f);
}

static void make(struct buf *out, const void *state, size_t len)
{
  archive_write(out, &META, state, len, 1700000000);
  seed(out);
}

/* The tar inside an archive, and back: lets a test damage the tar under a valid gzip. */
static void unzip(const struct buf *gz, struct buf *tar)
{
  z_stream z = {0};
  assert_int_equal(inflateInit2(&z, 31), Z_OK);
  buf_reserve(tar, 1 << 22);
  z.next_in = (Bytef *)gz->data;
  z.avail_in = (uInt)gz->len;
  z.next_out = (Bytef *)tar->data;
  z.avail_out = 1 << 22;
  assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
  tar->len = z.total_out;
  inflateEnd(&z);
}

static void rezip(const struct buf *tar, struct buf *gz)
{
  uLongf n = compressBound((uLong)tar->len) + 64;
  buf_reserve(gz, n);
  z_stream z = {0};
  assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
  z.next_in = (Bytef *)tar->data;
  z.avail_in = (uInt)tar->len;
  z.next_out = (Bytef *)gz->data;
  z.avail_out = (uInt)n;
  assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
  gz->len = z.total_out;
  deflateEnd(&z);
  seed(gz);
}

static int try_read(const struct buf *gz, size_t max, char *err)
{
  struct archive_meta m;
  struct buf st = BUF_INIT;
  int rc = archive_read(gz->data, gz->len, max, &m, &st, err, 256);
  if (rc) assert_int_equal(st.len, 0);
  buf_free(&st);
  return rc;
}

static void test_round_trip(void **state)
{
  (void)state;
  char data[3000];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i * 7);
  struct buf gz = BUF_INIT, st = BUF_INIT;
  make(&gz, data, sizeof data);
  assert_int_equal((unsigned char)gz.data[0], 0x1f); /* gzip magic */
  assert_int_equal((unsigned char)gz.data[1], 0x8b);
  struct archive_meta m;
  char err[256];
  assert_int_equal(archive_read(gz.data, gz.len, 1 << 20, &m, &st, err, sizeof err), 0);
  assert_int_equal(st.len, sizeof data);
  assert_memory_equal(st.data, data, sizeof data);
  assert_string_equal(m.id, META.id);
  assert_int_equal(m.index, 42);
  assert_int_equal(m.term, 2);
  assert_int_equal(m.version, 1);
  assert_int_equal(m.size, sizeof data);

  /* the tar holds the three files in Consul's order, with Consul's meta.json fields */
  struct buf tar = BUF_INIT;
  unzip(&gz, &tar);
  assert_string_equal(tar.data, "meta.json");
  assert_non_null(memmem(tar.data, tar.len, "\"Size\":3000", 11));
  assert_non_null(memmem(tar.data, tar.len, "\"Term\":2", 8));
  assert_non_null(memmem(tar.data, tar.len, "SHA256SUMS", 10));
  assert_non_null(memmem(tar.data, tar.len, "  state.bin\n", 12));
  assert_int_equal(tar.len % 512, 0);
  buf_free(&tar);

  /* an empty state round-trips too */
  buf_reset(&gz);
  buf_reset(&st);
  make(&gz, "", 0);
  assert_int_equal(archive_read(gz.data, gz.len, 1 << 20, &m, &st, err, sizeof err), 0);
  assert_int_equal(st.len, 0);
  buf_free(&gz);
  buf_free(&st);
}

static void test_truncated(void **state)
{
  (void)state;
  struct buf gz = BUF_INIT;
  make(&gz, "hello state", 11);
  char err[256];
  for (size_t n = 0; n < gz.len; n++) {
    struct buf cut = BUF_INIT;
    buf_append(&cut, gz.data, n);
    assert_int_equal(try_read(&cut, 1 << 20, err), CC_ECORRUPT);
    assert_true(err[0] != '\0');
    buf_free(&cut);
  }
  /* trailing garbage after the stream */
  buf_putc(&gz, 'x');
  assert_int_equal(try_read(&gz, 1 << 20, err), CC_ECORRUPT);
  /* not gzip at all */
  struct buf junk = BUF_INIT;
  buf_puts(&junk, "this is not a snapshot");
  assert_int_equal(try_read(&junk, 1 << 20, err), CC_ECORRUPT);
  buf_free(&junk);
  buf_free(&gz);
}

/* Flips one byte of the tar at `off` (relative to the first occurrence of `needle`) and
 * rezips: the gzip stream is intact, so the tar/hash checks must catch it. */
static int damage(const char *needle, size_t off, char with, char *err)
{
  struct buf gz = BUF_INIT, tar = BUF_INIT, gz2 = BUF_INIT;
  make(&gz, "hello state", 11);
  unzip(&gz, &tar);
  char *p = memmem(tar.data, tar.len, needle, strlen(needle));
  assert_non_null(p);
  p[off] = with;
  rezip(&tar, &gz2);
  int rc = try_read(&gz2, 1 << 20, err);
  buf_free(&gz);
  buf_free(&tar);
  buf_free(&gz2);
  return rc;
}

static void test_damaged(void **state)
{
  (void)state;
  char err[256];
  assert_int_equal(damage("hello state", 0, 'j', err), CC_ECORRUPT);
  assert_non_null(strstr(err, "hash check failed for \"state.bin\""));
  assert_int_equal(damage("\"Term\":2", 7, '3', err), CC_ECORRUPT);
  assert_non_null(strstr(err, "meta.json"));
  assert_int_equal(damage("state.bin", 0, 'x', err), CC_ECORRUPT); /* header checksum */
  assert_non_null(strstr(err, "checksum"));
  assert_int_equal(damage("  meta.json", 2, 'n', err), CC_ECORRUPT); /* unknown name in sums */
  assert_int_equal(damage("ustar", 0, 'x', err), CC_ECORRUPT);
}

/* A hand-made tar: the same header layout as the writer's, any names and contents. */
static void add_file(struct buf *tar, const char *name, const char *data)
{
  char h[512] = {0};
  size_t len = strlen(data);
  snprintf(h, 100, "%s", name);
  snprintf(h + 100, 8, "%07o", 0600);
  snprintf(h + 124, 12, "%011o", (unsigned)len & 07777777u);
  h[156] = '0';
  memcpy(h + 257, "ustar\0" "00", 8);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += (unsigned char)h[i];
  snprintf(h + 148, 8, "%06o", sum);
  buf_append(tar, h, 512);
  buf_append(tar, data, len);
  static const char zeros[512];
  if (len % 512) buf_append(tar, zeros, 512 - len % 512);
}

static void test_foreign(void **state)
{
  (void)state;
  char err[256];
  struct buf tar = BUF_INIT, gz = BUF_INIT;
  add_file(&tar, "meta.json", "{}");
  add_file(&tar, "evil.sh", "rm -rf /");
  rezip(&tar, &gz);
  assert_int_equal(try_read(&gz, 1 << 20, err), CC_ECORRUPT);
  assert_non_null(strstr(err, "unexpected file"));

  /* all three files, but meta.json's Size disagrees and the sums list is wrong */
  buf_reset(&tar);
  buf_reset(&gz);
  add_file(&tar, "meta.json", "{\"Version\":1,\"ID\":\"x\",\"Index\":1,\"Term\":1,\"Size\":99}");
  add_file(&tar, "state.bin", "abc");
  add_file(&tar, "SHA256SUMS", "00  meta.json\n");
  rezip(&tar, &gz);
  assert_int_equal(try_read(&gz, 1 << 20, err), CC_ECORRUPT);
  assert_non_null(strstr(err, "integrity"));

  /* a file missing */
  buf_reset(&tar);
  buf_reset(&gz);
  add_file(&tar, "meta.json", "{}");
  add_file(&tar, "state.bin", "abc");
  rezip(&tar, &gz);
  assert_int_equal(try_read(&gz, 1 << 20, err), CC_ECORRUPT);
  assert_non_null(strstr(err, "SHA256SUMS"));
  buf_free(&tar);
  buf_free(&gz);
}

static void test_meta_checked(void **state)
{
  (void)state;
  char err[256];
  struct archive_meta m = META;
  m.version = 2;
  struct buf gz = BUF_INIT;
  archive_write(&gz, &m, "abc", 3, 0);
  assert_int_equal(try_read(&gz, 1 << 20, err), CC_ECORRUPT);
  assert_non_null(strstr(err, "version"));
  buf_free(&gz);
}

static void test_size_caps(void **state)
{
  (void)state;
  char err[256];
  size_t n = 200 * 1024;
  char *big = calloc(1, n); /* compresses to almost nothing: the cap must hold on inflate */
  struct buf gz = BUF_INIT;
  make(&gz, big, n);
  assert_true(gz.len < 4096);
  assert_int_equal(try_read(&gz, n, err), 0);
  assert_int_equal(try_read(&gz, n - 1, err), CC_ETOOBIG);
  assert_int_equal(try_read(&gz, 1024, err), CC_ETOOBIG);
  assert_non_null(strstr(err, "larger than"));
  free(big);
  buf_free(&gz);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip), cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_damaged),    cmocka_unit_test(test_foreign),
      cmocka_unit_test(test_meta_checked), cmocka_unit_test(test_size_caps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
