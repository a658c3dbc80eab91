/* fuzz_gossip_crypt.c -- libFuzzer target for gossip encryption: the decrypt path on raw bytes,
 * serf's key queries on raw payloads, and two members of an encrypted pool on the fake network
 * receiving fuzzed traffic that is sealed with the pool's key first (so the fuzzer gets past
 * the GCM tag to the framing and the plaintext decoders) or left raw.
 *
 * Input: [mode][chunks...], each chunk a 2-byte big-endian length and that many bytes.
 *   mode & 3 == 0: every chunk is sealed and sent as a UDP packet to member A
 *   mode & 3 == 1: chunks are one TCP stream to A; each chunk sealed into [10][len][...]
 *                  unless mode & 8, when the stream bytes are raw
 *   mode & 3 == 2: every chunk is a raw (unsealed) packet
 *   mode & 3 == 3: every chunk is a serf message in a sealed user packet (key queries!)
 *   mode & 4: encryption version 0 instead of 1; mode & 16: A does not verify incoming.
 * Each chunk is also fed straight to crypt_decrypt, to every key query handler and to the
 * parser of key query answers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/crypt.h"
#include "gossip/gossip.h"
#include "gossip/io_fake.h"
#include "gossip/keyring.h"
#include "gossip/proto.h"
#include "gossip/serf.h"
#include "gossip/swim.h"
#include "lib/buf.h"
#include "lib/log.h"

/* base64 of 00 01 .. 1f and of 10 11 .. 1f */
static const char *const pool_keys[] = {"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                                        "EBESExQVFhcYGRobHB0eHw=="};

static void raw_paths(const uint8_t *p, size_t n) {
  struct keyring k = {0};
  uint8_t key[32];
  for (int i = 0; i < 32; i++) key[i] = (uint8_t)i;
  keyring_add(&k, key, 16);
  keyring_add(&k, key, 32);
  struct buf out = BUF_INIT;
  crypt_decrypt(&k, p, n, NULL, 0, &out);
  buf_reset(&out);
  const uint8_t hdr[5] = {10, 0, 0, 0, 0};
  crypt_decrypt(&k, p, n, hdr, sizeof hdr, &out);
  struct ml *m = calloc(1, sizeof *m);
  m->cfg.keyring = k;
  const char *ops[] = {"install-key", "use-key", "remove-key", "list-keys"};
  for (size_t i = 0; i < 4; i++) {
    buf_reset(&out);
    serf_keys_answer(m, NULL, ops[i], p, n, 200, &out);
  }
  free(m);
  buf_free(&out);
  struct gossip_key_response r = {0};
  serf_keys_tally(&r, "x", p, n);
  serf_keys_tally(&r, "y", p, n);
  serf_keys_response_free(&r);
}

struct member {
  struct gossip_io *io;
  struct serf *serf;
  struct gossip_addr addr;
};

static void make(struct fakenet *net, struct member *m, const char *name, const char *addr,
                 bool verify_in) {
  gossip_addr_parse(addr, 7946, &m->addr);
  m->io = fakenet_add(net, &m->addr);
  struct gossip_config cfg;
  gossip_config_default(&cfg);
  cfg.node_name = name;
  cfg.encrypt_keys = pool_keys;
  cfg.nencrypt_keys = 2;
  cfg.encrypt_verify_incoming = verify_in;
  char err[128];
  m->serf = serf_new(&cfg, &m->addr, m->io, err, sizeof err);
  if (!m->serf) abort();
  serf_start(m->serf);
}

/* Seals with A's current primary key (key queries may have changed it). */
static void seal(struct member *a, int vsn, const uint8_t *p, size_t n, const uint8_t *aad,
                 size_t aadlen, struct buf *out) {
  const struct keyring *k = &serf_ml(a->serf)->cfg.keyring;
  uint8_t nonce[12] = {0};
  if (k->n) crypt_seal(vsn, k->key[0], k->len[0], nonce, p, n, aad, aadlen, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  log_set_level(LOG_OFF);
  if (size < 1) return 0;
  uint8_t mode = data[0];
  int vsn = mode & 4 ? 0 : 1;
  const uint8_t *p = data + 1, *end = data + size;

  struct fakenet *net = fakenet_new(1);
  struct member a, b;
  make(net, &a, "a", "10.0.0.1:7946", !(mode & 16));
  make(net, &b, "b", "10.0.0.2:7946", true);
  const char *join[1] = {"10.0.0.1:7946"};
  serf_join(b.serf, join, 1, 7946, NULL, NULL);
  fakenet_run_until(net, 1500);

  struct gossip_io_sink *sk = &a.io->sink;
  bool stream_open = false;
  while (end - p >= 2) {
    size_t len = (size_t)p[0] << 8 | p[1];
    p += 2;
    if (len > (size_t)(end - p)) len = (size_t)(end - p);
    const uint8_t *chunk = p;
    p += len;
    raw_paths(chunk, len);
    struct buf out = BUF_INIT;
    switch (mode & 3) {
    case 0:
      seal(&a, vsn, chunk, len, NULL, 0, &out);
      sk->packet(sk->ctx, &b.addr, (const uint8_t *)out.data, out.len);
      break;
    case 1:
      if (!stream_open) {
        sk->stream(sk->ctx, 1000001, GOSSIP_STREAM_ACCEPTED, &b.addr, NULL, 0);
        stream_open = true;
      }
      if (mode & 8) {
        sk->stream(sk->ctx, 1000001, GOSSIP_STREAM_DATA, NULL, chunk, len);
      } else {
        size_t elen = crypt_encrypted_length(vsn, len);
        uint8_t hdr[5] = {10, (uint8_t)(elen >> 24), (uint8_t)(elen >> 16), (uint8_t)(elen >> 8),
                          (uint8_t)elen};
        buf_append(&out, hdr, 5);
        seal(&a, vsn, chunk, len, hdr, 5, &out);
        sk->stream(sk->ctx, 1000001, GOSSIP_STREAM_DATA, NULL, (const uint8_t *)out.data,
                   out.len);
      }
      break;
    case 2:
      sk->packet(sk->ctx, &b.addr, chunk, len);
      break;
    default: {
      struct buf u = BUF_INIT;
      proto_encode_user(&u, chunk, len);
      seal(&a, vsn, (const uint8_t *)u.data, u.len, NULL, 0, &out);
      sk->packet(sk->ctx, &b.addr, (const uint8_t *)out.data, out.len);
      buf_free(&u);
      break;
    }
    }
    buf_free(&out);
    fakenet_run_until(net, fakenet_now(net) + 50);
  }
  if (stream_open) sk->stream(sk->ctx, 1000001, GOSSIP_STREAM_CLOSED, NULL, NULL, 0);
  fakenet_run_until(net, fakenet_now(net) + 10000);
  serf_free(a.serf);
  serf_free(b.serf);
  fakenet_free(net);
  return 0;
}
