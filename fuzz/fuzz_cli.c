/* fuzz_cli.c -- the CLI's decoders of agent answers and user input: the HTTP response parser
 * (fed in random-sized steps), KV JSON from the agent, `kv import` JSON, base64/path/quoting
 * helpers, address parsing, column layout and flag parsing. The first byte picks the target. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/alloc.h"

static void fuzz_http(const char *s, size_t size)
{
  char err[CLI__ERRLEN];
  struct cli__http_parser p;
  struct cli__http_resp r;
  memset(&r, 0, sizeof r);
  cli__http_parser_init(&p, 4096);
  size_t step = size ? (size_t)(s[0] % 7) + 1 : 1;
  int rc = 0;
  for (size_t i = 0; i < size && rc == 0; i += step)
    rc = cli__http_parser_feed(&p, s + i, size - i < step ? size - i : step, false, &r, err, sizeof err);
  if (rc == 0) cli__http_parser_feed(&p, NULL, 0, true, &r, err, sizeof err);
  cli__http_parser_free(&p);
  cli__http_resp_free(&r);
}

static void fuzz_kv_json(const char *s, size_t size)
{
  char err[CLI__ERRLEN];
  struct cli__kvpair *ps;
  size_t n;
  if (cli__kv_decode(s, size, &ps, &n, err, sizeof err) != 0) return;
  struct buf b = BUF_INIT;
  cli__kv_export_json(&b, ps, n);
  for (size_t i = 0; i < n; i++) cli__kv_pretty(&b, &ps[i], i & 1, i & 2);
  buf_free(&b);
  cli__kv_free(ps, n);
}

static void fuzz_import(const char *s, size_t size)
{
  char err[CLI__ERRLEN];
  struct cli__kv_entry *es;
  size_t n;
  if (cli__kv_import_parse(s, size, &es, &n, err, sizeof err) == 0) cli__kv_entries_free(es, n);
}

static void fuzz_strings(char *s, size_t size)
{
  char err[CLI__ERRLEN];
  struct buf b = BUF_INIT;
  cli__b64_decode_std(s, size, &b, err, sizeof err);
  buf_free(&b);
  free(cli__path_clean(s));
  free(cli__path_join(s, s));
  cli__go_quote(&b, s);
  cli__escape_path(&b, s);
  cli__wrap(s, 20, 3, &b);
  buf_free(&b);
  struct cli__addr a;
  if (cli__addr_parse(s, size & 1, &a, err, sizeof err) == 0) cli__addr_free(&a);
}

static void fuzz_columns(char *s)
{
  char *lines[64];
  size_t n = 0;
  char *save = NULL;
  for (char *t = strtok_r(s, "\n", &save); t && n < 64; t = strtok_r(NULL, "\n", &save)) lines[n++] = t;
  struct buf b = BUF_INIT;
  cli__columnize(&b, lines, n);
  buf_free(&b);
}

static void fuzz_flags(char *s)
{
  char *argv[32];
  int argc = 0;
  char *save = NULL;
  for (char *t = strtok_r(s, " ", &save); t && argc < 32; t = strtok_r(NULL, " ", &save)) argv[argc++] = t;
  struct cli__flagset fs;
  bool b1;
  const char *st;
  uint64_t u;
  struct cli__optstr o;
  struct cli__optbool ob;
  cli__flags_init(&fs);
  cli__flag_bool(&fs, "b", &b1, "x");
  cli__flag_string(&fs, "s", &st, "/", "y");
  cli__flag_uint64(&fs, "u", &u, "z");
  cli__flag_optstr(&fs, "o", &o, true, "`q`");
  cli__flag_optbool(&fs, "ob", &ob, true, "w");
  FILE *f = fopen("/dev/null", "w");
  int rest;
  cli__flags_parse(&fs, argc, argv, &rest, f);
  if (f) fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1) return 0;
  unsigned target = data[0] % 6;
  char *s = xmemdup(data + 1, size - 1); /* NUL-terminated copy */
  size--;
  switch (target) {
    case 0: fuzz_http(s, size); break;
    case 1: fuzz_kv_json(s, size); break;
    case 2: fuzz_import(s, size); break;
    case 3: fuzz_strings(s, size); break;
    case 4: fuzz_columns(s); break;
    case 5: fuzz_flags(s); break;
  }
  free(s);
  return 0;
}
