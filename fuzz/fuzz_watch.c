/* fuzz_watch.c -- libFuzzer target for the watch module (src/watch/): a watch's parameters
 * come from config files and the CLI, and a plan decodes whatever the HTTP API answers.
 *
 * The first byte picks the use: even bytes parse the rest as a watch spec (CLI form, then
 * agent form); odd bytes feed the rest as an answer body, with the status and index taken
 * from the first byte, to a plan of each type (twice, so the "unchanged" path runs too), and
 * encode what fires in both of Go's layouts. Any bytes must give a spec, an error or a step,
 * never a crash, leak or sanitizer report. Seeds: fuzz/corpus/watch/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "watch/watch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const specs[] = {
    "{\"type\":\"key\",\"key\":\"a\"}",
    "{\"type\":\"keyprefix\",\"prefix\":\"a/\"}",
    "{\"type\":\"services\"}",
    "{\"type\":\"nodes\"}",
    "{\"type\":\"service\",\"service\":\"web\",\"tag\":[\"a\"]}",
    "{\"type\":\"checks\",\"state\":\"any\"}",
    "{\"type\":\"event\",\"name\":\"x\"}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > (1u << 20)) return 0;
  uint8_t mode = data[0];
  const char *rest = (const char *)data + 1;
  size_t len = size - 1;
  char err[512];
  if ((mode & 1) == 0) {
    json_t *p = json_loadb(rest, len, 0, NULL);
    if (!p) return 0;
    for (int agent = 0; agent < 2; agent++) {
      struct watch_spec s;
      if (watch_spec_parse(p, agent, &s, err, sizeof err) == 0) {
        struct watch_plan plan;
        watch_plan_init(&plan, &s);
        struct buf b = BUF_INIT;
        watch_plan_target(&plan, &b);
        buf_free(&b);
        watch_plan_free(&plan);
      }
      watch_spec_free(&s);
    }
    json_decref(p);
    return 0;
  }
  int status = (mode & 2) ? 200 : (mode & 4) ? 404 : 500;
  for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
    json_t *p = json_loads(specs[i], 0, NULL);
    struct watch_spec s;
    if (watch_spec_parse(p, false, &s, err, sizeof err) != 0) abort();
    json_decref(p);
    struct watch_plan plan;
    watch_plan_init(&plan, &s);
    for (int round = 0; round < 2; round++) {
      const json_t *res;
      uint64_t idx, retry;
      enum watch_step st = watch_plan_feed(&plan, status, NULL, true, (uint64_t)(mode >> 3) + round,
                                           rest, len, &res, &idx, &retry, err, sizeof err);
      if (st == WATCH_STEP_FIRE) {
        struct buf b = BUF_INIT;
        watch_encode(res, false, &b);
        watch_encode(res, true, &b);
        buf_free(&b);
      }
    }
    watch_plan_free(&plan);
    watch_spec_free(&s);
  }
  return 0;
}
