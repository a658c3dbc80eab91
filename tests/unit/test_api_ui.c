/* test_api_ui.c -- the embedded web UI's table and lookups (src/api/ui.c): the build embedded
 * every file under ui/ byte for byte with a quoted content-hash ETag, Content-Types by
 * extension, and the /ui/<tail> resolution: a file by its exact name, anything else (app
 * routes, directories, names that try to climb out) index.html. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ui.h"

#ifndef CONCORD_SOURCE_DIR
#error "CMakeLists.txt defines CONCORD_SOURCE_DIR (the repository) for this test"
#endif

/* The file under ui/ as the repository has it (caller frees), or NULL. */
static char *read_ui_file(const char *name, size_t *len)
{
  char path[512];
  snprintf(path, sizeof path, "%s/ui/%s", CONCORD_SOURCE_DIR, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *data = malloc(1 << 20);
  *len = fread(data, 1, 1 << 20, f);
  fclose(f);
  return data;
}

static void test_table_matches_files(void **state)
{
  (void)state;
  const char *names[] = {"index.html", "app.js", "app.css"};
  for (size_t i = 0; i < 3; i++) {
    const struct api_ui_asset *a = api_ui_find(names[i]);
    assert_non_null(a);
    assert_string_equal(a->path, names[i]);
    size_t len = 0;
    char *want = read_ui_file(names[i], &len);
    assert_non_null(want);
    assert_int_equal(a->len, len);
    assert_memory_equal(a->data, want, len);
    assert_int_equal(a->data[a->len], 0); /* the NUL after the bytes */
    free(want);
    /* "\"" + 20 hex + "\"" */
    assert_int_equal(strlen(a->etag), 22);
    assert_int_equal(a->etag[0], '"');
    assert_int_equal(a->etag[21], '"');
    assert_int_equal(strspn(a->etag + 1, "0123456789abcdef"), 20);
  }
  /* different content, different ETags */
  assert_string_not_equal(api_ui_find("app.js")->etag, api_ui_find("app.css")->etag);
  /* nothing but the files: no dot files, no directories */
  for (size_t i = 0; i < api_ui_assets_count; i++) {
    assert_int_not_equal(api_ui_assets[i].path[0], '.');
    assert_null(strstr(api_ui_assets[i].path, ".."));
  }
}

static void test_content_types(void **state)
{
  (void)state;
  assert_string_equal(api_ui_content_type("index.html"), "text/html; charset=utf-8");
  assert_string_equal(api_ui_content_type("a/b/app.js"), "text/javascript; charset=utf-8");
  assert_string_equal(api_ui_content_type("app.css"), "text/css; charset=utf-8");
  assert_string_equal(api_ui_content_type("x.svg"), "image/svg+xml");
  assert_string_equal(api_ui_content_type("x.png"), "image/png");
  assert_string_equal(api_ui_content_type("x.json"), "application/json");
  /* unknown, none, or a dot only in a directory name */
  assert_string_equal(api_ui_content_type("x.exe"), "application/octet-stream");
  assert_string_equal(api_ui_content_type("README"), "application/octet-stream");
  assert_string_equal(api_ui_content_type("a.js/README"), "application/octet-stream");
  assert_string_equal(api_ui_content_type(""), "application/octet-stream");
  /* the extension must match whole */
  assert_string_equal(api_ui_content_type("x.jsx"), "application/octet-stream");
  assert_string_equal(api_ui_content_type("x.html.bak"), "application/octet-stream");
}

static void test_resolve(void **state)
{
  (void)state;
  const struct api_ui_asset *index = api_ui_find("index.html");
  assert_non_null(index);
  assert_ptr_equal(api_ui_resolve("app.js"), api_ui_find("app.js"));
  assert_ptr_equal(api_ui_resolve("index.html"), index);
  /* the app's routes, directories and unknown names */
  const char *fallback[] = {
    "", "dc1/services", "dc1/services/web", "dc1/kv/a/b/", "missing.js", "APP.JS", "app.js/",
    "/app.js", "./app.js", "../CMakeLists.txt", "../../etc/passwd", "..", "ui/app.js",
    "app.js\n", "app.js%00", "\xff\xfe",
  };
  for (size_t i = 0; i < sizeof fallback / sizeof *fallback; i++)
    assert_ptr_equal(api_ui_resolve(fallback[i]), index);
  assert_null(api_ui_find("missing.js"));
  assert_null(api_ui_find(""));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_table_matches_files),
    cmocka_unit_test(test_content_types),
    cmocka_unit_test(test_resolve),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
