/* keyring.c -- memberlist's Keyring (keyring.go) and the keyring file serf and Consul keep.
 *
 * The order is meaningful: key 0 is primary. Installing keeps the primary; using a key moves
 * it to the front (memberlist's installKeys rebuilds the list with the primary first and the
 * others in their previous order). */
#include "gossip/keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/log.h"

#define FILE_MAX (64 * 1024)

bool keyring_valid_len(size_t len) { return len == 16 || len == 24 || len == 32; }

int keyring_decode(const char *b64, uint8_t out[KEYRING_KEY_MAX], size_t *len, char *errbuf,
                   size_t errlen) {
  size_t n = strlen(b64);
  uint8_t tmp[KEYRING_B64_MAX];
  size_t got;
  if (n > KEYRING_B64_MAX || b64_decode(b64, n, tmp, &got) != 0) {
    snprintf(errbuf, errlen, "illegal base64 data");
    return CC_EINVAL;
  }
  if (!keyring_valid_len(got)) {
    snprintf(errbuf, errlen, "key size must be 16, 24 or 32 bytes");
    return CC_EINVAL;
  }
  memcpy(out, tmp, got);
  *len = got;
  return 0;
}

void keyring_encode(const struct keyring *k, size_t i, char out[KEYRING_B64_MAX]) {
  b64_encode(k->key[i], k->len[i], out);
}

static ssize_t find(const struct keyring *k, const uint8_t *key, size_t len) {
  for (size_t i = 0; i < k->n; i++)
    if (k->len[i] == len && memcmp(k->key[i], key, len) == 0) return (ssize_t)i;
  return -1;
}

bool keyring_has(const struct keyring *k, const uint8_t *key, size_t len) {
  return find(k, key, len) >= 0;
}

int keyring_add(struct keyring *k, const uint8_t *key, size_t len) {
  if (!keyring_valid_len(len)) return CC_EINVAL;
  if (find(k, key, len) >= 0) return 0;
  if (k->n >= KEYRING_MAX_KEYS) return CC_ETOOBIG;
  memcpy(k->key[k->n], key, len);
  k->len[k->n] = (uint8_t)len;
  k->n++;
  return 0;
}

int keyring_use(struct keyring *k, const uint8_t *key, size_t len) {
  ssize_t i = find(k, key, len);
  if (i < 0) return CC_ENOTFOUND;
  uint8_t tmp[KEYRING_KEY_MAX];
  memcpy(tmp, k->key[i], KEYRING_KEY_MAX);
  uint8_t tl = k->len[i];
  memmove(k->key[1], k->key[0], (size_t)i * KEYRING_KEY_MAX);
  memmove(k->len + 1, k->len, (size_t)i);
  memcpy(k->key[0], tmp, KEYRING_KEY_MAX);
  k->len[0] = tl;
  return 0;
}

int keyring_remove(struct keyring *k, const uint8_t *key, size_t len) {
  ssize_t i = find(k, key, len);
  if (k->n == 0 || i == 0) return CC_EINVAL;
  if (i < 0) return 0;
  size_t rest = k->n - (size_t)i - 1;
  memmove(k->key[i], k->key[i + 1], rest * KEYRING_KEY_MAX);
  memmove(k->len + i, k->len + i + 1, rest);
  k->n--;
  return 0;
}

int keyring_load_file(const char *path, struct keyring *k, char *errbuf, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) return CC_ENOTFOUND;
    snprintf(errbuf, errlen, "open %s: %s", path, strerror(errno));
    return CC_EINVAL;
  }
  char *data = xmalloc(FILE_MAX + 1); /* ours; freed below */
  size_t n = fread(data, 1, FILE_MAX + 1, f);
  int rerr = ferror(f);
  fclose(f);
  if (rerr || n > FILE_MAX) {
    snprintf(errbuf, errlen, "read %s: %s", path, rerr ? "I/O error" : "file too large");
    free(data);
    return CC_EINVAL;
  }
  json_error_t je;
  json_t *arr = json_loadb(data, n, JSON_REJECT_DUPLICATES, &je);
  free(data);
  if (!arr || !json_is_array(arr)) {
    snprintf(errbuf, errlen, "%s: %s", path, arr ? "not a JSON array of keys" : je.text);
    json_decref(arr);
    return CC_EINVAL;
  }
  struct keyring out = {0};
  int rc = 0;
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    uint8_t key[KEYRING_KEY_MAX];
    size_t len;
    char why[96];
    if (!json_is_string(v) || keyring_decode(json_string_value(v), key, &len, why, sizeof why)) {
      snprintf(errbuf, errlen, "%s: key %zu: %s", path, i,
               json_is_string(v) ? why : "not a string");
      rc = CC_EINVAL;
      break;
    }
    if (keyring_add(&out, key, len)) {
      snprintf(errbuf, errlen, "%s: more than %d keys", path, KEYRING_MAX_KEYS);
      rc = CC_EINVAL;
      break;
    }
  }
  json_decref(arr);
  if (!rc && out.n == 0) {
    snprintf(errbuf, errlen, "no keys present in keyring: %s", path);
    rc = CC_EINVAL;
  }
  if (!rc) *k = out;
  return rc;
}

int keyring_save_file(const char *path, const struct keyring *k, char *errbuf, size_t errlen) {
  /* serf's json.MarshalIndent(keys, "", "  "): one key per line, no trailing newline. */
  char body[KEYRING_MAX_KEYS * (KEYRING_B64_MAX + 8) + 8];
  size_t off = (size_t)snprintf(body, sizeof body, "[");
  for (size_t i = 0; i < k->n; i++) {
    char b[KEYRING_B64_MAX];
    keyring_encode(k, i, b);
    off += (size_t)snprintf(body + off, sizeof body - off, "%s\n  \"%s\"", i ? "," : "", b);
  }
  off += (size_t)snprintf(body + off, sizeof body - off, "%s]", k->n ? "\n" : "");
  int e = file_write_atomic(path, body, off, true);
  if (e != 0) {
    if (e == ENAMETOOLONG) snprintf(errbuf, errlen, "keyring path too long");
    else snprintf(errbuf, errlen, "Failed to write keyring file: %s", strerror(e));
    return CC_EIO;
  }
  return 0;
}

static int mkdir_parent(const char *path) {
  char dir[4096];
  if ((size_t)snprintf(dir, sizeof dir, "%s", path) >= sizeof dir) return -1;
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(dir, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int keyring_setup(const char *path, const char *encrypt_b64, struct keyring *k, char *errbuf,
                  size_t errlen) {
  memset(k, 0, sizeof *k);
  uint8_t key[KEYRING_KEY_MAX];
  size_t klen = 0;
  bool existing = false;
  if (encrypt_b64) {
    char why[64];
    if (keyring_decode(encrypt_b64, key, &klen, why, sizeof why)) {
      snprintf(errbuf, errlen, "Invalid key: %s", why);
      return CC_EINVAL;
    }
    struct stat st;
    if (stat(path, &st) == 0) {
      existing = true;
    } else {
      struct keyring init = {0};
      keyring_add(&init, key, klen);
      if (mkdir_parent(path) != 0) {
        snprintf(errbuf, errlen, "cannot create the directory of %s: %s", path, strerror(errno));
        return CC_EIO;
      }
      int rc = keyring_save_file(path, &init, errbuf, errlen);
      if (rc) return rc;
    }
  }
  int rc = keyring_load_file(path, k, errbuf, errlen);
  if (rc == CC_ENOTFOUND) return 0;
  if (rc) return rc;
  if (existing && !keyring_has(k, key, klen))
    log_warn("gossip", "LAN keyring doesn't include key provided with -encrypt, using keyring "
                       "(%s)", path);
  return 0;
}
