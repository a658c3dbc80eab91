/* fuzz_gossip.c -- libFuzzer target for everything gossip reads off the network: the memberlist
 * and serf decoders, LZW, the stream parser, and the full state machine (two serf members on
 * the fake network, fuzzed packets and streams delivered to one of them).
 *
 * Input: [mode][chunks...], each chunk a 2-byte big-endian length and that many bytes.
 *   mode & 3 == 0: every chunk is a UDP packet to member A (from member B's address)
 *   mode & 3 == 1: chunks are one TCP stream to A (accepted, data, close)
 *   mode & 3 == 2: every chunk is a serf message, wrapped in a memberlist user packet
 *   mode & 3 == 3: chunk 0 is a packet, chunk 1 a stream, the rest packets
 * Each chunk is also fed straight to every decoder. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/io_fake.h"
#include "gossip/lzw.h"
#include "gossip/proto.h"
#include "gossip/serf.h"
#include "gossip/serf_proto.h"
#include "gossip/swim.h"
#include "lib/buf.h"
#include "lib/log.h"

static void decoders(const uint8_t *p, size_t n) {
  union {
    struct proto_ping ping;
    struct proto_indirect_ping ind;
    struct proto_ack ack;
    struct proto_nack nack;
    struct proto_suspect sus;
    struct proto_alive alive;
    struct proto_err err;
    struct serf_join_msg j;
    struct serf_leave_msg l;
    struct serf_user_event_msg e;
    struct serf_query_msg q;
    struct serf_query_response_msg r;
  } u;
  proto_decode_ping(p, n, &u.ping);
  proto_decode_indirect_ping(p, n, &u.ind);
  proto_decode_ack(p, n, &u.ack);
  proto_decode_nack(p, n, &u.nack);
  proto_decode_suspect(p, n, &u.sus);
  proto_decode_alive(p, n, &u.alive);
  proto_decode_err(p, n, &u.err);
  serf_decode_join(p, n, &u.j);
  serf_decode_leave(p, n, &u.l);
  serf_decode_user_event(p, n, &u.e);
  serf_decode_query(p, n, &u.q);
  serf_decode_query_response(p, n, &u.r);
  struct serf_push_pull_msg pp;
  if (serf_decode_push_pull(p, n, &pp) == 0) serf_push_pull_free(&pp);
  struct proto_bytes keys[8], vals[8];
  size_t nt;
  serf_decode_tags(p, n, keys, vals, 8, &nt);
  struct proto_bytes parts[255], inner;
  size_t np, trunc;
  proto_decode_compound(p, n, parts, &np, &trunc);
  proto_check_crc(p, n, &inner);
  struct buf out = BUF_INIT;
  proto_decompress(p, n, 1 << 16, &out);
  buf_reset(&out);
  lzw_decode(p, n, 1 << 16, &out);
  buf_free(&out);
  struct proto_stream_msg sm = {0};
  proto_parse_stream(p, n, &sm);
  proto_stream_msg_free(&sm);
}

struct member {
  struct gossip_io *io;
  struct serf *serf;
  struct gossip_addr addr;
};

static void make(struct fakenet *net, struct member *m, const char *name, const char *addr) {
  gossip_addr_parse(addr, 7946, &m->addr);
  m->io = fakenet_add(net, &m->addr);
  struct gossip_config cfg;
  gossip_config_default(&cfg);
  cfg.node_name = name;
  struct gossip_tag tags[1] = {{"role", "fuzz"}};
  cfg.tags = tags;
  cfg.ntags = 1;
  char err[128];
  m->serf = serf_new(&cfg, &m->addr, m->io, err, sizeof err);
  serf_start(m->serf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  log_set_level(LOG_OFF);
  if (size < 1) return 0;
  uint8_t mode = data[0] & 3;
  const uint8_t *p = data + 1, *end = data + size;

  struct fakenet *net = fakenet_new(1);
  struct member a, b;
  make(net, &a, "a", "10.0.0.1:7946");
  make(net, &b, "b", "10.0.0.2:7946");
  const char *join[1] = {"10.0.0.1:7946"};
  serf_join(b.serf, join, 1, 7946, NULL, NULL);
  fakenet_run_until(net, 1500);

  struct gossip_io_sink *sk = &a.io->sink;
  int idx = 0;
  bool stream_open = false;
  while (end - p >= 2) {
    size_t len = (size_t)p[0] << 8 | p[1];
    p += 2;
    if (len > (size_t)(end - p)) len = (size_t)(end - p);
    const uint8_t *chunk = p;
    p += len;
    decoders(chunk, len);
    bool as_stream = mode == 1 || (mode == 3 && idx == 1);
    if (as_stream) {
      if (!stream_open) {
        sk->stream(sk->ctx, 1000001, GOSSIP_STREAM_ACCEPTED, &b.addr, NULL, 0);
        stream_open = true;
      }
      sk->stream(sk->ctx, 1000001, GOSSIP_STREAM_DATA, NULL, chunk, len);
    } else if (mode == 2) {
      struct buf u = BUF_INIT;
      proto_encode_user(&u, chunk, len);
      sk->packet(sk->ctx, &b.addr, (const uint8_t *)u.data, u.len);
      buf_free(&u);
    } else {
      sk->packet(sk->ctx, &b.addr, chunk, len);
    }
    idx++;
    fakenet_run_until(net, fakenet_now(net) + 50);
  }
  if (stream_open) sk->stream(sk->ctx, 1000001, GOSSIP_STREAM_CLOSED, NULL, NULL, 0);
  /* Let timers fire on whatever state the input left behind. */
  fakenet_run_until(net, fakenet_now(net) + 10000);
  serf_free(a.serf);
  serf_free(b.serf);
  fakenet_free(net);
  return 0;
}
