/* snapshot.c -- encoding the state store for a Raft snapshot, on the loop or in a forked
 * child.
 *
 * The cost. Encoding is a pass over the whole store: 100k keys of 1 KB (110 MB) take 0.4 to
 * 0.9 s on the 2-vCPU VM we measure on, most of it page faults on the fresh output buffer
 * (a reused buffer encodes in 0.11 s); page faults are expensive under its paravirtualised
 * MMU. On the loop, such a stall exceeds the election timeout (followers depose the leader)
 * and recurs every snapshot_threshold writes. The store is a mutable tree without
 * copy-on-write, so a thread cannot encode it while the loop keeps applying.
 *
 * The fork mode (cfg->snapshot_fork, Redis' BGSAVE): libraft calls the FSM's `snapshot` on
 * the loop at the exact index to capture; we fork(), and the child, holding a copy-on-write
 * image of the store as of that index, encodes it and writes it to a pipe, preceded by its
 * length, then _exit()s. The child calls no libuv function and never returns, so no atexit
 * handler or stdio buffer of the parent runs twice; its copies of the parent's descriptors
 * stay open until it exits. Measured on that VM with three servers under 64 writers, it does
 * worse than encoding on the loop: the fork takes 10-90 ms, and afterwards every page the
 * parent's allocator touches takes a copy-on-write fault plus a TLB-shootdown IPI (perf:
 * exc_page_fault, ptep_clear_flush, smp_call_function_many_cond), so throughput halved and
 * loop iterations still reached 1 s. So it is off by default; it may pay on bare metal.
 *
 * The lasting fix is on the store's side: a consistent read view that is cheap to take
 * (persistent trees, as Consul's go-memdb), encoded on a thread. The plumbing for that is
 * here already: libraft calls `snapshot` on the loop (start), `snapshot_async` on its thread
 * pool (collect), then `snapshot_finalize` on the loop (finish), and only collect would do
 * the encoding.
 *
 * FSM version 3 needs raft_io version 2 (async_work). libraft 0.15's uv backend implements
 * async_work (src/uv_work.c) but still reports version 1; upstream later reports 2
 * (src/uv.c, "io->version = 2"). consensus.c sets it. */
#define _GNU_SOURCE /* pipe2, F_SETPIPE_SZ */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "consensus/internal.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/log.h"

/* The encoded store is capped so a corrupt length from the pipe cannot make us allocate
 * without bound (the store itself is far smaller in any deployment we target). */
#define SNAPSHOT_MAX_BYTES ((uint64_t)64 << 30)

static int write_all(int fd, const void *p, size_t len)
{
  const char *c = p;
  while (len > 0) {
    ssize_t n = write(fd, c, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    c += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_all(int fd, void *p, size_t len)
{
  char *c = p;
  while (len > 0) {
    ssize_t n = read(fd, c, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) return -1; /* the child died before writing everything */
    c += n;
    len -= (size_t)n;
  }
  return 0;
}

/* In the child: encode, write length then bytes, exit. Never returns. */
static void child_main(const struct state_store *store, int fd)
{
  struct buf b = BUF_INIT;
  state_store_snapshot(store, &b);
  uint64_t len = b.len;
  int rv = write_all(fd, &len, sizeof len);
  if (rv == 0 && len > 0) rv = write_all(fd, b.data, b.len);
  _exit(rv == 0 ? 0 : 1);
}

int consensus__snapshot_start(struct consensus *c)
{
  struct consensus__snap *s = &c->snap;
  s->started_at = uv_hrtime();
  s->index = raft_last_applied(c->r);
  s->pid = -1;
  s->fd = -1;
  s->status = -1; /* until collected */
  buf_init(&s->sync);

  if (!c->snapshot_fork) {
    state_store_snapshot(c->store, &s->sync);
    s->loop_done_at = uv_hrtime();
    return 0;
  }

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) == 0) {
    /* A bigger pipe means fewer wake-ups of the reading thread (best effort). */
    (void)fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      child_main(c->store, fds[1]);
    }
    close(fds[1]);
    if (pid > 0) {
      s->pid = pid;
      s->fd = fds[0];
      s->loop_done_at = uv_hrtime();
      return 0;
    }
    close(fds[0]);
  }
  log_warn("raft", "cannot fork to take the snapshot at index %llu (%s): encoding it on the "
           "loop", (unsigned long long)s->index, strerror(errno));
  state_store_snapshot(c->store, &s->sync);
  s->loop_done_at = uv_hrtime();
  return 0;
}

/* Reaps the child, blocking (it has finished writing, died, or sees EPIPE shortly). */
static int reap(struct consensus__snap *s)
{
  int status = 0;
  pid_t r;
  do {
    r = waitpid(s->pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  s->pid = -1;
  return r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int consensus__snapshot_collect(struct consensus *c, struct raft_buffer *bufs[],
                                unsigned *n_bufs)
{
  struct consensus__snap *s = &c->snap;
  struct raft_buffer *out = xmalloc(sizeof *out);
  out->base = NULL;
  out->len = 0;
  *bufs = out;
  *n_bufs = 1;

  if (s->fd < 0) { /* encoded on the loop */
    size_t len = 0;
    out->base = buf_steal(&s->sync, &len);
    out->len = len;
    s->status = 0;
    return 0;
  }

  uint64_t len = 0;
  int rv = read_all(s->fd, &len, sizeof len);
  if (rv == 0 && (len == 0 || len > SNAPSHOT_MAX_BYTES)) rv = -1;
  if (rv == 0) {
    out->base = xmalloc((size_t)len);
    out->len = (size_t)len;
    rv = read_all(s->fd, out->base, out->len);
  }
  close(s->fd);
  s->fd = -1;
  if (reap(s) != 0) rv = -1;
  s->status = rv;
  return rv == 0 ? 0 : RAFT_IOERR;
}

void consensus__snapshot_finish(struct consensus *c, struct raft_buffer *bufs[],
                                unsigned *n_bufs)
{
  struct consensus__snap *s = &c->snap;
  size_t len = 0;
  if (*bufs != NULL) {
    for (unsigned i = 0; i < *n_bufs; i++) {
      len += (*bufs)[i].len;
      free((*bufs)[i].base);
    }
    free(*bufs);
  }
  *bufs = NULL;
  *n_bufs = 0;

  /* libraft gave up before collecting (it could not queue the work): end the child. */
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
    s->status = -1;
  }
  if (s->pid > 0) {
    kill(s->pid, SIGKILL);
    (void)reap(s);
  }
  buf_free(&s->sync);

  uint64_t now = uv_hrtime();
  if (s->status != 0) {
    log_error("raft", "snapshot at index %llu failed (the encoding child died?)",
              (unsigned long long)s->index);
  } else {
    log_debug("raft", "snapshot at index %llu: %zu bytes; loop busy %.1f ms, total %.1f ms",
              (unsigned long long)s->index, len, (s->loop_done_at - s->started_at) / 1e6,
              (now - s->started_at) / 1e6);
  }
}
