/* lzw.h -- the LZW variant memberlist compresses with: Go's compress/lzw in LSB bit order with
 * 8-bit literals (memberlist util.go compressPayload, lzwLitWidth = 8). That is the GIF flavour:
 * codes start 9 bits wide, 256 is "clear", 257 is "end", the width grows to at most 12 bits and
 * the encoder emits a clear when the table fills. serf agents compress every TCP push-pull and
 * any UDP packet that shrinks, so Concord must read it; we also write it, byte-identical to Go. */
#ifndef CONCORD_GOSSIP_LZW_H
#define CONCORD_GOSSIP_LZW_H

#include <stddef.h>

#include "lib/buf.h"

/* Appends the compressed form of in[0..len) to out. */
void lzw_encode(const void *in, size_t len, struct buf *out);
/* The encoder keeps a 128 KiB dictionary per thread between calls; this frees it. */
void lzw_release(void);
/* Appends the decompressed bytes to out. Returns 0, CC_EINVAL on a corrupt or unterminated
 * stream (Go reports io.ErrUnexpectedEOF for a missing end code), or CC_ETOOBIG once the
 * output would pass max bytes (a few hundred input bytes can expand enormously). */
int lzw_decode(const void *in, size_t len, size_t max, struct buf *out);

#endif
