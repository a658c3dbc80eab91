/* buf.h -- a growable byte buffer, always NUL-terminated once anything is in it.
 *
 * Used for response bodies, encoded commands and anything built piecewise. The buffer owns
 * `data`; pointers into it are invalidated by any append (it may move). */
#ifndef CONCORD_LIB_BUF_H
#define CONCORD_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
  char *data;  /* NULL until the first append */
  size_t len;
  size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Empties the buffer but keeps its memory. */
void buf_reset(struct buf *b);
/* Makes room for at least `extra` more bytes (plus the NUL). */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);
/* Hands the memory to the caller (who frees it) and leaves the buffer empty. Never NULL. */
char *buf_steal(struct buf *b, size_t *len);

#endif
