/* test_lib.c -- lib/: Go durations, base64, the hash map, buffers, UUIDs. */
#include <setjmp.h>
#include <unistd.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/b64.h"
#include "lib/buf.h"
#include "lib/duration.h"
#include "lib/file.h"
#include "lib/jsonw.h"
#include "lib/map.h"
#include "lib/rand.h"

static int64_t parse(const char *s)
{
  int64_t ns = -42;
  assert_int_equal(duration_parse(s, strlen(s), &ns), 0);
  return ns;
}

static void test_duration_parse(void **state)
{
  (void)state;
  assert_int_equal(parse("0"), 0);
  assert_int_equal(parse("5m"), 5 * DURATION_MIN);
  assert_int_equal(parse("10s"), 10 * DURATION_S);
  assert_int_equal(parse("1.5s"), 1500 * DURATION_MS);
  assert_int_equal(parse("300ms"), 300 * DURATION_MS);
  assert_int_equal(parse("2h45m"), 2 * DURATION_H + 45 * DURATION_MIN);
  assert_int_equal(parse("1us"), 1000);
  assert_int_equal(parse("1\xc2\xb5s"), 1000);
  assert_int_equal(parse("7ns"), 7);
  assert_int_equal(parse("-1s"), -DURATION_S);
  assert_int_equal(parse(".5s"), 500 * DURATION_MS);
  int64_t ns;
  const char *bad[] = {"", "s", "forever", "10", "1x", "1.s.", "--1s", "9999999999999999999h", "1s2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_not_equal(duration_parse(bad[i], strlen(bad[i]), &ns), 0);
}

static void test_duration_format(void **state)
{
  (void)state;
  char b[40];
  assert_string_equal(duration_format(0, b, sizeof b), "0s");
  assert_string_equal(duration_format(30 * DURATION_S, b, sizeof b), "30s");
  assert_string_equal(duration_format(60 * DURATION_S, b, sizeof b), "1m0s");
  assert_string_equal(duration_format(1500 * DURATION_MS, b, sizeof b), "1.5s");
  assert_string_equal(duration_format(100 * DURATION_MS, b, sizeof b), "100ms");
  assert_string_equal(duration_format(15 * DURATION_S, b, sizeof b), "15s");
  assert_string_equal(duration_format(DURATION_H + 2 * DURATION_S, b, sizeof b), "1h0m2s");
  assert_string_equal(duration_format(1500, b, sizeof b), "1.5\xc2\xb5s");
  assert_string_equal(duration_format(-2 * DURATION_S, b, sizeof b), "-2s");
  assert_string_equal(duration_format(86400 * DURATION_S, b, sizeof b), "24h0m0s");
}

static void test_b64(void **state)
{
  (void)state;
  const char *cases[][2] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
                            {"foob", "Zm9vYg=="}, {"hello world", "aGVsbG8gd29ybGQ="}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char out[64];
    b64_encode(cases[i][0], strlen(cases[i][0]), out);
    assert_string_equal(out, cases[i][1]);
    uint8_t dec[64];
    size_t n;
    assert_int_equal(b64_decode(cases[i][1], strlen(cases[i][1]), dec, &n), 0);
    assert_int_equal(n, strlen(cases[i][0]));
    assert_memory_equal(dec, cases[i][0], n);
  }
  uint8_t dec[16];
  size_t n;
  assert_int_not_equal(b64_decode("a$==", 4, dec, &n), 0);
  assert_int_not_equal(b64_decode("abcde", 5, dec, &n), 0);
  /* Every byte value survives a round trip. */
  uint8_t all[256];
  for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
  char enc[400];
  b64_encode(all, 256, enc);
  uint8_t back[300];
  assert_int_equal(b64_decode(enc, strlen(enc), back, &n), 0);
  assert_int_equal(n, 256);
  assert_memory_equal(back, all, 256);
}

static void test_map(void **state)
{
  (void)state;
  struct map m;
  map_init(&m);
  char key[32];
  for (intptr_t i = 1; i <= 5000; i++) {
    snprintf(key, sizeof key, "k%ld", (long)i);
    assert_null(map_put(&m, key, strlen(key), (void *)i));
  }
  assert_int_equal(map_count(&m), 5000);
  for (intptr_t i = 1; i <= 5000; i++) {
    snprintf(key, sizeof key, "k%ld", (long)i);
    assert_ptr_equal(map_get(&m, key, strlen(key)), (void *)i);
  }
  assert_ptr_equal(map_put(&m, "k1", 2, (void *)7), (void *)1);
  assert_ptr_equal(map_del(&m, "k1", 2), (void *)7);
  assert_null(map_get(&m, "k1", 2));
  assert_null(map_del(&m, "nope", 4));
  /* Binary keys with embedded NULs are distinct from their prefixes. */
  map_put(&m, "a\0b", 3, (void *)11);
  assert_null(map_get(&m, "a", 1));
  assert_ptr_equal(map_get(&m, "a\0b", 3), (void *)11);
  size_t seen = 0;
  for (struct map_iter it = map_iter_start(&m); map_iter_next(&it);) seen++;
  assert_int_equal(seen, map_count(&m));
  map_free(&m);
}

static void test_buf(void **state)
{
  (void)state;
  struct buf b = BUF_INIT;
  buf_puts(&b, "hello");
  buf_printf(&b, " %d %s", 42, "x");
  assert_string_equal(b.data, "hello 42 x");
  buf_consume(&b, 6);
  assert_string_equal(b.data, "42 x");
  for (int i = 0; i < 10000; i++) buf_putc(&b, 'z');
  assert_int_equal(b.len, 10004);
  size_t n;
  char *s = buf_steal(&b, &n);
  assert_int_equal(n, 10004);
  assert_null(b.data);
  free(s);
  buf_free(&b);
}

static void test_uuid(void **state)
{
  (void)state;
  char a[37], b[37];
  rand_uuid(a);
  rand_uuid(b);
  assert_true(uuid_is_valid(a));
  assert_string_not_equal(a, b);
  assert_int_equal(a[14], '4');
  assert_false(uuid_is_valid("not-a-uuid"));
  assert_false(uuid_is_valid("0123456789012345678901234567890123456"));
  for (int i = 0; i < 1000; i++) assert_true(rand_below(7) < 7);
}

static void test_jsonw(void **state)
{
  (void)state;
  struct buf b = BUF_INIT;
  struct jsonw w;
  jsonw_init(&w, &b, false);
  jsonw_array_begin(&w);
  jsonw_object_begin(&w);
  jsonw_key(&w, "Flags");
  jsonw_u64(&w, UINT64_MAX);
  jsonw_key(&w, "Key");
  jsonw_stringn(&w, "a\"<b>&\n\x01\xff\xe2\x80\xa8\xc3\xa9", 14);
  jsonw_key(&w, "Value");
  jsonw_base64(&w, "hi", 2);
  jsonw_key(&w, "Nil");
  jsonw_base64(&w, NULL, 0);
  jsonw_key(&w, "Empty");
  jsonw_array_begin(&w);
  jsonw_array_end(&w);
  jsonw_object_end(&w);
  jsonw_array_end(&w);
  assert_string_equal(b.data, "[{\"Flags\":18446744073709551615,"
                              "\"Key\":\"a\\\"\\u003cb\\u003e\\u0026\\n\\u0001\\ufffd\\u2028\xc3\xa9\","
                              "\"Value\":\"aGk=\",\"Nil\":null,\"Empty\":[]}]");
  buf_reset(&b);
  jsonw_init(&w, &b, true);
  jsonw_array_begin(&w);
  jsonw_object_begin(&w);
  jsonw_key(&w, "A");
  jsonw_i64(&w, -1);
  jsonw_key(&w, "B");
  jsonw_object_begin(&w);
  jsonw_object_end(&w);
  jsonw_object_end(&w);
  jsonw_array_end(&w);
  /* json.MarshalIndent(v, "", "    ") */
  assert_string_equal(b.data, "[\n    {\n        \"A\": -1,\n        \"B\": {}\n    }\n]");
  buf_free(&b);
}

/* file_write_all / file_write_atomic: content, mode 0600, no temporary left behind, and a
 * failure (missing directory) reported as an errno with the target untouched. */
static void test_file_write(void **st)
{
  (void)st;
  char dir[] = "/tmp/concord-file-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], tmp[256], buf[64];
  snprintf(path, sizeof path, "%s/f", dir);
  snprintf(tmp, sizeof tmp, "%s/f.tmp", dir);
  assert_int_equal(file_write_atomic(path, "old", 3, true), 0);
  assert_int_equal(file_write_atomic(path, "new content", 11, false), 0);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  assert_int_equal(n, 11);
  assert_memory_equal(buf, "new content", 11);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_int_not_equal(stat(tmp, &sb), 0);
  snprintf(path, sizeof path, "%s/missing/f", dir);
  assert_int_equal(file_write_atomic(path, "x", 1, true), ENOENT);
  assert_int_equal(file_write_all(path, "x", 1, false), ENOENT);
  snprintf(path, sizeof path, "%s/f", dir);
  assert_int_equal(unlink(path), 0);
  assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_duration_parse), cmocka_unit_test(test_duration_format),
      cmocka_unit_test(test_b64),            cmocka_unit_test(test_map),
      cmocka_unit_test(test_buf),            cmocka_unit_test(test_uuid),
      cmocka_unit_test(test_jsonw),          cmocka_unit_test(test_file_write),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
