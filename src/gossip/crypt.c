/* crypt.c -- memberlist's AES-GCM message encryption (security.go) on OpenSSL's EVP API.
 *
 * The key size picks AES-128/192/256 (Go's aes.NewCipher does the same). Go's GCM uses a
 * 12-byte nonce and a 16-byte tag, appended to the ciphertext; so do we. Version 0 padding is
 * PKCS#7 over the plaintext alone: memberlist pads "ignoring" the version and nonce bytes
 * already in its buffer, which comes to the same thing. Unlike memberlist's pkcs7decode (which
 * trusts the last byte and can slice out of range), we reject a pad byte of 0 or one longer
 * than the plaintext: the tag has already authenticated it, so only a peer holding our key
 * could send one, but a bad length must still never index outside the buffer. */
#include "gossip/crypt.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "lib/err.h"

#define BLOCK 16

size_t crypt_overhead(int vsn) { return vsn == 0 ? 45 : 29; }

size_t crypt_encrypted_length(int vsn, size_t len) {
  size_t n = CRYPT_VERSION_SIZE + CRYPT_NONCE_SIZE + len + CRYPT_TAG_SIZE;
  if (vsn == 0) n += BLOCK - (len % BLOCK);
  return n;
}

static const EVP_CIPHER *cipher_for(size_t keylen) {
  switch (keylen) {
  case 16: return EVP_aes_128_gcm();
  case 24: return EVP_aes_192_gcm();
  case 32: return EVP_aes_256_gcm();
  default: return NULL;
  }
}

/* One GCM operation: encrypt (enc=1, writes the tag after the output) or decrypt (enc=0,
 * checks the tag at in+len). out has room for len bytes (+ tag when encrypting). */
static int gcm(int enc, const uint8_t *key, size_t keylen, const uint8_t *nonce,
               const uint8_t *in, size_t len, const void *aad, size_t aadlen, uint8_t *out,
               uint8_t *tag) {
  const EVP_CIPHER *c = cipher_for(keylen);
  if (!c || len > INT32_MAX || aadlen > INT32_MAX) return CC_EINVAL;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return CC_EIO;
  int ok = 0, n = 0;
  if (EVP_CipherInit_ex(ctx, c, NULL, NULL, NULL, enc) != 1) goto done;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRYPT_NONCE_SIZE, NULL) != 1) goto done;
  if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1) goto done;
  if (aadlen && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1) goto done;
  if (len && EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1) goto done;
  if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_SIZE, tag) != 1) goto done;
  if (EVP_CipherFinal_ex(ctx, out + n, &n) != 1) goto done; /* GCM: no bytes; checks the tag */
  if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_SIZE, tag) != 1) goto done;
  ok = 1;
done:
  EVP_CIPHER_CTX_free(ctx);
  return ok ? 0 : CC_ECORRUPT;
}

int crypt_seal(int vsn, const uint8_t *key, size_t keylen, const uint8_t nonce[CRYPT_NONCE_SIZE],
               const void *msg, size_t len, const void *aad, size_t aadlen, struct buf *out) {
  if (vsn < 0 || vsn > CRYPT_MAX_VERSION || !keyring_valid_len(keylen)) return CC_EINVAL;
  size_t plen = len, pad = 0;
  if (vsn == 0) {
    pad = BLOCK - (len % BLOCK);
    plen += pad;
  }
  size_t start = out->len;
  buf_reserve(out, crypt_encrypted_length(vsn, len));
  buf_putc(out, (char)vsn);
  buf_append(out, nonce, CRYPT_NONCE_SIZE);
  /* The plaintext (padded) goes where the ciphertext will be; GCM works in place. */
  size_t body = out->len;
  buf_append(out, msg, len);
  for (size_t i = 0; i < pad; i++) buf_putc(out, (char)pad);
  buf_reserve(out, CRYPT_TAG_SIZE);
  uint8_t *p = (uint8_t *)out->data + body;
  int rc = gcm(1, key, keylen, nonce, p, plen, aad, aadlen, p, p + plen);
  if (rc) {
    out->len = start;
    return rc;
  }
  out->len = body + plen + CRYPT_TAG_SIZE;
  out->data[out->len] = '\0';
  return 0;
}

int crypt_encrypt(int vsn, const uint8_t *key, size_t keylen, const void *msg, size_t len,
                  const void *aad, size_t aadlen, struct buf *out) {
  uint8_t nonce[CRYPT_NONCE_SIZE];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return CC_EIO;
  return crypt_seal(vsn, key, keylen, nonce, msg, len, aad, aadlen, out);
}

int crypt_decrypt(const struct keyring *k, const uint8_t *msg, size_t len, const void *aad,
                  size_t aadlen, struct buf *out) {
  if (len == 0 || msg[0] > CRYPT_MAX_VERSION) return CC_EINVAL;
  int vsn = msg[0];
  if (len < crypt_encrypted_length(vsn, 0)) return CC_EINVAL;
  const uint8_t *nonce = msg + CRYPT_VERSION_SIZE;
  const uint8_t *ct = nonce + CRYPT_NONCE_SIZE;
  size_t ctlen = len - CRYPT_VERSION_SIZE - CRYPT_NONCE_SIZE - CRYPT_TAG_SIZE;
  size_t start = out->len;
  buf_reserve(out, ctlen + 1);
  uint8_t *p = (uint8_t *)out->data + start;
  for (size_t i = 0; i < k->n; i++) {
    if (gcm(0, k->key[i], k->len[i], nonce, ct, ctlen, aad, aadlen, p, (uint8_t *)ct + ctlen))
      continue;
    size_t plen = ctlen;
    if (vsn == 0) {
      uint8_t pad = plen ? p[plen - 1] : 0;
      if (pad == 0 || pad > plen) return CC_EINVAL;
      plen -= pad;
    }
    out->len = start + plen;
    out->data[out->len] = '\0';
    return 0;
  }
  return CC_ECORRUPT;
}
