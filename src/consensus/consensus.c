/* consensus.c -- the Raft server's life on the loop: start (libraft's uv backend and TCP
 * transport over <data_dir>/raft, bootstrap), proposals (apply, barrier), leadership
 * tracking and stop.
 *
 * What libraft 0.15 does that shapes this file (read in its sources, tag v0.15.0):
 *  - raft_start() loads the log and, when this server is the only voter, elects itself and
 *    applies the whole log before returning (src/start.c, convert.c convertToLeader). With
 *    more voters, the log is applied once the leader's commit index reaches it.
 *  - There is no state-change callback, so a 50 ms uv timer polls raft_state() to log
 *    transitions, remember when the leader was last heard from, and call leader_cb.
 *  - Requests queued on the leader (apply, barrier) are failed with RAFT_LEADERSHIPLOST when
 *    it steps down, including inside raft_close() (convertToUnavailable); each callback runs
 *    exactly once. We report CC_ESHUTDOWN for those failed by our own stop.
 *  - raft_close() closes the io backend, which closes the transport; its callback is the
 *    point after which the transport may be released. The io backend's memory may not be:
 *    its close callback can fire before all of its work is done and then fire again. Its
 *    readiness check (uvMaybeFireCloseCb, still so upstream) does not wait for the open
 *    segment's writer (uvAliveSegmentFinalize unlinks the segment, then closes its writer
 *    asynchronously, waiting for thread-pool writes), nor for outgoing or incoming peer
 *    connections; each of those calls the check again when it finishes. Freeing there let a
 *    late writer close read the freed backend (an ASan SEGV at shutdown in CI). So the close
 *    callback is delivered once (io_close_once), and the whole struct (raft, io, transport)
 *    is retired, not freed, until the process exits (retire below).
 *  - Buffers given to raft_apply() must come from raft_malloc(); ownership passes to libraft
 *    only when raft_apply() returns 0 (on failure it discards the entry without freeing).
 *    Their length must be a multiple of 8, or the log on disk cannot be read back: see the
 *    framing in internal.h.
 *  - Its auto-recovery drops a segment it cannot read at start-up; we turn it off.
 *
 * Throughput: the uv backend writes log entries with O_DSYNC (direct and async I/O when the
 * file system allows) and, while one write is in flight, accumulates every append that
 * arrives into the next write, so concurrent proposals share an fsync. Neither the segment
 * size (8 MB default; a new segment is preallocated on the thread pool ahead of need) nor the
 * block size (probed from the file system) changes that, so both keep their defaults. The
 * snapshot threshold does matter: libraft's default of 1024 cuts write throughput to 40%
 * (each snapshot encodes the whole store), so we use Consul's 16384/10240. How snapshots are
 * encoded, and what that costs the loop, is in snapshot.c. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "consensus/internal.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define POLL_INTERVAL_MS 50
/* How long the transport waits before reconnecting to a peer. libraft's default is 1 s; on
 * a restarted peer that second is added to the time it takes to rejoin. A connect attempt
 * costs little, so we retry faster. */
#define CONNECT_RETRY_MS 200

struct apply_req {
  struct raft_apply req; /* first: libraft hands this pointer back */
  struct consensus *c;
  consensus_apply_cb cb;
  void *arg;
};

struct barrier_req {
  struct raft_barrier req;
  struct consensus *c;
  consensus_barrier_cb cb;
  void *arg;
};

struct change_req {
  struct raft_change req;
  struct consensus *c;
  consensus_change_cb cb;
  void *arg;
  uint64_t id;
  bool promote_next; /* an add: promote to voter once the add is committed */
};

void consensus_config_defaults(struct consensus_config *cfg)
{
  cfg->bootstrap_expect = 0;
  cfg->snapshot_threshold = 16384;
  cfg->snapshot_trailing = 10240;
  cfg->election_timeout_ms = 500;
  cfg->heartbeat_timeout_ms = 50;
  cfg->snapshot_fork = false;
  cfg->transport_init = NULL;
  cfg->transport_close = NULL;
  cfg->transport_arg = NULL;
}

uint64_t consensus_raft_id(const char *node_id)
{
  uint64_t id = 0;
  int digits = 0;
  for (const char *p = node_id; *p && digits < 16; p++) {
    int v;
    if (*p >= '0' && *p <= '9') v = *p - '0';
    else if (*p >= 'a' && *p <= 'f') v = *p - 'a' + 10;
    else if (*p >= 'A' && *p <= 'F') v = *p - 'A' + 10;
    else if (*p == '-') continue;
    else { digits = -1; break; }
    id = id << 4 | (uint64_t)v;
    digits++;
  }
  if (digits != 16 || id == 0) {
    /* Not a UUID: any stable non-zero value will do (SHA-1 based). */
    id = raft_digest(node_id, 0);
    if (id == 0) id = 1;
  }
  return id;
}

int consensus__error(const struct consensus *c, int raft_rv)
{
  switch (raft_rv) {
  case 0:
    return 0;
  case RAFT_NOTLEADER:
    return c->stopping ? CC_ESHUTDOWN : CC_ENOTLEADER;
  case RAFT_LEADERSHIPLOST:
    return c->stopping ? CC_ESHUTDOWN : CC_ENOTLEADER;
  case RAFT_SHUTDOWN:
  case RAFT_CANCELED:
    return CC_ESHUTDOWN;
  case RAFT_TOOBIG:
    return CC_ETOOBIG;
  case RAFT_CANTCHANGE:
  case RAFT_BUSY:
  case RAFT_DUPLICATEID:
  case RAFT_DUPLICATEADDRESS:
    return CC_ECONFLICT;
  case RAFT_BADID:
  case RAFT_NOTFOUND:
    return CC_ENOTFOUND;
  case RAFT_BADROLE:
  case RAFT_INVALID:
  case RAFT_MALFORMED:
    return CC_EINVAL;
  case RAFT_CORRUPT:
    return CC_ECORRUPT;
  default: /* RAFT_IOERR, RAFT_NOSPACE, RAFT_NOMEM, RAFT_NOCONNECTION, ... */
    return CC_EIO;
  }
}

static const char *state_name(int state)
{
  switch (state) {
  case RAFT_LEADER: return "Leader";
  case RAFT_FOLLOWER: return "Follower";
  case RAFT_CANDIDATE: return "Candidate";
  default: return "Unavailable";
  }
}

/* ---- leadership polling ---- */

static void poll_cb(uv_timer_t *t)
{
  struct consensus *c = t->data;
  struct raft *r = c->r;
  int state = raft_state(r);

  if (state == RAFT_LEADER) {
    c->last_contact_at = uv_now(c->loop);
  } else if (state == RAFT_FOLLOWER && r->follower_state.current_leader.id != 0) {
    /* libraft resets the election timer on every AppendEntries from the leader. */
    c->last_contact_at = r->election_timer_start;
  }
  if (state == c->last_state) return;

  int old = c->last_state;
  c->last_state = state;
  if (state == RAFT_LEADER) {
    log_info("raft", "entering leader state: term %llu, last index %llu",
             (unsigned long long)r->current_term, (unsigned long long)raft_last_index(r));
  } else {
    log_info("raft", "entering %s state: term %llu", state_name(state),
             (unsigned long long)r->current_term);
  }
  if ((old == RAFT_LEADER) != (state == RAFT_LEADER) && c->leader_cb != NULL) {
    c->leader_cb(c->leader_arg, state == RAFT_LEADER);
  }
}

void consensus_set_leader_cb(struct consensus *c, consensus_leader_cb cb, void *arg)
{
  c->leader_cb = cb;
  c->leader_arg = arg;
  /* A single server is leader before consensus_start returns: tell the new callback. */
  if (cb != NULL && !c->stopping && c->last_state == RAFT_LEADER) cb(arg, true);
}

/* ---- start and stop ---- */

/* Remembers the log's end after we appended to it as leader. */
static void note_leader_append(struct consensus *c)
{
  uint64_t last = raft_last_index(c->r);
  if (last > c->leader_appended) c->leader_appended = last;
}

/* Stopped consensus instances whose memory libraft may still read (see the header comment).
 * One per stop: an agent stops its consensus once, at exit; tests a handful of times. */
static struct consensus *retired_list;

static void retired_free_all(void)
{
  while (retired_list != NULL) {
    struct consensus *c = retired_list;
    retired_list = c->retired_next;
    if (c->io_inited) raft_uv_close(&c->io);
    free(c);
  }
}

static void consensus_free(struct consensus *c)
{
  free(c->dir);
  c->dir = NULL;
  free(c->address);
  c->address = NULL;
  if (!c->raft_closed) {
    /* libraft never ran (start failed before raft_init, or its io was closed already). */
    if (c->io_inited) raft_uv_close(&c->io);
    free(c);
    return;
  }
  static bool registered;
  if (!registered) {
    registered = atexit(retired_free_all) == 0;
  }
  c->retired_next = retired_list;
  retired_list = c;
}

/* libraft's io close callback delivered once; later firings (the backend finishing work its
 * readiness check did not wait for) are swallowed, so raft's ioCloseCb does not free the
 * raft's log and configuration twice. */
static void io_closed_once(struct raft_io *io)
{
  struct consensus *c = (struct consensus *)((char *)io - offsetof(struct consensus, io));
  if (c->io_close_fired) {
    log_debug("raft", "io close callback fired again (libraft 0.15); ignored");
    return;
  }
  c->io_close_fired = true;
  c->io_closed_cb(io);
}

static void io_close_once(struct raft_io *io, raft_io_close_cb cb)
{
  struct consensus *c = (struct consensus *)((char *)io - offsetof(struct consensus, io));
  c->io_closed_cb = cb;
  c->io_close(io, io_closed_once);
}

/* Runs once both the raft instance and the poll timer are closed. */
static void maybe_finish(struct consensus *c)
{
  if (!c->raft_closed || !c->poll_closed) return;
  if (c->pending != 0) {
    /* libraft promises every request's callback before its close callback; if this fires,
     * a request's memory leaks rather than being freed under a callback still to come. */
    log_error("raft", "%u requests still pending after close", c->pending);
  }
  void (*cb)(void *) = c->stop_cb;
  void *arg = c->stop_arg;
  consensus_free(c);
  if (cb != NULL) cb(arg);
}

static void transport_close(struct consensus *c)
{
  if (c->transport_close != NULL) c->transport_close(c->transport_arg, &c->transport);
  else raft_uv_tcp_close(&c->transport);
}

static void on_raft_closed(struct raft *r)
{
  struct consensus *c = r->data;
  transport_close(c); /* the io's memory stays until exit: see consensus_free */
  c->raft_closed = true;
  maybe_finish(c);
}

static void poll_close_cb(uv_handle_t *h)
{
  struct consensus *c = h->data;
  c->poll_closed = true;
  maybe_finish(c);
}

/* Closing starts from a timer callback, never from inside libraft: consensus_stop may be
 * called from an apply callback, which runs in the middle of libraft's apply loop.
 *
 * And it waits until no log append is queued. libraft 0.15's raft_close cancels the queued
 * appends one by one; the leader's append callback truncates the log from the canceled
 * entry on, so the second canceled append truncates past the end of the log (an assert
 * compiled out in Debian's build) and the process crashes in refsDecr. Upstream fixed it
 * after 0.15 (replication.c: `if (index <= logLastIndex(r->log))`). New proposals are
 * refused once stopping, so the queue drains within a few disk writes; on a single server
 * the drained entries even commit, and their callbacks report success. If the disk never
 * answers, we close anyway after STOP_DRAIN_MS rather than hang. */
#define STOP_DRAIN_MS 10000

static void stop_timer_cb(uv_timer_t *t)
{
  struct consensus *c = t->data;
  struct raft *r = c->r;
  /* Only appends we made as leader are at risk (the follower's append callback does not
   * truncate), and a follower under load always has some in flight: wait for ours only. */
  uint64_t target = c->leader_appended < raft_last_index(r) ? c->leader_appended
                                                            : raft_last_index(r);
  if (r->last_stored < target) {
    if (uv_now(c->loop) - c->stop_started_at < STOP_DRAIN_MS) return;
    log_warn("raft", "closing with log entries %llu..%llu not yet written",
             (unsigned long long)r->last_stored + 1, (unsigned long long)target);
  }
  uv_timer_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, poll_close_cb);
  log_info("raft", "shutting down (last index %llu, applied %llu)",
           (unsigned long long)raft_last_index(c->r), (unsigned long long)raft_last_applied(c->r));
  raft_close(c->r, on_raft_closed);
}

void consensus_stop(struct consensus *c, void (*cb)(void *arg), void *arg)
{
  if (c->stopping) return; /* a second call would free twice; ignore it */
  c->stopping = true;
  c->stop_cb = cb;
  c->stop_arg = arg;
  c->stop_started_at = uv_now(c->loop);
  uv_timer_stop(&c->poll);
  uv_timer_start(&c->poll, stop_timer_cb, 0, 2);
}

static int make_dir(const char *path, char *errbuf, size_t errlen)
{
  if (mkdir(path, 0700) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    snprintf(errbuf, errlen, "raft: %s exists and is not a directory", path);
    return CC_EINVAL;
  }
  snprintf(errbuf, errlen, "raft: cannot create %s: %s", path, strerror(errno));
  return CC_EIO;
}

static int check_config(const struct consensus_config *cfg, char *errbuf, size_t errlen)
{
  const char *bad = NULL;
  if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0') bad = "data_dir is required";
  else if (cfg->node_id == NULL || cfg->node_id[0] == '\0') bad = "node_id is required";
  else if (cfg->address == NULL || cfg->address[0] == '\0') bad = "address is required";
  else if (strlen(cfg->address) >= sizeof(((struct consensus_peer *)0)->address))
    bad = "address is too long";
  else if (cfg->heartbeat_timeout_ms == 0) bad = "heartbeat timeout must be positive";
  else if (cfg->election_timeout_ms <= cfg->heartbeat_timeout_ms)
    bad = "election timeout must be longer than the heartbeat timeout";
  else if (cfg->snapshot_threshold == 0) bad = "snapshot threshold must be positive";
  if (bad == NULL) return 0;
  snprintf(errbuf, errlen, "raft: %s", bad);
  return CC_EINVAL;
}

/* True when <dir> holds no Raft log or snapshot yet (libraft's metadata files alone do not
 * count: they exist before any entry). */
static bool dir_is_fresh(const char *dir)
{
  DIR *d = opendir(dir);
  if (d == NULL) return false;
  bool fresh = true;
  struct dirent *e;
  while (fresh && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
        strcmp(e->d_name, "metadata1") == 0 || strcmp(e->d_name, "metadata2") == 0)
      continue;
    fresh = false;
  }
  closedir(d);
  return fresh;
}

static int start_raft(struct consensus *c, char *errbuf, size_t errlen)
{
  int rrv = raft_start(&c->raft);
  if (rrv != 0) {
    /* libraft often leaves its message empty for transport errors; the usual cause is the
     * server port being taken, so say so. */
    const char *why = raft_errmsg(&c->raft);
    snprintf(errbuf, errlen, "raft: start in %s on %s: %s%s", c->dir, c->address,
             why && *why ? why : raft_strerror(rrv),
             rrv == RAFT_IOERR ? " (is the server port already in use?)" : "");
    return consensus__error(c, rrv);
  }
  c->deferred = false;
  return 0;
}

int consensus_start(uv_loop_t *loop, const struct consensus_config *cfg,
                    struct state_store *store, struct consensus **out, char *errbuf,
                    size_t errlen)
{
  int rv = check_config(cfg, errbuf, errlen);
  if (rv != 0) return rv;
  rv = make_dir(cfg->data_dir, errbuf, errlen);
  if (rv != 0) return rv;

  struct consensus *c = xcalloc(1, sizeof *c);
  c->loop = loop;
  c->r = &c->raft;
  c->store = store;
  c->id = consensus_raft_id(cfg->node_id);
  c->snapshot_fork = cfg->snapshot_fork;
  c->address = xstrdup(cfg->address);
  size_t n = strlen(cfg->data_dir) + sizeof "/raft";
  c->dir = xmalloc(n);
  snprintf(c->dir, n, "%s/raft", cfg->data_dir);
  c->last_state = RAFT_UNAVAILABLE;
  c->poll_closed = true; /* until the timer exists */
  consensus__fsm_init(c);

  rv = make_dir(c->dir, errbuf, errlen);
  if (rv != 0) goto err_free;

  c->transport_close = cfg->transport_close;
  c->transport_arg = cfg->transport_arg;
  int rrv = cfg->transport_init != NULL ? cfg->transport_init(cfg->transport_arg, &c->transport)
                                        : raft_uv_tcp_init(&c->transport, loop);
  if (rrv != 0) {
    snprintf(errbuf, errlen, "raft: transport: %s", c->transport.errmsg);
    rv = consensus__error(c, rrv);
    goto err_free;
  }
  rrv = raft_uv_init(&c->io, loop, c->dir, &c->transport);
  if (rrv != 0) {
    snprintf(errbuf, errlen, "raft: %s: %s", c->dir, c->io.errmsg);
    rv = consensus__error(c, rrv);
    transport_close(c);
    goto err_free;
  }
  c->io_inited = true;
  c->io_close = c->io.close;
  c->io.close = io_close_once;
  /* The uv backend implements async_work but reports version 1; FSM version 3 (snapshots
   * encoded off the loop, snapshot.c) needs 2. Upstream later reports 2 as well. */
  if (c->io.version < 2 && c->io.async_work != NULL) c->io.version = 2;
  raft_uv_set_connect_retry_delay(&c->io, CONNECT_RETRY_MS);
  /* libraft's auto-recovery renames a segment it finds corrupt at load time and starts
   * without it: committed, acknowledged entries would silently vanish. Refuse to start
   * instead, so an operator decides (Consul also refuses to start on a corrupt log). */
  raft_uv_set_auto_recovery(&c->io, false);

  rrv = raft_init(&c->raft, &c->io, &c->fsm, c->id, c->address);
  if (rrv != 0) {
    snprintf(errbuf, errlen, "raft: init in %s: %s", c->dir, raft_errmsg(&c->raft));
    rv = consensus__error(c, rrv);
    goto err_close_io;
  }
  c->raft.data = c;
  raft_set_election_timeout(&c->raft, cfg->election_timeout_ms);
  raft_set_heartbeat_timeout(&c->raft, cfg->heartbeat_timeout_ms);
  raft_set_snapshot_threshold(&c->raft, cfg->snapshot_threshold);
  raft_set_snapshot_trailing(&c->raft, cfg->snapshot_trailing);
  /* Pre-vote: a server that was partitioned away does not bump the term and depose a
   * healthy leader when it comes back (dissertation 9.6). */
  raft_set_pre_vote(&c->raft, true);

  if (cfg->bootstrap_expect == 1) {
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    rrv = raft_configuration_add(&conf, c->id, c->address, RAFT_VOTER);
    if (rrv == 0) rrv = raft_bootstrap(&c->raft, &conf);
    raft_configuration_close(&conf);
    if (rrv == 0) {
      log_info("raft", "bootstrapped a new single-server cluster in %s (id %016" PRIx64 ")",
               c->dir, c->id);
    } else if (rrv != RAFT_CANTBOOTSTRAP) { /* CANTBOOTSTRAP: existing data, a restart */
      snprintf(errbuf, errlen, "raft: bootstrap in %s: %s", c->dir, raft_strerror(rrv));
      rv = consensus__error(c, rrv);
      goto err_close_raft;
    }
  } else if (cfg->bootstrap_expect > 1 && dir_is_fresh(c->dir)) {
    /* Raft starts once the agent knows whether to bootstrap a new cluster with its peers or
     * to wait to be added to an existing one (consensus_bootstrap / consensus_start_joined):
     * a bootstrap is an entry at index 1, so it must happen before the log is opened. */
    c->deferred = true;
    log_info("raft", "bootstrap_expect is %u: waiting for the other servers",
             cfg->bootstrap_expect);
  } else {
    log_info("raft", "bootstrap_expect is %u: not bootstrapping; waiting to be added by a "
             "leader", cfg->bootstrap_expect);
  }

  if (!c->deferred) {
    rv = start_raft(c, errbuf, errlen);
    if (rv != 0) goto err_close_raft;
  }

  uv_timer_init(loop, &c->poll);
  c->poll.data = c;
  c->poll_closed = false;
  c->last_contact_at = uv_now(loop);
  uv_timer_start(&c->poll, poll_cb, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
  poll_cb(&c->poll); /* a single-server cluster is already leader: log it now */

  log_info("raft", "started %s (id %016" PRIx64 ") on %s: last index %llu, applied %llu",
           c->dir, c->id, c->address, (unsigned long long)raft_last_index(c->r),
           (unsigned long long)raft_last_applied(c->r));
  *out = c;
  return 0;

err_close_raft:
  /* raft_init opened handles (the io tick timer): they close on the loop, and the close
   * callback frees everything. */
  c->stopping = true;
  raft_close(&c->raft, on_raft_closed);
  return rv;
err_close_io:
  transport_close(c);
err_free:
  consensus_free(c);
  return rv;
}

bool consensus_awaiting_bootstrap(const struct consensus *c)
{
  return c->deferred && !c->stopping;
}

int consensus_bootstrap(struct consensus *c, const struct consensus_peer *peers, size_t n)
{
  if (!c->deferred || c->stopping) return CC_ECONFLICT;
  bool self = false;
  struct raft_configuration conf;
  raft_configuration_init(&conf);
  int rrv = 0;
  for (size_t i = 0; i < n && rrv == 0; i++) {
    if (peers[i].id == c->id) self = true;
    rrv = raft_configuration_add(&conf, peers[i].id, peers[i].address, RAFT_VOTER);
  }
  if (rrv == 0 && !self) {
    raft_configuration_close(&conf);
    log_error("raft", "bootstrap: this server (%016" PRIx64 ") is not in the list", c->id);
    return CC_EINVAL;
  }
  if (rrv == 0) rrv = raft_bootstrap(&c->raft, &conf);
  raft_configuration_close(&conf);
  if (rrv != 0) {
    log_error("raft", "bootstrap with %zu servers failed: %s", n, raft_strerror(rrv));
    return rrv == RAFT_INVALID || rrv == RAFT_DUPLICATEID || rrv == RAFT_DUPLICATEADDRESS
               ? CC_EINVAL : consensus__error(c, rrv);
  }
  log_info("raft", "bootstrapped a new %zu-server cluster in %s", n, c->dir);
  char err[256];
  int rv = start_raft(c, err, sizeof err);
  if (rv != 0) log_error("raft", "%s", err);
  return rv;
}

int consensus_start_joined(struct consensus *c)
{
  if (!c->deferred || c->stopping) return CC_ECONFLICT;
  log_info("raft", "a cluster exists already: starting without bootstrap, to be added by its "
           "leader");
  char err[256];
  int rv = start_raft(c, err, sizeof err);
  if (rv != 0) log_error("raft", "%s", err);
  return rv;
}

/* ---- proposals ---- */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
  struct apply_req *a = (struct apply_req *)req;
  struct consensus *c = a->c;
  c->pending--;
  if (status == 0) {
    const struct consensus__applied *ap = result;
    if (ap->index != req->index) {
      /* The FSM stamped rows with a different index than the entry's: it would be a bug in
       * the index derivation (fsm.c); make it loud. */
      log_error("raft", "FSM applied index %llu but the request's entry is %llu",
                (unsigned long long)ap->index, (unsigned long long)req->index);
    }
    a->cb(a->arg, 0, &ap->res, req->index);
  } else {
    a->cb(a->arg, consensus__error(c, status), NULL, 0);
  }
  free(a);
}

int consensus_apply(struct consensus *c, const struct buf *cmd, consensus_apply_cb cb,
                    void *arg)
{
  if (c->stopping) return CC_ESHUTDOWN;
  if (cmd->len == 0) return CC_EINVAL;
  if (cmd->len > CONSENSUS_MAX_COMMAND) return CC_ETOOBIG;
  if (raft_state(c->r) != RAFT_LEADER) return CC_ENOTLEADER;

  struct raft_buffer rb;
  rb.len = consensus__framed_len(cmd->len);
  rb.base = raft_malloc(rb.len);
  if (rb.base == NULL) return CC_EIO; /* libraft's allocator; not ours to abort */
  consensus__frame(rb.base, cmd->data, cmd->len);

  struct apply_req *a = xmalloc(sizeof *a);
  a->req.data = a;
  a->c = c;
  a->cb = cb;
  a->arg = arg;
  int rv = raft_apply(c->r, &a->req, &rb, 1, apply_cb);
  if (rv != 0) {
    raft_free(rb.base);
    free(a);
    return consensus__error(c, rv);
  }
  c->pending++;
  note_leader_append(c);
  return 0;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
  struct barrier_req *b = (struct barrier_req *)req;
  struct consensus *c = b->c;
  c->pending--;
  b->cb(b->arg, consensus__error(c, status));
  free(b);
}

int consensus_barrier(struct consensus *c, consensus_barrier_cb cb, void *arg)
{
  if (c->stopping) return CC_ESHUTDOWN;
  if (raft_state(c->r) != RAFT_LEADER) return CC_ENOTLEADER;
  struct barrier_req *b = xmalloc(sizeof *b);
  b->req.data = b;
  b->c = c;
  b->cb = cb;
  b->arg = arg;
  int rv = raft_barrier(c->r, &b->req, barrier_cb);
  if (rv != 0) {
    free(b);
    return consensus__error(c, rv);
  }
  c->pending++;
  note_leader_append(c);
  return 0;
}

/* ---- membership ---- */

static const struct raft_server *find_server(const struct consensus *c, uint64_t id)
{
  const struct raft_configuration *conf = &c->raft.configuration;
  for (unsigned i = 0; i < conf->n; i++) {
    if (conf->servers[i].id == id) return &conf->servers[i];
  }
  return NULL;
}

static void change_cb(struct raft_change *req, int status)
{
  struct change_req *ch = (struct change_req *)req;
  struct consensus *c = ch->c;
  if (status == 0 && ch->promote_next && !c->stopping) {
    /* The server is in the configuration as a spare; now make it a voter. libraft first
     * replicates the log to it in rounds, so it does not count in the quorum before it has
     * caught up. */
    ch->promote_next = false;
    int rv = raft_assign(c->r, &ch->req, ch->id, RAFT_VOTER, change_cb);
    if (rv == 0) {
      note_leader_append(c);
      return;
    }
    status = rv;
  }
  c->pending--;
  int err = consensus__error(c, status);
  if (status == 0 && ch->promote_next) err = CC_ESHUTDOWN; /* stopped between the steps */
  if (err != 0) {
    log_warn("raft", "membership change for %016" PRIx64 " failed: %s", ch->id,
             cc_strerror(err));
  } else {
    log_info("raft", "membership change for %016" PRIx64 " committed", ch->id);
  }
  ch->cb(ch->arg, err);
  free(ch);
}

int consensus_add_voter(struct consensus *c, uint64_t id, const char *address,
                        consensus_change_cb cb, void *arg)
{
  if (c->stopping) return CC_ESHUTDOWN;
  if (id == 0 || address == NULL || address[0] == '\0' ||
      strlen(address) >= sizeof(((struct consensus_peer *)0)->address))
    return CC_EINVAL;
  if (raft_state(c->r) != RAFT_LEADER) return CC_ENOTLEADER;

  const struct raft_server *s = find_server(c, id);
  if (s != NULL && (s->role == RAFT_VOTER || strcmp(s->address, address) != 0))
    return CC_ECONFLICT;

  struct change_req *ch = xcalloc(1, sizeof *ch);
  ch->req.data = ch;
  ch->c = c;
  ch->cb = cb;
  ch->arg = arg;
  ch->id = id;
  int rv;
  if (s == NULL) {
    ch->promote_next = true;
    rv = raft_add(c->r, &ch->req, id, address, change_cb);
  } else {
    rv = raft_assign(c->r, &ch->req, id, RAFT_VOTER, change_cb);
  }
  if (rv != 0) {
    free(ch);
    return consensus__error(c, rv);
  }
  log_info("raft", "adding server %016" PRIx64 " at %s as voter", id, address);
  c->pending++;
  note_leader_append(c);
  return 0;
}

int consensus_remove_peer(struct consensus *c, uint64_t id, consensus_change_cb cb,
                          void *arg)
{
  if (c->stopping) return CC_ESHUTDOWN;
  if (raft_state(c->r) != RAFT_LEADER) return CC_ENOTLEADER;
  if (find_server(c, id) == NULL) return CC_ENOTFOUND;
  struct change_req *ch = xcalloc(1, sizeof *ch);
  ch->req.data = ch;
  ch->c = c;
  ch->cb = cb;
  ch->arg = arg;
  ch->id = id;
  int rv = raft_remove(c->r, &ch->req, id, change_cb);
  if (rv != 0) {
    free(ch);
    return consensus__error(c, rv);
  }
  log_info("raft", "removing server %016" PRIx64, id);
  c->pending++;
  note_leader_append(c);
  return 0;
}

/* ---- state ---- */

bool consensus_is_leader(const struct consensus *c)
{
  return !c->stopping && raft_state(c->r) == RAFT_LEADER;
}

const char *consensus_leader_address(const struct consensus *c)
{
  raft_id id = 0;
  const char *address = NULL;
  if (c->stopping) return NULL;
  raft_leader(c->r, &id, &address);
  return id != 0 ? address : NULL;
}

uint64_t consensus_last_contact_ms(const struct consensus *c)
{
  struct raft *r = c->r;
  int state = raft_state(r);
  uint64_t now = uv_now(c->loop);
  uint64_t at = c->last_contact_at;
  if (state == RAFT_LEADER) return 0;
  if (state == RAFT_FOLLOWER && r->follower_state.current_leader.id != 0)
    at = r->election_timer_start;
  return now > at ? now - at : 0;
}

uint64_t consensus_last_index(const struct consensus *c)
{
  return raft_last_index(c->r);
}

uint64_t consensus_applied_index(const struct consensus *c)
{
  return raft_last_applied(c->r);
}

uint64_t consensus_term(const struct consensus *c)
{
  return c->raft.current_term;
}

uint64_t consensus_snapshot_index(const struct consensus *c)
{
  return c->raft.log.snapshot.last_index;
}

uint64_t consensus_id(const struct consensus *c)
{
  return c->id;
}

const char *consensus_state_name(const struct consensus *c)
{
  return state_name(c->stopping ? RAFT_UNAVAILABLE : raft_state(c->r));
}

size_t consensus_peers(const struct consensus *c, struct consensus_peer *out, size_t max)
{
  const struct raft_configuration *conf = &c->raft.configuration;
  for (unsigned i = 0; i < conf->n && i < max; i++) {
    out[i].id = conf->servers[i].id;
    snprintf(out[i].address, sizeof out[i].address, "%s", conf->servers[i].address);
    out[i].voter = conf->servers[i].role == RAFT_VOTER;
  }
  return conf->n;
}
