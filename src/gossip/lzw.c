/* lzw.c -- LSB-first, 8-bit-literal LZW compatible with Go's compress/lzw (see lzw.h).
 *
 * Width rules both sides must agree on: the encoder counts the next free code `hi`
 * (starting at 257); after emitting a code it increments hi and widens the code when hi reaches
 * 1 << width; at hi == 4095 it emits clear (at the current width) and starts over. The decoder
 * adds an entry one code late (it needs the next code's first byte) and widens when its own
 * next-free counter reaches 1 << width, which lands on the same code boundary. */
#include "gossip/lzw.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"

#define LZW_LIT 8
#define LZW_CLEAR 256u
#define LZW_EOF 257u
#define LZW_MAX_WIDTH 12
#define LZW_MAX_CODE 4095u
#define LZW_TABLE (4u << 12) /* open-addressing hash of (prefix code, byte) -> code */
#define LZW_TABLE_MASK (LZW_TABLE - 1)

/* The dictionary index, reused across calls: a slot is live only if its epoch is the current
 * one, so starting over (a new call, or a clear code) costs one increment instead of wiping
 * 96 KiB. Output depends only on the dictionary's contents, not on this layout. */
struct lzw_table {
  uint32_t slot[LZW_TABLE]; /* key << 12 | code */
  uint32_t epoch[LZW_TABLE];
  uint32_t cur;
};

static _Thread_local struct lzw_table *tls_table;

static struct lzw_table *table_get(void) {
  if (!tls_table) tls_table = xcalloc(1, sizeof *tls_table);
  return tls_table;
}

static void table_clear(struct lzw_table *t) {
  if (++t->cur == 0) { /* wrapped: old epochs could look current again */
    memset(t->epoch, 0, sizeof t->epoch);
    t->cur = 1;
  }
}

struct lzw_w {
  struct buf *out;
  uint32_t bits;
  unsigned nbits;
  unsigned width;
  uint32_t hi, overflow;
  struct lzw_table *table;
};

static void put_code(struct lzw_w *w, uint32_t c) {
  w->bits |= c << w->nbits;
  w->nbits += w->width;
  while (w->nbits >= 8) {
    buf_putc(w->out, (char)(uint8_t)w->bits);
    w->bits >>= 8;
    w->nbits -= 8;
  }
}

/* Returns 1 when the table was just reset (the caller must not record an entry). */
static int inc_hi(struct lzw_w *w) {
  w->hi++;
  if (w->hi == w->overflow) {
    w->width++;
    w->overflow <<= 1;
  }
  if (w->hi == LZW_MAX_CODE) {
    put_code(w, LZW_CLEAR);
    w->width = LZW_LIT + 1;
    w->hi = LZW_CLEAR + 1;
    w->overflow = LZW_CLEAR << 1;
    table_clear(w->table);
    return 1;
  }
  return 0;
}

void lzw_encode(const void *in, size_t len, struct buf *out) {
  const uint8_t *p = in;
  struct lzw_w w = {out, 0, 0, LZW_LIT + 1, LZW_CLEAR + 1, LZW_CLEAR << 1, NULL};
  put_code(&w, LZW_CLEAR);
  if (len == 0) {
    put_code(&w, LZW_EOF);
    if (w.nbits) buf_putc(out, (char)(uint8_t)w.bits);
    return;
  }
  struct lzw_table *tb = w.table = table_get();
  table_clear(tb);
  uint32_t code = p[0];
  for (size_t i = 1; i < len; i++) {
    uint32_t lit = p[i];
    uint32_t key = code << 8 | lit;
    uint32_t h = (key >> 12 ^ key) & LZW_TABLE_MASK;
    bool found = false;
    for (; tb->epoch[h] == tb->cur; h = (h + 1) & LZW_TABLE_MASK) {
      if (key == tb->slot[h] >> 12) {
        code = tb->slot[h] & LZW_MAX_CODE;
        found = true;
        break;
      }
    }
    if (found) continue;
    put_code(&w, code);
    code = lit;
    if (inc_hi(&w)) continue;
    /* h is the first free slot after the probe chain. */
    tb->slot[h] = key << 12 | w.hi;
    tb->epoch[h] = tb->cur;
  }
  put_code(&w, code);
  inc_hi(&w);
  put_code(&w, LZW_EOF);
  if (w.nbits) buf_putc(out, (char)(uint8_t)w.bits);
}

void lzw_release(void) {
  free(tls_table);
  tls_table = NULL;
}

int lzw_decode(const void *in, size_t len, size_t max, struct buf *out) {
  const uint8_t *p = in, *end = p + len;
  /* Not zeroed: a code is accepted only if it is below hi (every entry from 258 to hi - 1 was
   * defined since the last clear) or equal to hi with a previous code (defined right here), so
   * no undefined entry is ever read; and every entry points at a lower code, so chains end. */
  uint16_t prefix[1 << LZW_MAX_WIDTH];
  uint8_t suffix[1 << LZW_MAX_WIDTH];
  uint8_t stack[2 << LZW_MAX_WIDTH];
  uint32_t bits = 0;
  unsigned nbits = 0, width = LZW_LIT + 1;
  uint32_t hi = LZW_EOF, overflow = 1u << width;
  uint32_t last = UINT32_MAX; /* no previous code */
  size_t produced = 0;
  for (;;) {
    while (nbits < width) {
      if (p >= end) return CC_EINVAL; /* no end code: Go's ErrUnexpectedEOF */
      bits |= (uint32_t)*p++ << nbits;
      nbits += 8;
    }
    uint32_t code = bits & ((1u << width) - 1);
    bits >>= width;
    nbits -= width;
    if (code == LZW_CLEAR) {
      width = LZW_LIT + 1;
      hi = LZW_EOF;
      overflow = 1u << width;
      last = UINT32_MAX;
      continue;
    }
    if (code == LZW_EOF) return 0;
    size_t n = 0;
    uint8_t first;
    if (code < LZW_CLEAR) {
      stack[n++] = (uint8_t)code;
      first = (uint8_t)code;
    } else if (code > LZW_EOF && (code < hi || (code == hi && last != UINT32_MAX))) {
      /* code == hi is the KwKwK case: the entry being defined is last + first(last). */
      uint32_t c = code;
      if (code == hi) {
        uint32_t f = last;
        while (f >= LZW_CLEAR) f = prefix[f];
        stack[n++] = (uint8_t)f; /* the tail byte, emitted last */
        c = last;
      }
      while (c >= LZW_CLEAR) {
        if (n >= sizeof stack - 1) return CC_EINVAL;
        stack[n++] = suffix[c];
        c = prefix[c];
      }
      stack[n++] = (uint8_t)c;
      first = (uint8_t)c;
    } else {
      return CC_EINVAL;
    }
    if (produced + n > max) return CC_ETOOBIG;
    buf_reserve(out, n);
    for (size_t i = 0; i < n; i++) out->data[out->len + i] = (char)stack[n - 1 - i];
    out->len += n;
    out->data[out->len] = '\0';
    produced += n;
    if (last != UINT32_MAX) {
      suffix[hi] = first;
      prefix[hi] = (uint16_t)last;
    }
    last = code;
    hi++;
    if (hi >= overflow) {
      if (width == LZW_MAX_WIDTH) {
        last = UINT32_MAX;
        hi--;
      } else {
        width++;
        overflow = 1u << width;
      }
    }
  }
}
