/* crypt.h -- memberlist's message encryption (security.go): AES-GCM with the keyring's keys.
 *
 *   [version:1][nonce:12][ciphertext][tag:16]
 *
 * Version 0 pads the plaintext with PKCS#7 to the AES block size first (memberlist protocol 1
 * sends it); version 1 does not (everyone newer). The additional data is empty for packets
 * and the 5-byte [10][length] header for streams. */
#ifndef CONCORD_GOSSIP_CRYPT_H
#define CONCORD_GOSSIP_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "gossip/keyring.h"
#include "lib/buf.h"

#define CRYPT_VERSION_SIZE 1
#define CRYPT_NONCE_SIZE 12
#define CRYPT_TAG_SIZE 16
#define CRYPT_MAX_VERSION 1

/* memberlist encryptOverhead: the most a version adds (45 for 0, 29 for 1). */
size_t crypt_overhead(int vsn);
/* memberlist encryptedLength: what a message of len bytes becomes. */
size_t crypt_encrypted_length(int vsn, size_t len);

/* Appends the encrypted form of msg to out, with the given nonce (tests pin it). 0, or
 * CC_EINVAL for a bad version or key size. */
int crypt_seal(int vsn, const uint8_t *key, size_t keylen, const uint8_t nonce[CRYPT_NONCE_SIZE],
               const void *msg, size_t len, const void *aad, size_t aadlen, struct buf *out);
/* crypt_seal with a fresh random nonce (OpenSSL's RAND_bytes). CC_EIO if that fails. */
int crypt_encrypt(int vsn, const uint8_t *key, size_t keylen, const void *msg, size_t len,
                  const void *aad, size_t aadlen, struct buf *out);
/* Decrypts msg with each key in turn (memberlist decryptPayload), appending the plaintext (its
 * padding removed for version 0) to out. CC_EINVAL: empty, unknown version, shorter than the
 * version's minimum, or bad padding; CC_ECORRUPT: no installed key could decrypt it. */
int crypt_decrypt(const struct keyring *k, const uint8_t *msg, size_t len, const void *aad,
                  size_t aadlen, struct buf *out);

#endif
