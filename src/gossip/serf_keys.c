/* serf_keys.c -- serf's KeyManager (keymanager.go) and its internal key queries
 * (internal_query.go): key rotation across a pool without restarting anyone.
 *
 * Asking: the operation is a query named "_serf_install-key", "_serf_use-key",
 * "_serf_remove-key" or "_serf_list-keys" whose payload is [7][{Key: bytes}]. Every member
 * (the asker included) applies it to its own keyring, saves its keyring file, and answers
 * [8][{Keys, Message, PrimaryKey, Result}]. The asker counts answers until every live member
 * has answered or the query times out, tallying how many members hold each key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/keyring.h"
#include "gossip/mp.h"
#include "gossip/serf.h"
#include "gossip/serf_proto.h"
#include "gossip/swim.h"
#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/err.h"
#include "lib/log.h"

#define MOD "gossip"
#define MIN_ENCODED_KEY_LENGTH 25 /* serf's minEncodedKeyLength: a 16-byte key in base64 + 1 */

static const char *const op_names[] = {"list-keys", "install-key", "use-key", "remove-key"};

/* ---- answering ---- */

struct key_answer {
  bool result;
  const char *message;
  char keys[KEYRING_MAX_KEYS][KEYRING_B64_MAX];
  size_t nkeys;
  const char *primary;
};

/* nodeKeyResponse; go-msgpack writes the fields sorted by name, a nil Keys as nil. */
static void encode_answer(struct buf *out, const struct key_answer *a, size_t nkeys) {
  buf_putc(out, SERF_MSG_KEY_RESPONSE);
  mp_put_map(out, 4);
  mp_put_str(out, "Keys");
  if (a->nkeys == 0) {
    mp_put_nil(out);
  } else {
    mp_put_array(out, (uint32_t)nkeys);
    for (size_t i = 0; i < nkeys; i++) mp_put_str(out, a->keys[i]);
  }
  mp_put_str(out, "Message");
  mp_put_str(out, a->message ? a->message : "");
  mp_put_str(out, "PrimaryKey");
  mp_put_str(out, a->primary ? a->primary : "");
  mp_put_str(out, "Result");
  mp_put_bool(out, a->result);
}

/* keyRequest: {Key: bytes}. The type byte in front is not checked, as in serf. */
static int decode_request(const uint8_t *p, size_t len, uint8_t *key, size_t *klen) {
  if (len < 1) return CC_EINVAL;
  struct mp_r r;
  mp_r_init(&r, p + 1, len - 1);
  uint32_t n;
  if (mp_read_map(&r, &n)) return CC_EINVAL;
  *klen = 0;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k, *v;
    uint32_t kl, vl;
    if (mp_read_raw(&r, 64, &k, &kl)) return CC_EINVAL;
    if (mp_key_is(k, kl, "Key")) {
      if (mp_read_raw(&r, 1024, &v, &vl)) return CC_EINVAL;
      if (vl > KEYRING_KEY_MAX) vl = KEYRING_KEY_MAX + 1; /* fails the size check below */
      else memcpy(key, v, vl);
      *klen = vl;
    } else if (mp_skip(&r)) {
      return CC_EINVAL;
    }
  }
  return 0;
}

bool serf_keys_answer(struct ml *ml, const char *keyring_file, const char *name,
                      const uint8_t *payload, size_t len, size_t limit, struct buf *out) {
  int op = -1;
  for (int i = 0; i < 4; i++)
    if (strcmp(name, op_names[i]) == 0) op = i;
  if (op < 0) return false;
  struct keyring *k = &ml->cfg.keyring;
  struct key_answer a = {0};
  char err[160];
  if (op == GOSSIP_KEY_LIST) {
    if (!k->n) {
      a.message = "Keyring is empty (encryption not enabled)";
      log_error(MOD, "%s", a.message);
    } else {
      log_info(MOD, "received list-keys query");
      for (size_t i = 0; i < k->n; i++) keyring_encode(k, i, a.keys[i]);
      a.nkeys = k->n;
      a.primary = a.keys[0];
      a.result = true;
    }
    /* serf keyListResponseWithCorrectSize: drop keys until the answer fits. */
    size_t start = out->len, total = a.nkeys;
    for (size_t n = a.nkeys;; n--) {
      out->len = start;
      encode_answer(out, &a, n);
      if (out->len - start <= limit || n == 0) {
        if (n < total) log_warn(MOD, "%s", a.message);
        break;
      }
      snprintf(err, sizeof err, "truncated key list response, showing first %zu of %zu keys",
               n - 1, total);
      a.message = err;
    }
    return true;
  }
  uint8_t key[KEYRING_KEY_MAX + 1];
  size_t klen = 0;
  if (decode_request(payload, len, key, &klen)) {
    log_error(MOD, "failed to decode key request");
  } else if (!k->n) {
    a.message = "No keyring to modify (encryption not enabled)";
    log_error(MOD, "%s", a.message);
  } else {
    log_info(MOD, "received %s query", name);
    struct keyring next = *k;
    int rc;
    if (op == GOSSIP_KEY_INSTALL) {
      rc = keyring_add(&next, key, klen);
      a.message = rc == CC_ETOOBIG ? "keyring is full" : "key size must be 16, 24 or 32 bytes";
    } else if (op == GOSSIP_KEY_USE) {
      rc = keyring_use(&next, key, klen);
      a.message = "Requested key is not in the keyring";
    } else {
      rc = keyring_remove(&next, key, klen);
      a.message = "Removing the primary key is not allowed";
    }
    if (rc) {
      log_error(MOD, "failed to %s: %s", name, a.message);
    } else {
      a.message = NULL;
      *k = next;
      a.result = true;
      if (keyring_file && keyring_save_file(keyring_file, k, err, sizeof err)) {
        a.message = err;
        a.result = false;
        log_error(MOD, "%s", err);
      }
    }
  }
  encode_answer(out, &a, 0);
  return true;
}

/* ---- asking ---- */

/* One operation in flight. Owned by its query: freed when the query reports DONE (at its
 * timeout or at shutdown), which always comes, after cb has run exactly once. */
struct key_op {
  struct gossip_key_response r;
  gossip_key_cb cb;
  void *arg;
  bool reported;
};

static void count_key(struct gossip_key_count **v, size_t *n, const uint8_t *k, uint32_t len) {
  if (len >= sizeof (*v)->key) return;
  for (size_t i = 0; i < *n; i++) {
    if (strlen((*v)[i].key) == len && memcmp((*v)[i].key, k, len) == 0) {
      (*v)[i].count++;
      return;
    }
  }
  if (*n >= 1024) return;
  *v = xrealloc(*v, (*n + 1) * sizeof **v);
  memcpy((*v)[*n].key, k, len);
  (*v)[*n].key[len] = '\0';
  (*v)[*n].count = 1;
  (*n)++;
}

static void add_message(struct gossip_key_response *r, const char *from, const char *msg,
                        size_t len) {
  if (r->nmessages >= 1024) return;
  r->msg_nodes = xrealloc(r->msg_nodes, (r->nmessages + 1) * sizeof *r->msg_nodes);
  r->msg_texts = xrealloc(r->msg_texts, (r->nmessages + 1) * sizeof *r->msg_texts);
  r->msg_nodes[r->nmessages] = xstrdup(from);
  r->msg_texts[r->nmessages] = xstrndup(msg, len);
  r->nmessages++;
}

/* serf streamKeyResp for one answer. */
void serf_keys_tally(struct gossip_key_response *r, const char *from, const uint8_t *p,
                     size_t len) {
  r->num_resp++;
  if (len < 1 || p[0] != SERF_MSG_KEY_RESPONSE) {
    const char *m = "Invalid key query response type";
    add_message(r, from, m, strlen(m));
    r->num_err++;
    return;
  }
  struct mp_r rd;
  mp_r_init(&rd, p + 1, len - 1);
  uint32_t n;
  bool result = false;
  const uint8_t *msg = NULL, *primary = NULL;
  uint32_t msglen = 0, plen = 0;
  const uint8_t *keys[KEYRING_MAX_KEYS * 2];
  uint32_t klens[KEYRING_MAX_KEYS * 2];
  uint32_t nk = 0;
  int rc = mp_read_map(&rd, &n);
  for (uint32_t i = 0; !rc && i < n; i++) {
    const uint8_t *k;
    uint32_t kl;
    rc = mp_read_raw(&rd, 64, &k, &kl);
    if (rc) break;
    if (mp_key_is(k, kl, "Result")) {
      rc = mp_read_bool(&rd, &result);
    } else if (mp_key_is(k, kl, "Message")) {
      rc = mp_read_raw(&rd, 1024, &msg, &msglen);
    } else if (mp_key_is(k, kl, "PrimaryKey")) {
      rc = mp_read_raw(&rd, 64, &primary, &plen);
    } else if (mp_key_is(k, kl, "Keys")) {
      struct mp_val v;
      struct mp_r save = rd;
      if (mp_next(&rd, &v) == 0 && v.type == MP_NIL) continue;
      rd = save;
      uint32_t cnt;
      rc = mp_read_array(&rd, &cnt);
      for (uint32_t j = 0; !rc && j < cnt; j++) {
        const uint8_t *kp;
        uint32_t kpl;
        rc = mp_read_raw(&rd, 64, &kp, &kpl);
        if (!rc && nk < KEYRING_MAX_KEYS * 2) {
          keys[nk] = kp;
          klens[nk++] = kpl;
        }
      }
    } else {
      rc = mp_skip(&rd);
    }
  }
  if (rc) {
    const char *m = "Failed to decode key query response";
    add_message(r, from, m, strlen(m));
    r->num_err++;
    return;
  }
  if (!result) {
    add_message(r, from, msg ? (const char *)msg : "", msglen);
    r->num_err++;
  } else if (msglen) {
    add_message(r, from, (const char *)msg, msglen);
    log_warn(MOD, "%.*s", (int)msglen, (const char *)msg);
  }
  for (uint32_t j = 0; j < nk; j++) count_key(&r->keys, &r->nkeys, keys[j], klens[j]);
  count_key(&r->primary_keys, &r->nprimary_keys, primary ? primary : (const uint8_t *)"", plen);
}

static void report(struct key_op *op) {
  if (op->reported) return;
  op->reported = true;
  struct gossip_key_response *r = &op->r;
  if (r->num_err)
    snprintf(r->error, sizeof r->error, "%d/%d nodes reported failure", r->num_err, r->num_nodes);
  else if (r->num_resp != r->num_nodes)
    snprintf(r->error, sizeof r->error, "%d/%d nodes reported success", r->num_resp, r->num_nodes);
  op->cb(op->arg, r);
}

void serf_keys_response_free(struct gossip_key_response *r) {
  for (size_t i = 0; i < r->nmessages; i++) {
    free(r->msg_nodes[i]);
    free(r->msg_texts[i]);
  }
  free(r->msg_nodes);
  free(r->msg_texts);
  free(r->keys);
  free(r->primary_keys);
  memset(r, 0, sizeof *r);
}

static void key_op_free(struct key_op *op) {
  serf_keys_response_free(&op->r);
  free(op);
}

static void on_answer(void *arg, enum gossip_query_result what, const char *from,
                      const uint8_t *payload, size_t len) {
  struct key_op *op = arg;
  if (what == GOSSIP_QUERY_DONE) {
    report(op);
    key_op_free(op);
    return;
  }
  if (what != GOSSIP_QUERY_RESPONSE || op->reported) return;
  serf_keys_tally(&op->r, from, payload, len);
  if (op->r.num_resp == op->r.num_nodes) report(op);
}

int serf_keys_op(struct serf *s, enum gossip_key_op which, const char *key, gossip_key_cb cb,
                 void *arg, char *errbuf, size_t errlen) {
  if ((int)which < 0 || which > GOSSIP_KEY_REMOVE || !cb) return CC_EINVAL;
  uint8_t raw[KEYRING_B64_MAX];
  size_t rawlen = 0;
  if (which != GOSSIP_KEY_LIST) {
    size_t n = key ? strlen(key) : 0;
    if (n > KEYRING_B64_MAX || b64_decode(key ? key : "", n, raw, &rawlen)) {
      snprintf(errbuf, errlen, "illegal base64 data");
      return CC_EINVAL;
    }
  }
  struct buf req = BUF_INIT;
  buf_putc(&req, SERF_MSG_KEY_REQUEST);
  mp_put_map(&req, 1);
  mp_put_str(&req, "Key");
  mp_put_raw(&req, raw, rawlen);
  char name[32];
  snprintf(name, sizeof name, "_serf_%s", op_names[which]);
  struct key_op *op = xcalloc(1, sizeof *op);
  op->cb = cb;
  op->arg = arg;
  op->r.num_nodes = ml_num_alive_others(serf_ml(s)) + 1; /* memberlist NumMembers */
  int rc = serf_query(s, name, req.data, req.len, NULL, on_answer, op);
  buf_free(&req);
  if (rc) {
    snprintf(errbuf, errlen, "%s", cc_strerror(rc));
    free(op);
  }
  return rc;
}
