/* log.c -- hclog-style log lines on stderr. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static enum log_level log_level = LOG_INFO;

/* Subscribers: a fixed table, so that (un)subscribing from inside a dispatch never moves
 * what the dispatch loop is walking. log_sub_min is the lowest level any of them wants
 * (LOG_OFF: none), so log_enabled stays one or two comparisons. */
static struct { log_subscriber_fn fn; void *arg; enum log_level min; } log_subs[LOG_MAX_SUBSCRIBERS];
static enum log_level log_sub_min = LOG_OFF;
static bool log_dispatching;

static void log_subs_recompute(void)
{
  log_sub_min = LOG_OFF;
  for (int i = 0; i < LOG_MAX_SUBSCRIBERS; i++)
    if (log_subs[i].fn && log_subs[i].min < log_sub_min) log_sub_min = log_subs[i].min;
}

int log_subscribe(enum log_level min, log_subscriber_fn fn, void *arg)
{
  if (!fn || min >= LOG_OFF) return -1;
  for (int i = 0; i < LOG_MAX_SUBSCRIBERS; i++) {
    if (!log_subs[i].fn) {
      log_subs[i].fn = fn;
      log_subs[i].arg = arg;
      log_subs[i].min = min;
      log_subs_recompute();
      return i;
    }
  }
  return -1;
}

void log_unsubscribe(int handle)
{
  if (handle < 0 || handle >= LOG_MAX_SUBSCRIBERS) return;
  log_subs[handle].fn = NULL;
  log_subs[handle].arg = NULL;
  log_subs_recompute();
}

const char *log_level_lower(enum log_level level)
{
  static const char *const lower[] = {"trace", "debug", "info", "warn", "error"};
  return level < LOG_OFF ? lower[level] : "";
}

static const char *const log_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(enum log_level level) { log_level = level; }
enum log_level log_get_level(void) { return log_level; }
bool log_enabled(enum log_level level)
{
  return level >= log_level || (level >= log_sub_min && level < LOG_OFF);
}

int log_parse_level(const char *name, enum log_level *out)
{
  static const struct { const char *name; enum log_level level; } names[] = {
      {"trace", LOG_TRACE}, {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN},
      {"warning", LOG_WARN}, {"err", LOG_ERROR}, {"error", LOG_ERROR}, {"off", LOG_OFF},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strcasecmp(name, names[i].name) == 0) {
      *out = names[i].level;
      return 0;
    }
  }
  return -1;
}

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
  if (level >= LOG_OFF) return;
  bool to_stderr = level >= log_level;
  bool to_subs = level >= log_sub_min && !log_dispatching;
  if (!to_stderr && !to_subs) return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[32];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
           (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
           tm.tm_sec % 100, (int)(tv.tv_usec / 1000) % 1000);
  char line[2048];
  int n = snprintf(line, sizeof line, "%s [%s]%s %s: ", ts, log_names[level],
                   level == LOG_INFO || level == LOG_WARN ? " " : "", module);
  if (n < 0 || (size_t)n >= sizeof line) n = 0; /* only with an absurd module name */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  /* One fputs per line so concurrent writers (test harnesses) see whole lines. */
  if (to_stderr) fprintf(stderr, "%s\n", line);
  if (!to_subs) return;
  struct log_record rec = {
    .level = level,
    .level_name = log_names[level],
    .module = module,
    .message = line + n,
    .line = line,
    .timestamp = ts,
    .unix_us = (long long)tv.tv_sec * 1000000 + tv.tv_usec,
  };
  log_dispatching = true;
  for (int i = 0; i < LOG_MAX_SUBSCRIBERS; i++) {
    /* re-read each slot: an earlier subscriber may have removed or added one */
    if (log_subs[i].fn && level >= log_subs[i].min) log_subs[i].fn(&rec, log_subs[i].arg);
  }
  log_dispatching = false;
}
