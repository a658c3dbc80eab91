/* test_event.c -- user events: the msgpack wire form byte for byte as Consul's agent writes
 * it, decoding of what Go's encoders may produce (and of garbage), Consul's validation
 * messages, the node/service/tag filters, the index derived from an ID, and the ring with its
 * one-shot waiters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "event/event.h"
#include "lib/alloc.h"
#include "lib/buf.h"

static const char *ID = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c";

static struct event_user *sample(void)
{
  struct event_user *ev = event_user_new();
  memcpy(ev->id, ID, 37);
  free(ev->name);
  ev->name = xstrdup("deploy");
  ev->payload = (uint8_t *)xstrdup("hi");
  ev->payload_len = 2;
  free(ev->node_filter);
  ev->node_filter = xstrdup("web");
  ev->version = 1;
  return ev;
}

static void test_encode_exact_bytes(void **state)
{
  (void)state;
  struct event_user *ev = sample();
  struct buf out = BUF_INIT;
  event_encode(&out, ev);
  /* ugorji with WriteExt: fixmap(5), fixstr keys, str8 for the 36-byte ID, bin8 payload,
   * omitempty leaves out sf and tf, v as a positive fixint; struct field order. */
  struct buf want = BUF_INIT;
  buf_append(&want, "\x85\xa2" "ID" "\xd9\x24", 6);
  buf_append(&want, ID, 36);
  buf_append(&want, "\xa1n\xa6" "deploy", 9);
  buf_append(&want, "\xa1p\xc4\x02hi", 6);
  buf_append(&want, "\xa2nf\xa3web", 7);
  buf_append(&want, "\xa1v\x01", 3);
  assert_int_equal(out.len, want.len);
  assert_memory_equal(out.data, want.data, want.len);
  /* and it decodes back */
  struct event_user *back = event_decode(out.data, out.len);
  assert_non_null(back);
  assert_string_equal(back->id, ID);
  assert_string_equal(back->name, "deploy");
  assert_int_equal(back->payload_len, 2);
  assert_memory_equal(back->payload, "hi", 2);
  assert_string_equal(back->node_filter, "web");
  assert_string_equal(back->service_filter, "");
  assert_int_equal(back->version, 1);
  event_user_free(back);
  buf_free(&out);
  buf_free(&want);
  event_user_free(ev);
}

static void test_encode_empty_payload_is_omitted(void **state)
{
  (void)state;
  struct event_user *ev = event_user_new();
  memcpy(ev->id, ID, 37);
  free(ev->name);
  ev->name = xstrdup("x");
  ev->version = 1;
  struct buf out = BUF_INIT;
  event_encode(&out, ev);
  assert_int_equal((uint8_t)out.data[0], 0x83); /* ID, n, v */
  struct event_user *back = event_decode(out.data, out.len);
  assert_non_null(back);
  assert_null(back->payload); /* JSON null, as Consul lists it */
  event_user_free(back);
  buf_free(&out);
  event_user_free(ev);
}

static void test_decode_old_spec_and_unknown_keys(void **state)
{
  (void)state;
  /* raw16 (0xda) strings as old go-msgpack writes them, an unknown key with a nested map. */
  struct buf in = BUF_INIT;
  buf_append(&in, "\x84\xa1n\xda\x00\x03" "abc", 9);
  buf_append(&in, "\xa1x\x81\xa1y\x90", 6);
  buf_append(&in, "\xa2sf\xa2" "db", 6);
  buf_append(&in, "\xa1v\x02", 3);
  struct event_user *ev = event_decode(in.data, in.len);
  assert_non_null(ev);
  assert_string_equal(ev->name, "abc");
  assert_string_equal(ev->service_filter, "db");
  assert_int_equal(ev->version, 2);
  assert_string_equal(ev->id, "");
  event_user_free(ev);
  buf_free(&in);
}

static void test_decode_rejects_garbage(void **state)
{
  (void)state;
  assert_null(event_decode("", 0));
  assert_null(event_decode("\xc0", 1));               /* nil */
  assert_null(event_decode("\x91\x01", 2));           /* array */
  assert_null(event_decode("\x81\xa1n", 3));          /* truncated */
  assert_null(event_decode("\x81\xa1n\x05", 4));      /* name is an int */
  assert_null(event_decode("\x81\xa2ID\xa3" "a\0b", 8)); /* NUL inside */
  assert_null(event_decode("\x81\xa1n\xdb\xff\xff\xff\xff", 8)); /* huge length */
  /* an ID longer than a UUID */
  struct buf in = BUF_INIT;
  buf_append(&in, "\x81\xa2ID\xd9\x30", 5);
  for (int i = 0; i < 48; i++) buf_append(&in, "a", 1);
  assert_null(event_decode(in.data, in.len));
  buf_free(&in);
}

static void test_validate_messages(void **state)
{
  (void)state;
  char err[256];
  struct event_user *ev = event_user_new();
  assert_int_equal(event_validate(ev, err, sizeof err), -1);
  assert_string_equal(err, "User event missing name");
  free(ev->name);
  ev->name = xstrdup("n");
  free(ev->tag_filter);
  ev->tag_filter = xstrdup("v1");
  assert_int_equal(event_validate(ev, err, sizeof err), -1);
  assert_string_equal(err, "Cannot provide tag filter without service filter");
  free(ev->service_filter);
  ev->service_filter = xstrdup("web");
  assert_int_equal(event_validate(ev, err, sizeof err), 0);
  free(ev->node_filter);
  ev->node_filter = xstrdup("(");
  assert_int_equal(event_validate(ev, err, sizeof err), -1);
  assert_true(strncmp(err, "Invalid node filter: error parsing regexp: ", 42) == 0);
  event_user_free(ev);
}

static void test_filters(void **state)
{
  (void)state;
  const char *web_tags[] = {"v1", "primary"};
  const char *db_tags[] = {"replica"};
  struct event_service svcs[] = {{"web", web_tags, 2}, {"db-2", db_tags, 1}};
  struct event_user *ev = event_user_new();
  free(ev->name);
  ev->name = xstrdup("n");
  assert_true(event_filter_match(ev, "node1", NULL, 0)); /* no filters */
  free(ev->node_filter);
  ev->node_filter = xstrdup("^node\\d$");
  assert_true(event_filter_match(ev, "node1", NULL, 0));
  assert_false(event_filter_match(ev, "node12", NULL, 0));
  assert_false(event_filter_match(ev, "other", NULL, 0));
  free(ev->node_filter);
  ev->node_filter = xstrdup("");
  free(ev->service_filter);
  ev->service_filter = xstrdup("db");
  assert_true(event_filter_match(ev, "n", svcs, 2));  /* unanchored: "db-2" */
  assert_false(event_filter_match(ev, "n", svcs, 0)); /* no services at all */
  free(ev->tag_filter);
  ev->tag_filter = xstrdup("^primary$");
  assert_false(event_filter_match(ev, "n", svcs, 2)); /* db has no such tag */
  free(ev->service_filter);
  ev->service_filter = xstrdup("web|db");
  assert_true(event_filter_match(ev, "n", svcs, 2));
  free(ev->tag_filter);
  ev->tag_filter = xstrdup("[");
  assert_false(event_filter_match(ev, "n", svcs, 2)); /* bad regexp never matches */
  event_user_free(ev);
}

static void test_index_from_id(void **state)
{
  (void)state;
  /* 0xb54fe1107af5cafc ^ 0xd1fbafc8ba432b1c */
  assert_true(event_index_from_id(ID) == 7256511592453824992ULL);
  assert_true(event_index_from_id("B54FE110-7AF5-CAFC-D1FB-AFC8BA432B1C") == 7256511592453824992ULL);
  assert_true(event_index_from_id("") == 0);
  assert_true(event_index_from_id("b54fe110x7af5-cafc-d1fb-afc8ba432b1c") == 0);
  assert_true(event_index_from_id("g54fe110-7af5-cafc-d1fb-afc8ba432b1c") == 0);
}

static struct event_user *numbered(int i)
{
  struct event_user *ev = event_user_new();
  snprintf(ev->id, sizeof ev->id, "00000000-0000-0000-0000-%012d", i);
  free(ev->name);
  ev->name = xstrdup(i % 2 ? "odd" : "even");
  ev->ltime = (uint64_t)i;
  return ev;
}

static int fired;
static struct event_ring *rearm_ring;
static void on_event(void *arg)
{
  (void)arg;
  fired++;
  if (rearm_ring) event_ring_wait(rearm_ring, on_event, NULL); /* must not fire now */
}

static void test_ring(void **state)
{
  (void)state;
  struct event_ring r;
  event_ring_init(&r);
  const struct event_user *list[EVENT_RING_SIZE];
  assert_int_equal(event_ring_list(&r, list), 0);
  assert_null(event_ring_last(&r));
  for (int i = 1; i <= 3; i++) assert_true(event_ring_add(&r, numbered(i)));
  assert_int_equal(event_ring_list(&r, list), 3);
  assert_int_equal(list[0]->ltime, 1);
  assert_int_equal(list[2]->ltime, 3);
  assert_false(event_ring_add(&r, numbered(2))); /* duplicate ID */
  assert_int_equal(event_ring_list(&r, list), 3);
  for (int i = 4; i <= 300; i++) event_ring_add(&r, numbered(i));
  assert_int_equal(event_ring_list(&r, list), EVENT_RING_SIZE);
  assert_int_equal(list[0]->ltime, 300 - EVENT_RING_SIZE + 1); /* oldest kept */
  assert_int_equal(list[EVENT_RING_SIZE - 1]->ltime, 300);
  assert_int_equal(event_ring_last(&r)->ltime, 300);
  /* waiters: one-shot, unwait, re-arming inside the callback */
  fired = 0;
  struct event_waiter *w = event_ring_wait(&r, on_event, NULL);
  event_ring_wait(&r, on_event, NULL);
  event_ring_unwait(&r, w);
  event_ring_add(&r, numbered(301));
  assert_int_equal(fired, 1);
  event_ring_add(&r, numbered(302));
  assert_int_equal(fired, 1);
  rearm_ring = &r;
  event_ring_wait(&r, on_event, NULL);
  event_ring_add(&r, numbered(303));
  assert_int_equal(fired, 2);
  rearm_ring = NULL;
  event_ring_add(&r, numbered(304));
  assert_int_equal(fired, 3);
  event_ring_wait(&r, on_event, NULL); /* left waiting: freed by event_ring_free */
  event_ring_free(&r);
}

static void test_json(void **state)
{
  (void)state;
  struct event_user *ev = sample();
  ev->ltime = 19;
  json_t *j = event_user_json(ev);
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_string_equal(s, "{\"ID\":\"b54fe110-7af5-cafc-d1fb-afc8ba432b1c\",\"Name\":\"deploy\","
                         "\"Payload\":\"aGk=\",\"NodeFilter\":\"web\",\"ServiceFilter\":\"\","
                         "\"TagFilter\":\"\",\"Version\":1,\"LTime\":19}");
  free(s);
  json_decref(j);
  event_user_free(ev);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_exact_bytes),
      cmocka_unit_test(test_encode_empty_payload_is_omitted),
      cmocka_unit_test(test_decode_old_spec_and_unknown_keys),
      cmocka_unit_test(test_decode_rejects_garbage),
      cmocka_unit_test(test_validate_messages),
      cmocka_unit_test(test_filters),
      cmocka_unit_test(test_index_from_id),
      cmocka_unit_test(test_ring),
      cmocka_unit_test(test_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
