/* metrics.h -- a set of metric values gathered for one /v1/agent/metrics answer, rendered as
 * Consul's JSON (go-metrics' inmem DisplayMetrics: Timestamp, Gauges, Points, Counters,
 * Samples) or as Prometheus text exposition (what Consul's prometheus sink serves).
 *
 * Nothing here keeps state between requests: the modules that own the numbers keep plain
 * integers (or a struct metrics_summary) and the endpoint copies them into a set on request.
 * Names are Consul's dotted ones ("consul.runtime.alloc_bytes"); Prometheus gets them with
 * every character outside [a-zA-Z0-9_:] turned into '_'. */
#ifndef CONCORD_LIB_METRICS_H
#define CONCORD_LIB_METRICS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"

/* Process-wide counters that modules bump where the event happens (plain integers: every
 * module runs on the one loop) and /v1/agent/metrics reads. */
struct metrics_counters {
  uint64_t dns_queries;         /* DNS questions received (UDP and TCP) */
  uint64_t rpc_requests;        /* RPC calls received on the server port */
  uint64_t rpc_client_requests; /* RPC calls this agent sent */
};
extern struct metrics_counters metrics_g;

struct metrics_label {
  const char *name, *value;
};

/* Running statistics of observed values (a go-metrics AggregateSample). */
struct metrics_summary {
  uint64_t count;
  double sum, sumsq, min, max;
};
void metrics_summary_add(struct metrics_summary *s, double v);

enum metrics_kind { METRICS_GAUGE, METRICS_COUNTER, METRICS_SAMPLE };

struct metrics_entry {
  enum metrics_kind kind;
  char *name;                   /* owned */
  struct metrics_label *labels; /* owned, names and values too */
  size_t nlabels;
  double value;                 /* gauges */
  struct metrics_summary sum;   /* counters and samples */
};

struct metrics_set {
  struct metrics_entry *v; /* owned */
  size_t n, cap;
};
#define METRICS_SET_INIT {NULL, 0, 0}
void metrics_set_free(struct metrics_set *m);

/* Adds entries; names and labels are copied. A name must keep one kind within a set. */
void metrics_gauge(struct metrics_set *m, const char *name, const struct metrics_label *labels,
                   size_t nlabels, double value);
/* A counter incremented `count` times by 1 in all (Sum = Count, Min = Max = 1). */
void metrics_counter(struct metrics_set *m, const char *name,
                     const struct metrics_label *labels, size_t nlabels, uint64_t count);
void metrics_sample(struct metrics_set *m, const char *name, const struct metrics_label *labels,
                    size_t nlabels, const struct metrics_summary *s);

/* Consul's JSON shape (a new reference). `now` stamps it as Go's time.String() in UTC,
 * truncated to the 10 s interval as go-metrics does; `elapsed_s` (> 0) divides counts into
 * each counter's Rate. */
json_t *metrics_json(const struct metrics_set *m, time_t now, double elapsed_s);
/* Prometheus text format 0.0.4, metrics sorted by name, each with HELP and TYPE lines. */
#define METRICS_PROMETHEUS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
void metrics_prometheus(const struct metrics_set *m, struct buf *out);
/* The Prometheus form of a dotted name ("consul.raft.state" -> "consul_raft_state"). */
void metrics_prometheus_name(const char *name, struct buf *out);

#endif
