/* b64.h -- standard base64 (RFC 4648, with padding), the encoding of KV values in Consul's
 * JSON (Go's encoding/json marshals []byte this way). */
#ifndef CONCORD_LIB_B64_H
#define CONCORD_LIB_B64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes b64_encode writes for n input bytes, not counting the NUL it appends. */
size_t b64_encoded_len(size_t n);
/* Writes b64_encoded_len(n) characters and a NUL into out. Returns the length written. */
size_t b64_encode(const void *in, size_t n, char *out);
/* Decodes into out (at least len*3/4 bytes). Accepts padded and unpadded input, rejects any
 * other character. Returns 0 and sets *outlen, or -1 on malformed input. */
int b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen);

#endif
