/* test_gossip_crypt.c -- gossip encryption (src/gossip/crypt.c, keyring.c, serf_keys.c).
 *
 * The go_* vectors were printed by tests/tools/gocrypt/main.go (run it offline with
 * GO111MODULE=off GOPATH=/usr/share/gocode go run main.go): the fixed-nonce ones are Go's
 * crypto/aes + crypto/cipher GCM in memberlist's layout; go_ml_packet and go_ml_stream are what
 * Debian's hashicorp/memberlist itself put on its mock transport with a 32-byte SecretKey
 * (random nonces, so we decrypt them rather than reproduce them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "gossip/crypt.h"
#include "gossip/keyring.h"
#include "gossip/mp.h"
#include "gossip/proto.h"
#include "gossip/serf.h"
#include "gossip/serf_proto.h"
#include "gossip/swim.h"
#include "lib/buf.h"
#include "lib/err.h"

/* key = 01 02 .. (16/24/32 bytes), nonce = a0 .. ab, plaintext "concord speaks memberlist". */
static const char go_v1_k16[] = "01a0a1a2a3a4a5a6a7a8a9aaab616cf9c509df65b6440bab089856f7e9db1785240ddb4a9ddc2eeffcca758820b7fc555979bbfad081";
static const char go_v0_k16[] = "00a0a1a2a3a4a5a6a7a8a9aaab616cf9c509df65b6440bab089856f7e9db1785240ddb4a9ddcd7d146b1bedee3603bf3ef58d2c0c6a2d60e6d96f70507";
static const char go_v1_k24[] = "01a0a1a2a3a4a5a6a7a8a9aaab4554f8ba8de4793e8dd8205e4e8c79bd20bd62dbb737fa5276e0caccaa56628faf456b67de39a423c9";
static const char go_v1_k32[] = "01a0a1a2a3a4a5a6a7a8a9aaabdabe530592c73e240c7ec70a9af600e932bad27c2a0409f753dd357c32a12b420ef46eebe1f4815894";
/* version 0, 32-byte key, plaintext 30 31 .. 3f (a whole block: a whole block of padding) */
static const char go_v0_k32_block[] = "00a0a1a2a3a4a5a6a7a8a9aaab89e00f55c9806c3347379850cdb81ebb47c7a00948787094374bc5ed425ec8257783d595e5d4290fc34c29e1b41d4070";
/* version 1, 16-byte key, empty plaintext */
static const char go_v1_empty[] = "01a0a1a2a3a4a5a6a7a8a9aaabdbc5dc76b125e3d9ee374160f6657057";
/* a stream: [10][length][version 1, 32-byte key], the 5-byte header as additional data */
static const char go_stream_k32[] = "0a0000003601a0a1a2a3a4a5a6a7a8a9aaabdabe530592c73e240c7ec70a9af600e932bad27c2a0409f7538bc1f5d694750ef6fa8935ed9c9466e2";
/* memberlist SendToAddress("hello from memberlist") and SendReliable("hello over tcp"), key
 * 40 41 .. 5f */
static const char go_ml_packet[] = "01047b4ffaf5cb3810a9920a15d0f5bf03d0ed0313ed2a00db336df73d7060413bb13cc2071a2f83ee5f080d07b0d349ca8417";
static const char go_ml_stream[] = "0a0000004d01d476966210fc1601de398501d98d7c30551bcbbc434c1083f41336b0b4f19b73006258a73a6408b33c8021490700405b53922e14efd40b7fc1f61cb9f78c1f1e6f3ede7770c56cc7ef55d8f3";

static const char plaintext[] = "concord speaks memberlist";

static uint8_t *unhex(const char *hex, size_t *len) {
  size_t n = strlen(hex) / 2;
  uint8_t *out = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
  *len = n;
  return out;
}

static void seq(uint8_t *b, size_t n, uint8_t start) {
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(start + i);
}

static void ring_of(struct keyring *k, size_t keylen, uint8_t start) {
  memset(k, 0, sizeof *k);
  uint8_t key[32];
  seq(key, keylen, start);
  assert_int_equal(keyring_add(k, key, keylen), 0);
}

static void assert_hex(const struct buf *b, const char *hex) {
  size_t n;
  uint8_t *want = unhex(hex, &n);
  assert_int_equal(b->len, n);
  assert_memory_equal(b->data, want, n);
  free(want);
}

/* Seals with the pinned nonce and compares with Go; then opens Go's bytes. */
static void check_vector(int vsn, size_t keylen, const void *msg, size_t len, const char *hex) {
  uint8_t key[32], nonce[12];
  seq(key, keylen, 1);
  seq(nonce, 12, 0xa0);
  struct buf out = BUF_INIT;
  assert_int_equal(crypt_seal(vsn, key, keylen, nonce, msg, len, NULL, 0, &out), 0);
  assert_hex(&out, hex);
  assert_int_equal(out.len, crypt_encrypted_length(vsn, len));
  struct keyring k;
  ring_of(&k, keylen, 1);
  size_t n;
  uint8_t *ct = unhex(hex, &n);
  struct buf plain = BUF_INIT;
  assert_int_equal(crypt_decrypt(&k, ct, n, NULL, 0, &plain), 0);
  assert_int_equal(plain.len, len);
  if (len) assert_memory_equal(plain.data, msg, len);
  free(ct);
  buf_free(&out);
  buf_free(&plain);
}

static void test_go_vectors(void **state) {
  (void)state;
  check_vector(1, 16, plaintext, strlen(plaintext), go_v1_k16);
  check_vector(0, 16, plaintext, strlen(plaintext), go_v0_k16);
  check_vector(1, 24, plaintext, strlen(plaintext), go_v1_k24);
  check_vector(1, 32, plaintext, strlen(plaintext), go_v1_k32);
  uint8_t block[16];
  seq(block, 16, 0x30);
  check_vector(0, 32, block, 16, go_v0_k32_block);
  check_vector(1, 16, "", 0, go_v1_empty);
  assert_int_equal(crypt_overhead(0), 45);
  assert_int_equal(crypt_overhead(1), 29);
}

static void test_go_stream_vector(void **state) {
  (void)state;
  size_t n;
  uint8_t *s = unhex(go_stream_k32, &n);
  assert_int_equal(s[0], PROTO_ENCRYPT);
  uint32_t len = (uint32_t)s[1] << 24 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 8 | s[4];
  assert_int_equal(len, n - 5);
  struct keyring k;
  ring_of(&k, 32, 1);
  struct buf plain = BUF_INIT;
  assert_int_equal(crypt_decrypt(&k, s + 5, len, s, 5, &plain), 0);
  assert_int_equal(plain.len, strlen(plaintext));
  /* The header is authenticated: without it, or with another length, it does not open. */
  buf_reset(&plain);
  assert_int_equal(crypt_decrypt(&k, s + 5, len, NULL, 0, &plain), CC_ECORRUPT);
  s[4] ^= 1;
  assert_int_equal(crypt_decrypt(&k, s + 5, len, s, 5, &plain), CC_ECORRUPT);
  free(s);
  buf_free(&plain);
}

static void test_memberlist_packet_and_stream(void **state) {
  (void)state;
  struct keyring k;
  ring_of(&k, 32, 0x40);
  size_t n;
  uint8_t *p = unhex(go_ml_packet, &n);
  struct buf plain = BUF_INIT;
  assert_int_equal(crypt_decrypt(&k, p, n, NULL, 0, &plain), 0);
  const char *hello = "hello from memberlist";
  assert_int_equal(plain.len, 1 + strlen(hello));
  assert_int_equal((uint8_t)plain.data[0], PROTO_USER);
  assert_memory_equal(plain.data + 1, hello, strlen(hello));
  free(p);

  uint8_t *s = unhex(go_ml_stream, &n);
  assert_int_equal(s[0], PROTO_ENCRYPT);
  buf_reset(&plain);
  assert_int_equal(crypt_decrypt(&k, s + 5, n - 5, s, 5, &plain), 0);
  struct proto_stream_msg msg = {0};
  assert_int_equal(proto_parse_stream((const uint8_t *)plain.data, plain.len, &msg), 0);
  assert_int_equal(msg.type, PROTO_USER);
  assert_int_equal(msg.user.len, strlen("hello over tcp"));
  assert_memory_equal(msg.user.p, "hello over tcp", msg.user.len);
  proto_stream_msg_free(&msg);
  free(s);
  buf_free(&plain);
}

static void test_keys_tried_in_turn(void **state) {
  (void)state;
  size_t n;
  uint8_t *ct = unhex(go_v1_k16, &n);
  struct keyring k;
  ring_of(&k, 32, 0x77); /* wrong key first */
  struct buf plain = BUF_INIT;
  assert_int_equal(crypt_decrypt(&k, ct, n, NULL, 0, &plain), CC_ECORRUPT);
  uint8_t right[16];
  seq(right, 16, 1);
  assert_int_equal(keyring_add(&k, right, 16), 0);
  assert_int_equal(crypt_decrypt(&k, ct, n, NULL, 0, &plain), 0);
  assert_int_equal(plain.len, strlen(plaintext));
  /* An empty keyring opens nothing. */
  struct keyring none = {0};
  buf_reset(&plain);
  assert_int_equal(crypt_decrypt(&none, ct, n, NULL, 0, &plain), CC_ECORRUPT);
  free(ct);
  buf_free(&plain);
}

static void test_bad_input(void **state) {
  (void)state;
  struct keyring k;
  ring_of(&k, 16, 1);
  size_t n;
  uint8_t *ct = unhex(go_v1_k16, &n);
  struct buf plain = BUF_INIT;
  /* every truncation fails cleanly */
  for (size_t i = 0; i < n; i++) {
    buf_reset(&plain);
    int rc = crypt_decrypt(&k, ct, i, NULL, 0, &plain);
    assert_true(rc == CC_EINVAL || rc == CC_ECORRUPT);
  }
  /* below the minimum size of its version */
  assert_int_equal(crypt_decrypt(&k, ct, 28, NULL, 0, &plain), CC_EINVAL);
  /* any flipped bit after the version byte fails the tag */
  for (size_t i = 1; i < n; i++) {
    ct[i] ^= 0x10;
    buf_reset(&plain);
    assert_int_equal(crypt_decrypt(&k, ct, n, NULL, 0, &plain), CC_ECORRUPT);
    ct[i] ^= 0x10;
  }
  /* unknown version */
  ct[0] = 2;
  assert_int_equal(crypt_decrypt(&k, ct, n, NULL, 0, &plain), CC_EINVAL);
  /* the version byte is not authenticated: version 1 bytes read as version 0 open, but their
   * last byte ('t', 116) is no valid padding for 25 bytes */
  ct[0] = 0;
  assert_int_equal(crypt_decrypt(&k, ct, n, NULL, 0, &plain), CC_EINVAL);
  assert_int_equal(crypt_decrypt(&k, ct, 0, NULL, 0, &plain), CC_EINVAL);
  /* bad keys and versions when sealing */
  uint8_t nonce[12] = {0}, key[32] = {0};
  struct buf out = BUF_INIT;
  assert_int_equal(crypt_seal(1, key, 15, nonce, "x", 1, NULL, 0, &out), CC_EINVAL);
  assert_int_equal(crypt_seal(2, key, 16, nonce, "x", 1, NULL, 0, &out), CC_EINVAL);
  assert_int_equal(out.len, 0);
  /* random nonces differ */
  struct buf a = BUF_INIT, b = BUF_INIT;
  assert_int_equal(crypt_encrypt(1, key, 32, "x", 1, NULL, 0, &a), 0);
  assert_int_equal(crypt_encrypt(1, key, 32, "x", 1, NULL, 0, &b), 0);
  assert_int_equal(a.len, b.len);
  assert_memory_not_equal(a.data + 1, b.data + 1, 12);
  free(ct);
  buf_free(&plain);
  buf_free(&a);
  buf_free(&b);
}

/* memberlist keyring.go semantics. */
static void test_keyring_ops(void **state) {
  (void)state;
  struct keyring k = {0};
  uint8_t a[16], b[24], c[32];
  seq(a, 16, 1);
  seq(b, 24, 2);
  seq(c, 32, 3);
  assert_int_equal(keyring_add(&k, a, 15), CC_EINVAL);
  assert_int_equal(keyring_add(&k, a, 16), 0);
  assert_int_equal(keyring_add(&k, b, 24), 0);
  assert_int_equal(keyring_add(&k, c, 32), 0);
  assert_int_equal(keyring_add(&k, b, 24), 0); /* already there: nothing changes */
  assert_int_equal(k.n, 3);
  assert_memory_equal(k.key[0], a, 16); /* the first stays primary */
  assert_int_equal(keyring_use(&k, c, 31), CC_ENOTFOUND);
  assert_int_equal(keyring_use(&k, c, 32), 0);
  assert_memory_equal(k.key[0], c, 32); /* primary first, the others in their order */
  assert_memory_equal(k.key[1], a, 16);
  assert_memory_equal(k.key[2], b, 24);
  assert_int_equal(keyring_remove(&k, c, 32), CC_EINVAL); /* not the primary */
  assert_int_equal(keyring_remove(&k, a, 16), 0);
  assert_int_equal(keyring_remove(&k, a, 16), 0); /* absent: fine, as memberlist */
  assert_int_equal(k.n, 2);
  assert_memory_equal(k.key[1], b, 24);
  assert_int_equal(k.len[1], 24);
  char b64[KEYRING_B64_MAX];
  keyring_encode(&k, 1, b64);
  uint8_t back[32];
  size_t blen;
  char why[64];
  assert_int_equal(keyring_decode(b64, back, &blen, why, sizeof why), 0);
  assert_int_equal(blen, 24);
  assert_int_equal(keyring_decode("AAAA", back, &blen, why, sizeof why), CC_EINVAL);
  assert_string_equal(why, "key size must be 16, 24 or 32 bytes");
  assert_int_equal(keyring_decode("not base64!", back, &blen, why, sizeof why), CC_EINVAL);
  struct keyring full = {0};
  for (int i = 0; i < KEYRING_MAX_KEYS; i++) {
    seq(a, 16, (uint8_t)i);
    assert_int_equal(keyring_add(&full, a, 16), 0);
  }
  seq(a, 16, 200);
  assert_int_equal(keyring_add(&full, a, 16), CC_ETOOBIG);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_keyring_file(void **state) {
  (void)state;
  char dir[] = "/tmp/concord-keyring-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], errbuf[256];
  snprintf(path, sizeof path, "%s/serf/local.keyring", dir);
  const char *k1 = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
  const char *k2 = "ZWTL+bgjHyQPhJRKcFe3ccirc2SFHmc/Nw67l8NQfdk=";
  struct keyring k;
  /* no -encrypt, no file: no encryption, nothing written */
  assert_int_equal(keyring_setup(path, NULL, &k, errbuf, sizeof errbuf), 0);
  assert_int_equal(k.n, 0);
  assert_int_not_equal(access(path, F_OK), 0);
  /* first start with -encrypt writes the file (directory included, 0600) */
  assert_int_equal(keyring_setup(path, k1, &k, errbuf, sizeof errbuf), 0);
  assert_int_equal(k.n, 1);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  /* a change is saved as serf does (indented) and read back in order */
  uint8_t raw[32];
  size_t rlen;
  assert_int_equal(keyring_decode(k2, raw, &rlen, errbuf, sizeof errbuf), 0);
  assert_int_equal(keyring_add(&k, raw, rlen), 0);
  assert_int_equal(keyring_use(&k, raw, rlen), 0);
  assert_int_equal(keyring_save_file(path, &k, errbuf, sizeof errbuf), 0);
  FILE *f = fopen(path, "r");
  char text[256] = "";
  size_t tn = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[tn] = '\0';
  char want[256];
  snprintf(want, sizeof want, "[\n  \"%s\",\n  \"%s\"\n]", k2, k1);
  assert_string_equal(text, want);
  /* a later start with the old -encrypt key: the file wins */
  assert_int_equal(keyring_setup(path, k1, &k, errbuf, sizeof errbuf), 0);
  assert_int_equal(k.n, 2);
  assert_memory_equal(k.key[0], raw, 32);
  /* bad files */
  const char *bad[] = {"", "{}", "[]", "[1]", "[\"AAAA\"]", "[\"???\"]", "[\"a\""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_file(path, bad[i]);
    errbuf[0] = '\0';
    assert_int_equal(keyring_load_file(path, &k, errbuf, sizeof errbuf), CC_EINVAL);
    assert_true(errbuf[0] != '\0');
  }
  assert_int_equal(keyring_setup(path, k1, &k, errbuf, sizeof errbuf), CC_EINVAL);
  assert_int_equal(keyring_setup(path, "AAAA", &k, errbuf, sizeof errbuf), CC_EINVAL);
  assert_string_equal(errbuf, "Invalid key: key size must be 16, 24 or 32 bytes");
  unlink(path);
  snprintf(path, sizeof path, "%s/serf", dir);
  rmdir(path);
  rmdir(dir);
}

/* Reads a key response [8][{Keys, Message, PrimaryKey, Result}] into its parts. */
static void read_answer(const struct buf *b, bool *result, char *message, size_t *nkeys,
                        char *primary) {
  const uint8_t *p = (const uint8_t *)b->data;
  assert_int_equal(p[0], SERF_MSG_KEY_RESPONSE);
  struct mp_r r;
  mp_r_init(&r, p + 1, b->len - 1);
  uint32_t n;
  assert_int_equal(mp_read_map(&r, &n), 0);
  assert_int_equal(n, 4);
  *nkeys = 0;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k, *v;
    uint32_t kl, vl;
    assert_int_equal(mp_read_raw(&r, 64, &k, &kl), 0);
    if (mp_key_is(k, kl, "Result")) {
      assert_int_equal(mp_read_bool(&r, result), 0);
    } else if (mp_key_is(k, kl, "Keys")) {
      struct mp_r save = r;
      struct mp_val val;
      assert_int_equal(mp_next(&r, &val), 0);
      if (val.type == MP_NIL) continue;
      r = save;
      uint32_t cnt;
      assert_int_equal(mp_read_array(&r, &cnt), 0);
      for (uint32_t j = 0; j < cnt; j++) assert_int_equal(mp_read_raw(&r, 64, &v, &vl), 0);
      *nkeys = cnt;
    } else {
      assert_int_equal(mp_read_raw(&r, 1024, &v, &vl), 0);
      char *dst = mp_key_is(k, kl, "Message") ? message : primary;
      memcpy(dst, v, vl);
      dst[vl] = '\0';
    }
  }
}

static void key_request(struct buf *b, const uint8_t *key, size_t len) {
  buf_reset(b);
  buf_putc(b, SERF_MSG_KEY_REQUEST);
  mp_put_map(b, 1);
  mp_put_str(b, "Key");
  mp_put_raw(b, key, len);
}

/* serf internal_query.go's answers, applied to a member's keyring. */
static void test_key_queries(void **state) {
  (void)state;
  struct ml *m = calloc(1, sizeof *m);
  struct buf req = BUF_INIT, out = BUF_INIT;
  bool result;
  char msg[1100], primary[64];
  size_t nkeys;
  /* no encryption: nothing to list or modify */
  assert_true(serf_keys_answer(m, NULL, "list-keys", NULL, 0, 900, &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_false(result);
  assert_string_equal(msg, "Keyring is empty (encryption not enabled)");
  uint8_t a[16], b[32];
  seq(a, 16, 1);
  seq(b, 32, 9);
  key_request(&req, b, 32);
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "install-key", (const uint8_t *)req.data, req.len, 900,
                               &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_false(result);
  assert_string_equal(msg, "No keyring to modify (encryption not enabled)");
  /* other internal queries are not ours */
  assert_false(serf_keys_answer(m, NULL, "ping", NULL, 0, 900, &out));
  assert_false(serf_keys_answer(m, NULL, "conflict", NULL, 0, 900, &out));

  keyring_add(&m->cfg.keyring, a, 16);
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "install-key", (const uint8_t *)req.data, req.len, 900,
                               &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_true(result);
  assert_string_equal(msg, "");
  assert_int_equal(m->cfg.keyring.n, 2);
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "use-key", (const uint8_t *)req.data, req.len, 900, &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_true(result);
  assert_memory_equal(m->cfg.keyring.key[0], b, 32);
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "remove-key", (const uint8_t *)req.data, req.len, 900,
                               &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_false(result);
  assert_string_equal(msg, "Removing the primary key is not allowed");
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "list-keys", NULL, 0, 900, &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_true(result);
  assert_int_equal(nkeys, 2);
  char want[KEYRING_B64_MAX];
  keyring_encode(&m->cfg.keyring, 0, want);
  assert_string_equal(primary, want);
  /* a wrong size, an unknown key, garbage */
  key_request(&req, a, 15);
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "install-key", (const uint8_t *)req.data, req.len, 900,
                               &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_false(result);
  assert_string_equal(msg, "key size must be 16, 24 or 32 bytes");
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "use-key", (const uint8_t *)req.data, req.len, 900, &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_false(result);
  assert_string_equal(msg, "Requested key is not in the keyring");
  const uint8_t junk[] = {7, 0xde, 0xad};
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "use-key", junk, sizeof junk, 900, &out));
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_false(result);
  assert_true(serf_keys_answer(m, NULL, "use-key", NULL, 0, 900, &out));
  /* a list too large for a query response is cut, with serf's message */
  for (int i = 0; i < 20; i++) {
    uint8_t k[32];
    seq(k, 32, (uint8_t)(40 + i));
    keyring_add(&m->cfg.keyring, k, 32);
  }
  buf_reset(&out);
  assert_true(serf_keys_answer(m, NULL, "list-keys", NULL, 0, 400, &out));
  assert_true(out.len <= 400);
  read_answer(&out, &result, msg, &nkeys, primary);
  assert_true(result);
  assert_true(nkeys < 22);
  char expect[128];
  snprintf(expect, sizeof expect, "truncated key list response, showing first %zu of 22 keys",
           nkeys);
  assert_string_equal(msg, expect);
  buf_free(&req);
  buf_free(&out);
  free(m);
}

/* serf streamKeyResp: answers from three members, one failing, one not a key answer. */
static void test_key_tally(void **state) {
  (void)state;
  struct ml *m = calloc(1, sizeof *m);
  uint8_t a[16], b[32];
  seq(a, 16, 1);
  seq(b, 32, 9);
  keyring_add(&m->cfg.keyring, a, 16);
  keyring_add(&m->cfg.keyring, b, 32);
  struct buf ok = BUF_INIT, fail = BUF_INIT, req = BUF_INIT;
  assert_true(serf_keys_answer(m, NULL, "list-keys", NULL, 0, 900, &ok));
  key_request(&req, a, 16);
  assert_true(serf_keys_answer(m, NULL, "remove-key", (const uint8_t *)req.data, req.len, 900,
                               &fail));
  struct gossip_key_response r = {0};
  serf_keys_tally(&r, "n1", (const uint8_t *)ok.data, ok.len);
  serf_keys_tally(&r, "n2", (const uint8_t *)ok.data, ok.len);
  serf_keys_tally(&r, "n3", (const uint8_t *)fail.data, fail.len);
  serf_keys_tally(&r, "n4", (const uint8_t *)"\x05junk", 5);
  assert_int_equal(r.num_resp, 4);
  assert_int_equal(r.num_err, 2);
  assert_int_equal(r.nkeys, 2);
  assert_int_equal(r.keys[0].count, 2);
  assert_int_equal(r.keys[1].count, 2);
  char a64[KEYRING_B64_MAX];
  keyring_encode(&m->cfg.keyring, 0, a64);
  assert_string_equal(r.keys[0].key, a64);
  assert_int_equal(r.nmessages, 2);
  assert_string_equal(r.msg_nodes[0], "n3");
  assert_string_equal(r.msg_texts[0], "Removing the primary key is not allowed");
  assert_string_equal(r.msg_nodes[1], "n4");
  assert_string_equal(r.msg_texts[1], "Invalid key query response type");
  serf_keys_response_free(&r);
  buf_free(&ok);
  buf_free(&fail);
  buf_free(&req);
  free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_go_vectors),
      cmocka_unit_test(test_go_stream_vector),
      cmocka_unit_test(test_memberlist_packet_and_stream),
      cmocka_unit_test(test_keys_tried_in_turn),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_keyring_ops),
      cmocka_unit_test(test_keyring_file),
      cmocka_unit_test(test_key_queries),
      cmocka_unit_test(test_key_tally),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
