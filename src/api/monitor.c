/* monitor.c -- GET /v1/agent/monitor?loglevel=<level>&logjson: streams the agent's log lines
 * as they happen (chunked), as hclog text lines or, with logjson, hclog's JSON lines, until
 * the client goes away (Consul's AgentMonitor).
 *
 * The log hook only copies a line into the monitor's pending buffer and arms a zero timer;
 * the timer hands the buffer to the HTTP server. So logging never calls into the HTTP server
 * from whatever code happened to log. Memory per monitor is bounded: at most
 * MONITOR_PENDING_MAX bytes wait here and the server's queue is not fed past
 * MONITOR_QUEUED_MAX; lines that do not fit are dropped and counted, and the next line that
 * fits is preceded by a WARN line saying how many were lost. */
#include <jansson.h>
#include <stdlib.h>
#include <strings.h>

#include "api/internal.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define MONITOR_PENDING_MAX (64 * 1024)
#define MONITOR_QUEUED_MAX (256 * 1024)
#define MONITOR_RETRY_MS 100 /* how often a backlogged monitor looks at the socket again */

struct monitor {
  struct http_request *req; /* NULL once the client is gone */
  int sub;                  /* log subscription handle, -1 when none */
  bool json;
  bool flushing;            /* inside monitor_flush: the cancel callback must not free */
  bool dead;                /* cancelled during a flush */
  struct buf pending;       /* lines not handed to the server yet */
  uint64_t dropped;         /* lines dropped since the last notice */
  uint64_t dropped_total;
  uv_timer_t timer;         /* data: this monitor; freed in its close callback */
};

static void monitor_on_close(uv_handle_t *h)
{
  struct monitor *m = h->data;
  buf_free(&m->pending);
  free(m);
}

/* The client is gone: stop listening, say what was lost (Consul logs this too), free. */
static void monitor_free(struct monitor *m)
{
  log_unsubscribe(m->sub);
  m->sub = -1;
  m->req = NULL;
  if (m->dropped_total)
    log_warn("agent.http", "Dropped logs during monitor request: dropped_count=%llu",
             (unsigned long long)m->dropped_total);
  uv_close((uv_handle_t *)&m->timer, monitor_on_close);
}

static void monitor_cancel(struct http_request *req, void *arg)
{
  (void)req;
  struct monitor *m = arg;
  if (m->flushing) {
    m->dead = true;
    m->req = NULL;
    return;
  }
  monitor_free(m);
}

static void monitor_flush(uv_timer_t *t)
{
  struct monitor *m = t->data;
  if (!m->req || !m->pending.len) return;
  if (http_stream_queued(m->req) >= MONITOR_QUEUED_MAX) {
    uv_timer_start(&m->timer, monitor_flush, MONITOR_RETRY_MS, 0);
    return;
  }
  m->flushing = true;
  int rc = http_stream_write(m->req, m->pending.data, m->pending.len);
  m->flushing = false;
  buf_reset(&m->pending);
  if (rc != 0 || m->dead) monitor_free(m);
}

/* One line as hclog writes it: text, or JSON with sorted keys and microsecond time. */
static void monitor_format(const struct monitor *m, const char *level_lower,
                           const char *module, const char *message,
                           const char *line, long long unix_us, struct buf *out)
{
  if (!m->json) {
    buf_puts(out, line);
    buf_putc(out, '\n');
    return;
  }
  time_t sec = (time_t)(unix_us / 1000000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  char ts[64], date[32];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts, sizeof ts, "%s.%06lldZ", date, unix_us % 1000000);
  json_t *o = json_object();
  json_object_set_new(o, "@level", json_string(level_lower));
  json_object_set_new(o, "@message", json_string(message));
  json_object_set_new(o, "@module", json_string(module));
  json_object_set_new(o, "@timestamp", json_string(ts));
  char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  if (s) {
    buf_puts(out, s);
    buf_putc(out, '\n');
    free(s);
  }
}

static void monitor_on_log(const struct log_record *rec, void *arg)
{
  struct monitor *m = arg;
  if (!m->req) return;
  size_t before = m->pending.len;
  if (m->dropped) {
    /* a notice in the stream itself: the reader learns lines are missing, and how many */
    char msg[128], line[256];
    snprintf(msg, sizeof msg, "monitor: dropped %llu log lines: the client reads too slowly",
             (unsigned long long)m->dropped);
    snprintf(line, sizeof line, "%s [WARN]  agent.http: %s", rec->timestamp, msg);
    monitor_format(m, "warn", "agent.http", msg, line, rec->unix_us, &m->pending);
  }
  monitor_format(m, log_level_lower(rec->level), rec->module, rec->message,
                 rec->line, rec->unix_us, &m->pending);
  if (m->pending.len > MONITOR_PENDING_MAX) {
    m->pending.len = before; /* does not fit: drop it (and keep the notice for later) */
    if (m->pending.data) m->pending.data[before] = '\0';
    m->dropped++;
    m->dropped_total++;
    return;
  }
  m->dropped = 0;
  if (!uv_is_active((uv_handle_t *)&m->timer))
    uv_timer_start(&m->timer, monitor_flush, 0, 0);
}

/* Consul's logging.ValidateLogLevel: TRACE DEBUG INFO WARN ERR ERROR, any case. */
static int monitor_level(const char *name, enum log_level *out)
{
  static const struct { const char *name; enum log_level level; } names[] = {
      {"trace", LOG_TRACE}, {"debug", LOG_DEBUG}, {"info", LOG_INFO},
      {"warn", LOG_WARN},   {"err", LOG_ERROR},   {"error", LOG_ERROR},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strcasecmp(name, names[i].name) == 0) {
      *out = names[i].level;
      return 0;
    }
  }
  return -1;
}

static void agent_monitor(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  const char *lv = http_query(req, "loglevel");
  if (!lv || !*lv) lv = "INFO";
  enum log_level level;
  if (monitor_level(lv, &level) != 0) {
    http_respond_error(req, 400, "Unknown log level: %s", lv);
    return;
  }
  struct monitor *m = xcalloc(1, sizeof *m);
  m->req = req;
  m->sub = -1;
  m->json = http_query_has(req, "logjson");
  uv_timer_init(ctx->loop, &m->timer);
  m->timer.data = m;
  http_request_on_cancel(req, monitor_cancel, m);
  int rc = http_stream_start(req, 200, "text/plain; charset=utf-8");
  if (rc == CC_EIO) return; /* the client is gone already: monitor_cancel freed m */
  if (rc != 0) {
    http_request_on_cancel(req, NULL, NULL);
    m->req = NULL;
    uv_close((uv_handle_t *)&m->timer, monitor_on_close);
    http_respond_error(req, 500, "Streaming not supported");
    return;
  }
  m->sub = log_subscribe(level, monitor_on_log, m);
  if (m->sub < 0) {
    /* LOG_MAX_SUBSCRIBERS monitors already: end this one at once with a line saying why */
    static const char msg[] = "too many monitors attached to this agent\n";
    http_request_on_cancel(req, NULL, NULL); /* so a failed write leaves req to us */
    m->req = NULL;
    uv_close((uv_handle_t *)&m->timer, monitor_on_close);
    http_stream_write(req, msg, sizeof msg - 1); /* best effort: the stream ends anyway */
    http_stream_end(req);
  }
}

void api_monitor_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET, "/v1/agent/monitor", agent_monitor, ctx);
}
