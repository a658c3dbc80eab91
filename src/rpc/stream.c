/* stream.c -- a framed RPC stream over a TCP handle: splits what it reads into frames
 * (u32 BE length + payload, capped at max_frame) and queues what it writes.
 *
 * Writes never block or fail at the caller: frames are appended to `out` and written one
 * batch at a time (everything queued while a write is in flight goes out in the next
 * uv_write, so a thousand small replies cost a few syscalls, not a thousand). On a server
 * stream (may_pause), reading stops while the output backs up past RPC_OUT_HIGH, so a peer
 * that sends requests without reading replies cannot grow our memory without bound. Client
 * streams never pause: a client that stopped reading answers while its requests back up
 * would deadlock against a server doing the same.
 *
 * Lifetime: the owner embeds the stream, closes the tcp handle and calls rpc__stream_free
 * from its close callback. Once `dead` is set nothing here calls back into the owner. */
#include <string.h>

#include "lib/err.h"
#include "rpc/internal.h"

/* Reading pauses while this much output waits (and resumes below half of it). */
#define RPC_OUT_HIGH (16u << 20)
/* A read buffer grown for a large frame is given back once empty, above this size. */
#define RPC_RBUF_KEEP (1u << 20)

void rpc__stream_init(struct rpc_stream *s, void *owner, uv_tcp_t *tcp, size_t max_frame,
                      rpc_frame_fn on_frame, rpc_fail_fn on_fail)
{
  memset(s, 0, sizeof *s);
  s->owner = owner;
  s->tcp = tcp;
  s->max_frame = max_frame;
  buf_init(&s->rbuf);
  buf_init(&s->out);
  buf_init(&s->writing);
  s->on_frame = on_frame;
  s->on_fail = on_fail;
}

void rpc__stream_free(struct rpc_stream *s)
{
  buf_free(&s->rbuf);
  buf_free(&s->out);
  buf_free(&s->writing);
}

static void fail(struct rpc_stream *s, int status)
{
  if (s->dead) return;
  s->dead = true;
  uv_read_stop((uv_stream_t *)s->tcp);
  s->on_fail(s, status);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  struct rpc_stream *s = h->data;
  size_t want = RPC_READ_CHUNK;
  if (s->rbuf.len >= RPC_FRAME_HEADER) {
    /* Room for the whole frame at once: a large frame is read without repeated growth. */
    size_t n = rpc_codec_frame_len((const uint8_t *)s->rbuf.data);
    if (n <= s->max_frame && RPC_FRAME_HEADER + n > s->rbuf.len &&
        RPC_FRAME_HEADER + n - s->rbuf.len > want)
      want = RPC_FRAME_HEADER + n - s->rbuf.len;
    /* but only as much at a time as has arrived so far (buf doubles, so this stays cheap):
     * a header alone must not make us commit 64 MiB */
    if (want > s->rbuf.len + RPC_READ_CHUNK) want = s->rbuf.len + RPC_READ_CHUNK;
  }
  buf_reserve(&s->rbuf, want);
  b->base = s->rbuf.data + s->rbuf.len;
  b->len = s->rbuf.cap - s->rbuf.len - 1; /* buf keeps one byte for its NUL */
}

static void maybe_pause(struct rpc_stream *s)
{
  if (s->may_pause && !s->paused && s->out.len + s->writing.len > RPC_OUT_HIGH) {
    uv_read_stop((uv_stream_t *)s->tcp);
    s->paused = true;
  }
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *b)
{
  struct rpc_stream *s = h->data;
  if (s->dead) return;
  if (nread < 0) {
    fail(s, (int)nread);
    return;
  }
  s->rbuf.len += (size_t)nread;
  size_t off = 0;
  for (;;) {
    const uint8_t *p = (const uint8_t *)s->rbuf.data + off;
    size_t n;
    int rv = rpc_codec_next_frame(p, s->rbuf.len - off, s->max_frame, &n);
    if (rv == 0) break;
    if (rv < 0) {
      fail(s, rv == CC_ETOOBIG ? UV_E2BIG : UV_EPROTO);
      return;
    }
    rv = s->on_frame(s, p + RPC_FRAME_HEADER, n);
    off += RPC_FRAME_HEADER + n;
    if (s->dead) return; /* the owner closed the connection from the frame callback */
    if (rv != 0) {
      fail(s, UV_EPROTO);
      return;
    }
  }
  buf_consume(&s->rbuf, off);
  if (s->rbuf.len == 0 && s->rbuf.cap > RPC_RBUF_KEEP) buf_free(&s->rbuf);
  maybe_pause(s);
}

int rpc__stream_read_start(struct rpc_stream *s)
{
  s->tcp->data = s;
  return uv_read_start((uv_stream_t *)s->tcp, alloc_cb, read_cb);
}

static void write_cb(uv_write_t *w, int status)
{
  struct rpc_stream *s = RPC_CONTAINER(w, struct rpc_stream, wreq);
  s->write_busy = false;
  buf_reset(&s->writing);
  if (s->writing.cap > RPC_RBUF_KEEP) buf_free(&s->writing);
  if (s->dead) return;
  if (status < 0) {
    fail(s, status);
    return;
  }
  if (s->paused && s->out.len < RPC_OUT_HIGH / 2) {
    s->paused = false;
    if (uv_read_start((uv_stream_t *)s->tcp, alloc_cb, read_cb) != 0) {
      fail(s, UV_EIO);
      return;
    }
  }
  if (rpc__stream_flush(s) != 0) fail(s, UV_EIO);
}

int rpc__stream_flush(struct rpc_stream *s)
{
  if (s->dead) return CC_EIO;
  if (s->write_busy || !s->connected || s->out.len == 0) return 0;
  struct buf tmp = s->writing; /* empty: swap, so both buffers keep their memory */
  s->writing = s->out;
  s->out = tmp;
  uv_buf_t b;
  b.base = s->writing.data;
  b.len = s->writing.len; /* size_t on Unix; uv_buf_init would truncate above 4 GiB */
  int rv = uv_write(&s->wreq, (uv_stream_t *)s->tcp, &b, 1, write_cb);
  if (rv != 0) return CC_EIO;
  s->batches++;
  s->write_busy = true;
  return 0;
}

void rpc__stream_fail(struct rpc_stream *s, int status) { fail(s, status); }

const char *rpc__stream_strerror(int status)
{
  if (status == UV_E2BIG) return "frame above the size limit";
  if (status == UV_EPROTO) return "malformed frame";
  return uv_strerror(status);
}
