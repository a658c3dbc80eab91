/* cmd_lock.c -- `concord lock [options] prefix child...`: takes a lock (-n 1) or a semaphore
 * slot (-n N) under a KV prefix, runs the child while it is held, and stops the child when it
 * is lost, as `consul lock` does (same flags, messages, exit codes, KV layout and session
 * name, so both tools can contend for one prefix and scripts keep working).
 *
 * The flow (Consul's command/lock):
 *   1. check the agent (GET /v1/agent/self), create a session (TTL 15s; behavior "delete" for
 *      a semaphore so a dead contender's key goes away with it), renewed every TTL/2;
 *   2. wait for the lock with blocking queries (lock_kv.c); -timeout bounds the wait;
 *   3. run the child (`$SHELL -c "args..."`, or the args themselves with -shell=false) with
 *      CONSUL_LOCK_HELD=true, while watching the key with blocking queries;
 *   4. when the child exits: release; when the lock is lost or we get SIGINT/SIGTERM: SIGTERM
 *      to the child, SIGKILL after 5 s, then release;
 *   5. destroy the session, delete the key if nobody else uses it, exit 0 (2 with
 *      -child-exit-code when the child failed).
 *
 * Why a worker process rather than a libuv loop: while waiting for the lock and while holding
 * it we must watch several things at once -- a blocking query that may last minutes, the
 * renewal timer, the child, and signals. The blocking steps run in a forked worker that uses
 * the CLI's tested synchronous HTTP client (its timeouts and Go error texts) unchanged, and
 * tells us over a pipe when it got the lock and, by exiting, when it lost it. This process
 * then only has to poll() two pipes (the worker's and a self-pipe fed by the signal handlers)
 * with a timeout for the next renewal or the SIGKILL deadline, and can drop a pending blocking
 * query at once by killing the worker -- which is what makes Ctrl-C release immediately. An
 * async HTTP client on libuv would have been a second HTTP client to keep correct.
 *
 * The child inherits this process's stdout and stderr, so this is the one command that works
 * on the real descriptors rather than only on ctx's streams. */
#define _GNU_SOURCE /* pipe2, execvpe */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/lock.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/jsonw.h"

extern char **environ;

#define SESSION_TTL "15s"
#define KILL_GRACE_NS (5 * DURATION_S)  /* lockKillGracePeriod */
#define MONITOR_RETRY_NS DURATION_S     /* the command's defaultMonitorRetryTime */
#define LOCK_RETRY_NS (5 * DURATION_S)  /* api.DefaultLockRetryTime */
#define MAX_CHILD_ARGS 4096
#define MAX_WORKER_MSG 8192

struct opts {
  int64_t limit, monitor_retry;
  const char *name, *timeout, *try_timeout;
  bool child_exit_code, pass_stdin, shell, verbose;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "child-exit-code", &o->child_exit_code,
                 "When the child exits with an error, exit with code 2. Without this flag the "
                 "child's failure does not change the exit code. The default is false.");
  cli__flag_int(fs, "n", &o->limit,
                "How many holders may hold the lock at once. 1 is a lock (mutual exclusion); "
                "more makes it a semaphore. Every contender on a prefix must give the same "
                "value. The default is 1.");
  cli__flag_int(fs, "monitor-retry", &o->monitor_retry,
                "How many times to retry, one second apart, when the agent answers 500 or "
                "cannot be reached while the lock is watched, before treating the lock as "
                "lost. 0 disables retries. The default is 3.");
  cli__flag_string(fs, "name", &o->name, "",
                   "Name of the session that holds the lock. The default is built from the "
                   "prefix and the child command.");
  cli__flag_bool(fs, "pass-stdin", &o->pass_stdin,
                 "Give the child this command's stdin. By default the child's stdin is "
                 "empty.");
  cli__flag_bool(fs, "shell", &o->shell,
                 "Run the child through a shell ($SHELL, or /bin/sh) as one command line. "
                 "With -shell=false the arguments are run directly. The default is true.");
  cli__flag_string(fs, "timeout", &o->timeout, "",
                   "Longest time to wait for the lock, as a duration such as \"10s\" or "
                   "\"3h\". The default, 0, waits forever.");
  cli__flag_string(fs, "try", &o->try_timeout, "", "Deprecated: use -timeout.");
  cli__flag_bool(fs, "verbose", &o->verbose, "Print what the command is doing.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  o->limit = 1;
  o->monitor_retry = 3;
  o->shell = true;
  /* The non-zero defaults, for Go's usage text after a bad flag. */
  for (size_t i = 0; i < fs->n; i++) {
    if (strcmp(fs->flags[i].name, "n") == 0) fs->flags[i].defval = "1";
    if (strcmp(fs->flags[i].name, "monitor-retry") == 0) fs->flags[i].defval = "3";
    if (strcmp(fs->flags[i].name, "shell") == 0) fs->flags[i].defval = "true";
  }
}

static const char usage[] =
    "Usage: concord lock [options] prefix child...\n"
    "\n"
    "  Takes a lock (or, with -n greater than 1, a slot of a semaphore) under the\n"
    "  given KV prefix and runs the child command while it is held; the child sees\n"
    "  CONSUL_LOCK_HELD=true in its environment. Commands that use the same prefix\n"
    "  take turns, on any agent of the cluster.\n"
    "\n"
    "      $ concord lock service/web/leader ./run-leader.sh\n"
    "      $ concord lock -n 3 jobs/batch ./worker.sh\n"
    "\n"
    "  When the lock is lost (its session invalidated, the key taken over, the agent\n"
    "  unreachable) or this command is interrupted, the child gets SIGTERM, and\n"
    "  SIGKILL 5 seconds later if it is still running; then the lock is released.\n"
    "  Note that a shell may not pass SIGTERM on to the programs it started; use\n"
    "  -shell=false or a shell that does when that matters.\n"
    "\n"
    "  The token used needs write access to the prefix.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

/* ---- Signals: handlers only write the number into a pipe that the loop polls ---- */

static int sig_wfd = -1;

static void on_signal(int sig)
{
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (sig_wfd >= 0 && write(sig_wfd, &b, 1) < 0) {
    /* pipe full: the loop already has enough to wake up on */
  }
  errno = saved;
}

static int install_signals(int fds[2], struct sigaction old[3])
{
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
  sig_wfd = fds[1];
  static const int sigs[3] = {SIGINT, SIGTERM, SIGCHLD};
  for (int i = 0; i < 3; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | (sigs[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
    sigaction(sigs[i], &sa, &old[i]);
  }
  return 0;
}

static void restore_signals(int fds[2], const struct sigaction old[3])
{
  static const int sigs[3] = {SIGINT, SIGTERM, SIGCHLD};
  for (int i = 0; i < 3; i++) sigaction(sigs[i], &old[i], NULL);
  sig_wfd = -1;
  close(fds[0]);
  close(fds[1]);
}

/* ---- Time ---- */

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * DURATION_S + ts.tv_nsec;
}

/* ---- The session ---- */

struct renewer {
  int64_t ttl_ns;
  int64_t next;         /* when to renew next; 0: stopped */
  int64_t last_ok;      /* last successful renewal (or creation) */
};

static int session_create(struct cli__ctx *ctx, const struct cli__client *c, const char *name,
                          bool semaphore, char **id, char *err, size_t errlen)
{
  /* api.Session.Create: a map, so Go writes the keys sorted. */
  struct buf body = BUF_INIT;
  struct jsonw w;
  jsonw_init(&w, &body, false);
  jsonw_object_begin(&w);
  if (semaphore) {
    jsonw_key(&w, "Behavior");
    jsonw_string(&w, "delete");
  }
  jsonw_key(&w, "Name");
  jsonw_string(&w, name);
  jsonw_key(&w, "TTL");
  jsonw_string(&w, SESSION_TTL);
  jsonw_object_end(&w);
  json_t *out = NULL;
  int rc = cli__client_json(ctx, c, "PUT", "/v1/session/create", NULL, body.data, body.len,
                            true, &out, err, errlen);
  buf_free(&body);
  if (rc != 0) return -1;
  const char *s = json_string_value(json_object_get(out, "ID"));
  *id = xstrdup(s ? s : "");
  json_decref(out);
  return 0;
}

/* api.Session.RenewPeriodic: every TTL/2; after an error every second until a TTL has passed
 * since the last success; a 404 (session gone) stops it. */
static void session_renew(struct cli__ctx *ctx, const struct cli__client *c, const char *id,
                          struct renewer *r)
{
  int64_t now = now_ns();
  if (!r->next || now < r->next) return;
  struct buf path = BUF_INIT;
  buf_printf(&path, "/v1/session/renew/%s", id);
  struct cli__http_resp resp;
  memset(&resp, 0, sizeof(resp));
  char err[CLI__ERRLEN];
  int rc = cli__client_call(ctx, c, "PUT", path.data, NULL, NULL, 0, false, &resp, err,
                            sizeof(err));
  buf_free(&path);
  now = now_ns();
  if (rc == 0 && resp.status == 404) {
    r->next = 0;
  } else if (rc != 0 || resp.status != 200) {
    r->next = now + DURATION_S;
  } else {
    json_t *arr = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
    const char *ttl = json_string_value(json_object_get(json_array_get(arr, 0), "TTL"));
    int64_t ns;
    if (ttl && duration_parse(ttl, strlen(ttl), &ns) == 0 && ns > 0) r->ttl_ns = ns;
    json_decref(arr);
    r->last_ok = now;
    r->next = now + r->ttl_ns / 2;
  }
  if (r->next && now - r->last_ok > r->ttl_ns) r->next = 0;
  cli__http_resp_free(&resp);
}

static void session_destroy(struct cli__ctx *ctx, const struct cli__client *c, const char *id)
{
  struct buf path = BUF_INIT;
  buf_printf(&path, "/v1/session/destroy/%s", id);
  struct cli__http_resp resp;
  memset(&resp, 0, sizeof(resp));
  char err[CLI__ERRLEN];
  /* As Consul, a failure here is not reported: the TTL ends the session anyway. */
  cli__client_call(ctx, c, "PUT", path.data, NULL, NULL, 0, false, &resp, err, sizeof(err));
  buf_free(&path);
  cli__http_resp_free(&resp);
}

/* ---- The worker: acquire, then monitor ---- */

static void write_all(int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* Forks the worker. It writes 'A' when it holds the lock and exits when it loses it, or
 * writes 'T' (timed out) or 'E' and the reason, and exits. Returns its pid, -1 on failure;
 * *rfd gets the read end of its pipe. */
static pid_t worker_start(struct cli__lock *l, int *rfd)
{
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  fflush(l->ctx->out);
  fflush(l->ctx->err);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid > 0) {
    close(fds[1]);
    *rfd = fds[0];
    return pid;
  }
  /* Worker. A Ctrl-C at the terminal reaches the whole process group; the parent decides
   * what happens, and kills us when it wants us gone. If the parent dies, so do we. */
  close(fds[0]);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGCHLD, SIG_DFL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  char err[CLI__ERRLEN];
  enum cli__lock_result r = cli__lock_acquire(l, err, sizeof(err));
  if (r == CLI__LOCK_ACQUIRED) {
    write_all(fds[1], "A", 1);
    cli__lock_monitor(l);
  } else if (r == CLI__LOCK_TIMEOUT) {
    write_all(fds[1], "T", 1);
  } else {
    write_all(fds[1], "E", 1);
    write_all(fds[1], err, strlen(err));
  }
  /* _exit: no atexit handlers (the leak checker would report the parent's memory). */
  _exit(0);
}

static void worker_stop(pid_t *pid, int *rfd)
{
  if (*pid > 0) {
    kill(*pid, SIGKILL);
    while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR) {
    }
    *pid = -1;
  }
  if (*rfd >= 0) {
    close(*rfd);
    *rfd = -1;
  }
}

/* ---- The child ---- */

/* Go's text for a signal, as os/exec's ExitError prints "signal: terminated". */
static const char *go_signame(int sig)
{
  switch (sig) {
  case SIGHUP: return "hangup";
  case SIGINT: return "interrupt";
  case SIGQUIT: return "quit";
  case SIGILL: return "illegal instruction";
  case SIGABRT: return "aborted";
  case SIGBUS: return "bus error";
  case SIGFPE: return "floating point exception";
  case SIGKILL: return "killed";
  case SIGUSR1: return "user defined signal 1";
  case SIGSEGV: return "segmentation fault";
  case SIGUSR2: return "user defined signal 2";
  case SIGPIPE: return "broken pipe";
  case SIGALRM: return "alarm clock";
  case SIGTERM: return "terminated";
  default: return NULL; /* Go: "signal <n>" */
  }
}

/* Reports a finished child as Consul's startChild does. Returns whether it failed. */
static bool child_report(struct cli__ctx *ctx, int status)
{
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return false;
  if (WIFEXITED(status)) cli__error(ctx, "Error running handler: exit status %d",
                                    WEXITSTATUS(status));
  else if (go_signame(WTERMSIG(status)))
    cli__error(ctx, "Error running handler: signal: %s", go_signame(WTERMSIG(status)));
  else cli__error(ctx, "Error running handler: signal: signal %d", WTERMSIG(status));
  fflush(ctx->err);
  return true;
}

/* Starts the child. Returns its pid, or -1 after printing why (the exec failure comes back
 * through a close-on-exec pipe, so "not found" is reported here, as Go's Start does). */
static pid_t child_start(struct cli__ctx *ctx, char **args, int nargs, bool shell,
                         bool pass_stdin, bool verbose)
{
  if (verbose) cli__info(ctx, "Starting handler");
  char **argv = xcalloc((size_t)nargs + 4, sizeof(*argv));
  struct buf line = BUF_INIT;
  if (shell) {
    const char *sh = cli__env(ctx, "SHELL");
    for (int i = 0; i < nargs; i++) {
      if (i) buf_putc(&line, ' ');
      buf_puts(&line, args[i]);
    }
    argv[0] = (char *)(sh ? sh : "/bin/sh");
    argv[1] = (char *)"-c";
    argv[2] = line.data ? line.data : (char *)"";
  } else {
    for (int i = 0; i < nargs; i++) argv[i] = args[i];
  }
  /* The environment plus CONSUL_LOCK_HELD=true (replacing one already there). */
  size_t ne = 0;
  while (environ[ne]) ne++;
  char **envp = xcalloc(ne + 2, sizeof(*envp));
  size_t k = 0;
  for (size_t i = 0; i < ne; i++)
    if (strncmp(environ[i], "CONSUL_LOCK_HELD=", 17) != 0) envp[k++] = environ[i];
  envp[k++] = (char *)"CONSUL_LOCK_HELD=true";
  if (pass_stdin && verbose) cli__info(ctx, "Stdin passed to handler process");
  fflush(ctx->out);
  fflush(ctx->err);

  int ep[2];
  pid_t pid = -1;
  if (pipe2(ep, O_CLOEXEC) != 0) {
    cli__error(ctx, "Error starting handler: pipe: %s", strerror(errno));
    goto out;
  }
  pid = fork();
  if (pid == 0) {
    close(ep[0]);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (!pass_stdin) {
      int fd = open("/dev/null", O_RDONLY);
      if (fd >= 0 && fd != 0) {
        dup2(fd, 0);
        close(fd);
      }
    }
    execvpe(argv[0], argv, envp);
    int e = errno;
    write_all(ep[1], (const char *)&e, sizeof(e));
    _exit(127);
  }
  close(ep[1]);
  if (pid < 0) {
    cli__error(ctx, "Error starting handler: fork: %s", strerror(errno));
    close(ep[0]);
    goto out;
  }
  int e = 0;
  ssize_t r;
  while ((r = read(ep[0], &e, sizeof(e))) < 0 && errno == EINTR) {
  }
  close(ep[0]);
  if (r == (ssize_t)sizeof(e)) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
    /* Go's exec errors: LookPath's for a bare name, fork/exec's for a path. */
    if (e == ENOENT && !strchr(argv[0], '/'))
      cli__error(ctx, "Error starting handler: exec: \"%s\": executable file not found in $PATH",
                 argv[0]);
    else cli__error(ctx, "Error starting handler: fork/exec %s: %s", argv[0], strerror(e));
  }
out:
  fflush(ctx->err);
  buf_free(&line);
  free(argv);
  free(envp);
  return pid;
}

/* ---- The command ---- */

/* Go's flag error for a bad duration value, with the usage, as flag.Parse prints it. */
static int bad_duration(struct cli__ctx *ctx, const struct cli__flagset *fs, const char *name,
                        const char *v)
{
  struct buf b = BUF_INIT;
  buf_puts(&b, "invalid value ");
  cli__go_quote(&b, v);
  buf_printf(&b, " for flag -%s: parse error\nUsage:\n", name);
  cli__flags_print_defaults(fs, &b);
  fwrite(b.data, 1, b.len, ctx->err);
  buf_free(&b);
  return 1;
}

enum phase { ACQUIRING, HOLDING, KILLING, RELEASING, DONE };

struct run_state {
  struct cli__ctx *ctx;
  struct cli__lock *l;
  const struct opts *o;
  enum phase phase;
  pid_t worker, child;
  int wfd;                 /* worker pipe, -1 when closed */
  bool acquired, shutdown, worker_gone;
  struct buf wmsg;         /* what the worker wrote */
  int child_status;
  bool child_done;
  int64_t kill_at;         /* SIGKILL deadline while KILLING */
  int child_code;
};

/* Reads what the worker wrote; notes its exit at EOF. */
static void read_worker(struct run_state *s)
{
  char tmp[512];
  for (;;) {
    ssize_t r = read(s->wfd, tmp, sizeof(tmp));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return;
    if (r == 0) {
      worker_stop(&s->worker, &s->wfd); /* exited: reap it */
      s->worker_gone = true;
      return;
    }
    if (s->wmsg.len < MAX_WORKER_MSG) buf_append(&s->wmsg, tmp, (size_t)r);
    if (s->wmsg.len && s->wmsg.data[0] == 'A') s->acquired = true;
    if (r < (ssize_t)sizeof(tmp)) return;
  }
}

static void reap_child(struct run_state *s)
{
  if (s->child <= 0 || s->child_done) return;
  int st;
  pid_t r = waitpid(s->child, &st, WNOHANG);
  if (r == s->child) {
    s->child_done = true;
    s->child_status = st;
  }
}

static void begin_kill(struct run_state *s)
{
  struct cli__ctx *ctx = s->ctx;
  s->phase = KILLING;
  if (s->child <= 0 || s->child_done) {
    if (s->child <= 0 && s->o->verbose) cli__info(ctx, "No child process to kill");
    s->phase = RELEASING;
    return;
  }
  if (s->o->verbose) cli__info(ctx, "Terminating child pid %d", (int)s->child);
  if (kill(s->child, SIGTERM) != 0) {
    cli__error(ctx, "Failed to terminate %d: %s", (int)s->child, strerror(errno));
    s->phase = RELEASING;
    return;
  }
  s->kill_at = now_ns() + KILL_GRACE_NS;
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  int64_t timeout = 0;
  const char *tv[2] = {o.timeout, o.try_timeout}, *tn[2] = {"timeout", "try"};
  for (int i = 0; i < 2; i++) {
    if (!tv[i][0]) continue;
    int64_t ns;
    if (duration_parse(tv[i], strlen(tv[i]), &ns) != 0) return bad_duration(ctx, &fs, tn[i], tv[i]);
    timeout = ns;
  }
  if (o.limit <= 0) {
    cli__error(ctx, "Lock holder limit must be positive");
    return 1;
  }
  int nargs = argc - rest;
  if (nargs < 2) {
    cli__error(ctx, "Key prefix and child command must be specified");
    return 1;
  }
  if (nargs - 1 > MAX_CHILD_ARGS) {
    cli__error(ctx, "Too many arguments for the child command (at most %d)", MAX_CHILD_ARGS);
    return 1;
  }
  const char *prefix = argv[rest];
  if (prefix[0] == '/') prefix++;
  if (timeout < 0) {
    cli__error(ctx, "Timeout must be positive");
    return 1;
  }
  struct buf name = BUF_INIT;
  if (o.name[0]) {
    buf_puts(&name, o.name);
  } else {
    /* Consul's generated session name, which tools look for. */
    buf_puts(&name, "Consul lock for '");
    for (int i = rest + 1; i < argc; i++) {
      if (i > rest + 1) buf_putc(&name, ' ');
      buf_puts(&name, argv[i]);
    }
    buf_printf(&name, "' at '%s'", prefix);
  }
  if (o.monitor_retry < 0) {
    cli__error(ctx, "Number for 'monitor-retry' must be >= 0");
    buf_free(&name);
    return 1;
  }

  char err[CLI__ERRLEN];
  int code = 1;
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    buf_free(&name);
    return 1;
  }
  /* From here on SIGINT/SIGTERM only ask us to stop (Consul's ShutdownCh): the loop below
   * acts on one that came early, before anything is held. */
  int sfd[2];
  struct sigaction old[3];
  if (install_signals(sfd, old) != 0) {
    cli__error(ctx, "Error creating a pipe: %s", strerror(errno));
    cli__client_free(&c);
    buf_free(&name);
    return 1;
  }
  if (cli__client_json(ctx, &c, "GET", "/v1/agent/self", NULL, NULL, 0, false, NULL, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out_client;
  }

  struct cli__lock l = {
      .ctx = ctx,
      .client = &c,
      .prefix = prefix,
      .key = cli__path_join(prefix, CLI__LOCK_KEY),
      .limit = o.limit,
      .oneshot = timeout > 0,
      .wait_ns = timeout,
      .monitor_retries = o.monitor_retry,
      .monitor_retry_ns = MONITOR_RETRY_NS,
      .retry_ns = LOCK_RETRY_NS,
  };
  if (l.limit == 1) {
    if (o.verbose) cli__info(ctx, "Setting up lock at path: %s", l.key);
  } else {
    if (o.verbose) cli__info(ctx, "Setting up semaphore (limit %lld) at prefix: %s",
                             (long long)l.limit, prefix);
    if (!prefix[0]) {
      cli__error(ctx, "Lock setup failed: missing prefix");
      goto out_lock;
    }
  }
  if (o.verbose) cli__info(ctx, "Attempting lock acquisition");
  if (session_create(ctx, &c, name.data, l.limit > 1, &l.session, err, sizeof(err)) != 0) {
    cli__error(ctx, "Lock acquisition failed: failed to create session: %s", err);
    goto out_lock;
  }

  /* Calls made from the loop must not hold it up long: the agent is local. */
  struct cli__ctx loop_ctx = *ctx;
  loop_ctx.connect_timeout_ms = 10 * 1000;
  loop_ctx.io_timeout_ms = 10 * 1000;
  struct renewer ren = {.ttl_ns = 15 * DURATION_S};
  ren.last_ok = now_ns();
  ren.next = ren.last_ok + ren.ttl_ns / 2;

  struct run_state s = {.ctx = ctx, .l = &l, .o = &o, .phase = ACQUIRING, .child = -1,
                        .wfd = -1};
  s.worker = worker_start(&l, &s.wfd);
  if (s.worker < 0) {
    cli__error(ctx, "Lock acquisition failed: fork: %s", strerror(errno));
    s.phase = DONE;
  }

  bool again = false; /* the phase just changed: look at everything again before sleeping */
  while (s.phase != DONE && s.phase != RELEASING) {
    int64_t now = now_ns(), wake = ren.next;
    if (s.phase == KILLING && (!wake || s.kill_at < wake)) wake = s.kill_at;
    int ms = -1;
    if (wake) ms = wake <= now ? 0 : (int)((wake - now) / DURATION_MS + 1);
    if (again) ms = 0;
    enum phase before = s.phase;
    struct pollfd pf[2] = {{.fd = sfd[0], .events = POLLIN}, {.fd = s.wfd, .events = POLLIN}};
    int pr = poll(pf, s.wfd >= 0 ? 2 : 1, ms);
    if (pr < 0 && errno != EINTR) break;
    if (pr > 0 && pf[0].revents) {
      unsigned char sig[64];
      ssize_t r = read(sfd[0], sig, sizeof(sig));
      for (ssize_t i = 0; i < r; i++) {
        if (sig[i] == SIGCHLD) continue;
        if (!s.shutdown && o.verbose && s.phase == HOLDING)
          cli__info(ctx, "Shutdown triggered, killing child");
        s.shutdown = true;
        /* Consul forwards an interrupt to the child (agent.ForwardSignals). */
        if (sig[i] == SIGINT && s.child > 0 && !s.child_done) kill(s.child, SIGINT);
      }
    }
    if (s.wfd >= 0 && pr > 0 && pf[1].revents) read_worker(&s);
    reap_child(&s);
    session_renew(&loop_ctx, &c, l.session, &ren);

    switch (s.phase) {
    case ACQUIRING:
      if (s.acquired) {
        if (s.shutdown) {
          cli__error(ctx, "Shutdown triggered during lock acquisition");
          worker_stop(&s.worker, &s.wfd);
          s.phase = RELEASING;
          break;
        }
        s.child = child_start(ctx, argv + rest + 1, nargs - 1, o.shell, o.pass_stdin,
                              o.verbose);
        if (s.child < 0) {
          /* As Consul: a child that cannot start is a failed child. */
          s.child_code = 2;
          if (o.verbose) cli__info(ctx, "Child terminated, releasing lock");
          worker_stop(&s.worker, &s.wfd);
          s.phase = RELEASING;
          break;
        }
        s.phase = HOLDING;
        reap_child(&s);
      } else if (s.shutdown || s.worker_gone) {
        if (s.shutdown || (s.wmsg.len && s.wmsg.data[0] == 'T') || !s.wmsg.len) {
          cli__error(ctx, "Shutdown triggered or timeout during lock acquisition");
        } else {
          buf_putc(&s.wmsg, '\0');
          cli__error(ctx, "Lock acquisition failed: %s", s.wmsg.data + 1);
        }
        worker_stop(&s.worker, &s.wfd);
        s.phase = DONE;
      }
      break;
    case HOLDING:
      if (s.child_done) {
        if (child_report(ctx, s.child_status)) s.child_code = 2;
        if (o.verbose) cli__info(ctx, "Child terminated, releasing lock");
        worker_stop(&s.worker, &s.wfd);
        s.phase = RELEASING;
      } else if (s.shutdown) {
        worker_stop(&s.worker, &s.wfd);
        begin_kill(&s);
      } else if (s.worker_gone) {
        if (o.verbose) cli__info(ctx, "Lock lost, killing child");
        begin_kill(&s);
      }
      break;
    case KILLING:
      if (s.child_done) {
        child_report(ctx, s.child_status);
        if (o.verbose) cli__info(ctx, "Child terminated");
        s.phase = RELEASING;
      } else if (now_ns() >= s.kill_at) {
        if (o.verbose) {
          cli__info(ctx, "Child did not exit after grace period of 5s");
          cli__info(ctx, "Killing child pid %d", (int)s.child);
        }
        if (kill(s.child, SIGKILL) != 0)
          cli__error(ctx, "Failed to kill %d: %s", (int)s.child, strerror(errno));
        int st;
        while (waitpid(s.child, &st, 0) < 0 && errno == EINTR) {
        }
        s.child_done = true;
        child_report(ctx, st);
        s.phase = RELEASING;
      }
      break;
    default: break;
    }
    again = s.phase != before;
    fflush(ctx->out);
    fflush(ctx->err);
  }
  worker_stop(&s.worker, &s.wfd);
  /* A killed child may have left a grandchild; never leave our own child unreaped. */
  if (s.child > 0 && !s.child_done) {
    kill(s.child, SIGKILL);
    while (waitpid(s.child, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  buf_free(&s.wmsg);

  if (s.phase != RELEASING) {
    /* Never held: the session goes, and a semaphore's contender key with it. */
    session_destroy(ctx, &c, l.session);
    goto out_lock;
  }
  int rel = cli__lock_release(&l, err, sizeof(err));
  session_destroy(ctx, &c, l.session);
  if (rel != 0) {
    cli__error(ctx, "Lock release failed: %s", err);
    goto out_lock;
  }
  int cl = cli__lock_cleanup(&l, err, sizeof(err));
  if (cl < 0) {
    cli__error(ctx, "Lock cleanup failed: %s", err);
    goto out_lock;
  }
  if (o.verbose) cli__info(ctx, cl == 1 ? "Cleanup aborted, lock in use" : "Cleanup succeeded");
  code = o.child_exit_code ? s.child_code : 0;
out_lock:
  cli__lock_free(&l);
out_client:
  restore_signals(sfd, old);
  cli__client_free(&c);
  buf_free(&name);
  return code;
}

const struct cli__command cli__cmd_lock = {
    .name = "lock",
    .synopsis = "Execute a command holding a lock",
    .run = run,
    .help = help,
};
