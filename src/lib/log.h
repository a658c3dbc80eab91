/* log.h -- leveled logging to stderr in Consul's (hclog's) line format:
 *   2026-11-23T08:58:01.123Z [INFO]  agent.http: message
 * so that log scrapers written for Consul read Concord's lines too. */
#ifndef CONCORD_LIB_LOG_H
#define CONCORD_LIB_LOG_H

#include <stdbool.h>

enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses Consul's -log-level names (trace, debug, info, warn, err/error), case-insensitive.
 * Returns 0, or -1 if the name is unknown. */
int log_parse_level(const char *name, enum log_level *out);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Subscribers (/v1/agent/monitor) ----
 * A subscriber receives every line at or above its own level, whatever the stderr level is
 * (a monitor at debug sees debug lines of an agent logging at info). It runs inside log_msg,
 * on the caller's stack: it must only copy what it needs and return (never block, never call
 * back into code that might be mid-operation). Lines logged while subscribers run are not
 * dispatched to subscribers again (no recursion); they still reach stderr. With no
 * subscriber the cost is one comparison per line. */
struct log_record {
  enum log_level level;
  const char *level_name; /* "INFO", ... */
  const char *module;
  const char *message;    /* the formatted message alone */
  const char *line;       /* the whole hclog-style line, without a newline */
  const char *timestamp;  /* "2026-11-23T08:58:01.123Z" */
  long long unix_us;      /* the same instant, microseconds since the epoch */
};
typedef void (*log_subscriber_fn)(const struct log_record *rec, void *arg);
#define LOG_MAX_SUBSCRIBERS 64
/* Adds a subscriber. Returns a handle (>= 0) for log_unsubscribe, or -1 when
 * LOG_MAX_SUBSCRIBERS are taken. Safe to call from a subscriber. */
int log_subscribe(enum log_level min, log_subscriber_fn fn, void *arg);
/* Removes it; after return fn is not called again. Safe to call from a subscriber. */
void log_unsubscribe(int handle);
/* The lowercase name hclog uses in JSON ("info"), or "" for LOG_OFF. */
const char *log_level_lower(enum log_level level);

#define log_trace(mod, ...) do { if (log_enabled(LOG_TRACE)) log_msg(LOG_TRACE, mod, __VA_ARGS__); } while (0)
#define log_debug(mod, ...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, mod, __VA_ARGS__); } while (0)
#define log_info(mod, ...) log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

#endif
