/* log.c -- hclog-style log lines on stderr. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static enum log_level log_level = LOG_INFO;

static const char *const log_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(enum log_level level) { log_level = level; }
enum log_level log_get_level(void) { return log_level; }
bool log_enabled(enum log_level level) { return level >= log_level; }

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
  if (level < log_level || level >= LOG_OFF) return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char line[2048];
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s]%s %s: ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(tv.tv_usec / 1000), log_names[level], level == LOG_INFO || level == LOG_WARN ? " " : "",
                   module);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  /* One fputs per line so concurrent writers (test harnesses) see whole lines. */
  fprintf(stderr, "%s\n", line);
}
