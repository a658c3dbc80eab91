/* fuzz_event.c -- libFuzzer target for what a user event carries off the network: the
 * msgpack UserEvent decoder, then everything an agent does with a decoded event (filters
 * against a node name and services, the JSON it lists, the ID-derived index, the ring) and a
 * re-encode that must decode to the same fields. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event/event.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct event_user *ev = event_decode(data, size);
  if (!ev) return 0;
  const char *tags[] = {"v1", "primary"};
  struct event_service svcs[] = {{"web", tags, 2}, {"db", NULL, 0}};
  (void)event_filter_match(ev, "node-1", svcs, 2);
  char err[256];
  (void)event_validate(ev, err, sizeof err);
  (void)event_index_from_id(ev->id);
  json_t *j = event_user_json(ev);
  json_decref(j);
  struct buf out = BUF_INIT;
  event_encode(&out, ev);
  struct event_user *back = event_decode(out.data, out.len);
  if (!back || strcmp(back->id, ev->id) != 0 || strcmp(back->name, ev->name) != 0 ||
      strcmp(back->node_filter, ev->node_filter) != 0 || back->version != ev->version ||
      back->payload_len != ev->payload_len ||
      (ev->payload_len && memcmp(back->payload, ev->payload, ev->payload_len) != 0))
    abort(); /* what we encode must read back the same */
  event_user_free(back);
  buf_free(&out);
  struct event_ring r;
  event_ring_init(&r);
  event_ring_add(&r, event_user_dup(ev));
  event_ring_add(&r, ev); /* same ID: dropped and freed */
  event_ring_free(&r);
  return 0;
}
