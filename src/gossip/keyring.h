/* keyring.h -- memberlist's gossip encryption keyring (keyring.go): AES keys of 16, 24 or 32
 * bytes, the first one primary (it encrypts; every key is tried to decrypt), plus the keyring
 * file Consul and serf keep (<data_dir>/serf/local.keyring: a JSON array of base64 keys, the
 * primary first). Internal to the gossip module and the agent's wiring. */
#ifndef CONCORD_GOSSIP_KEYRING_H
#define CONCORD_GOSSIP_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYRING_MAX_KEYS 32 /* far above any rotation's needs; bounds a keyring file */
#define KEYRING_KEY_MAX 32

struct keyring {
  size_t n; /* 0: encryption disabled */
  uint8_t key[KEYRING_MAX_KEYS][KEYRING_KEY_MAX];
  uint8_t len[KEYRING_MAX_KEYS];
};

/* memberlist ValidateKey: 16, 24 or 32 bytes. */
bool keyring_valid_len(size_t len);
/* Decodes a base64 key and checks its size. 0, or CC_EINVAL with a sentence in errbuf
 * ("key size must be 16, 24 or 32 bytes", as memberlist says). */
int keyring_decode(const char *b64, uint8_t out[KEYRING_KEY_MAX], size_t *len, char *errbuf,
                   size_t errlen);
/* base64 of key i into out (at least KEYRING_B64_MAX bytes). */
#define KEYRING_B64_MAX 48
void keyring_encode(const struct keyring *k, size_t i, char out[KEYRING_B64_MAX]);

/* AddKey: installs key (a no-op if present); the first key becomes primary. CC_EINVAL for a
 * bad size, CC_ETOOBIG when full. */
int keyring_add(struct keyring *k, const uint8_t *key, size_t len);
/* UseKey: makes an installed key primary. CC_ENOTFOUND when it is not installed. */
int keyring_use(struct keyring *k, const uint8_t *key, size_t len);
/* RemoveKey: CC_EINVAL for the primary key (memberlist refuses it); removing an absent key
 * succeeds, as in memberlist. */
int keyring_remove(struct keyring *k, const uint8_t *key, size_t len);
bool keyring_has(const struct keyring *k, const uint8_t *key, size_t len);

/* Reads a keyring file into k (replacing it). 0; CC_ENOTFOUND when the file does not exist;
 * CC_EINVAL with a sentence in errbuf when it is unreadable, not a JSON array of valid
 * base64 keys, empty, or larger than 64 KiB. */
int keyring_load_file(const char *path, struct keyring *k, char *errbuf, size_t errlen);
/* Writes k as serf writeKeyringFile does (indented JSON array, mode 0600), through a temporary
 * file and a rename so a crash never leaves half a keyring. 0 or CC_EIO with a sentence. */
int keyring_save_file(const char *path, const struct keyring *k, char *errbuf, size_t errlen);

/* Consul's setupKeyrings for one pool. With encrypt_b64 (may be NULL) and no file yet, the
 * file is created holding that key (its directory too, mode 0700). Then an existing file is
 * loaded into k (empty: no encryption); when it lacks the -encrypt key, that is logged and the
 * file wins, as in Consul. 0, or CC_EINVAL/CC_EIO with a sentence in errbuf. */
int keyring_setup(const char *path, const char *encrypt_b64, struct keyring *k, char *errbuf,
                  size_t errlen);

#endif
