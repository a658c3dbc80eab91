/* metrics.c -- renders a gathered set of metrics as Consul's JSON or Prometheus text. */
#include "lib/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"

struct metrics_counters metrics_g;

void metrics_summary_add(struct metrics_summary *s, double v)
{
  if (s->count == 0 || v < s->min) s->min = v;
  if (s->count == 0 || v > s->max) s->max = v;
  s->count++;
  s->sum += v;
  s->sumsq += v * v;
}

void metrics_set_free(struct metrics_set *m)
{
  for (size_t i = 0; i < m->n; i++) {
    struct metrics_entry *e = &m->v[i];
    for (size_t j = 0; j < e->nlabels; j++) {
      free((char *)e->labels[j].name);
      free((char *)e->labels[j].value);
    }
    free(e->labels);
    free(e->name);
  }
  free(m->v);
  m->v = NULL;
  m->n = m->cap = 0;
}

static struct metrics_entry *metrics_add(struct metrics_set *m, enum metrics_kind kind,
                                         const char *name, const struct metrics_label *labels,
                                         size_t nlabels)
{
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 32;
    m->v = xrealloc(m->v, m->cap * sizeof *m->v);
  }
  struct metrics_entry *e = &m->v[m->n++];
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->name = xstrdup(name);
  if (nlabels) {
    e->labels = xcalloc(nlabels, sizeof *e->labels);
    for (size_t i = 0; i < nlabels; i++) {
      e->labels[i].name = xstrdup(labels[i].name);
      e->labels[i].value = xstrdup(labels[i].value ? labels[i].value : "");
    }
  }
  e->nlabels = nlabels;
  return e;
}

void metrics_gauge(struct metrics_set *m, const char *name, const struct metrics_label *labels,
                   size_t nlabels, double value)
{
  metrics_add(m, METRICS_GAUGE, name, labels, nlabels)->value = value;
}

void metrics_counter(struct metrics_set *m, const char *name,
                     const struct metrics_label *labels, size_t nlabels, uint64_t count)
{
  struct metrics_entry *e = metrics_add(m, METRICS_COUNTER, name, labels, nlabels);
  e->sum.count = count;
  e->sum.sum = e->sum.sumsq = (double)count;
  e->sum.min = e->sum.max = count ? 1 : 0;
}

void metrics_sample(struct metrics_set *m, const char *name, const struct metrics_label *labels,
                    size_t nlabels, const struct metrics_summary *s)
{
  metrics_add(m, METRICS_SAMPLE, name, labels, nlabels)->sum = *s;
}

/* ---- JSON ---- */

static json_t *metrics_labels_json(const struct metrics_entry *e)
{
  json_t *o = json_object();
  for (size_t i = 0; i < e->nlabels; i++)
    json_object_set_new(o, e->labels[i].name, json_string(e->labels[i].value));
  return o;
}

/* go-metrics' AggregateSample.Stddev: the sample standard deviation (0 below two values). */
static double metrics_stddev(const struct metrics_summary *s)
{
  if (s->count < 2) return 0;
  double n = (double)s->count;
  double num = n * s->sumsq - s->sum * s->sum;
  if (num <= 0) return 0;
  return sqrt(num / (n * (n - 1)));
}

static json_t *metrics_summary_json(const struct metrics_entry *e, double elapsed_s)
{
  const struct metrics_summary *s = &e->sum;
  json_t *o = json_object();
  json_object_set_new(o, "Name", json_string(e->name));
  json_object_set_new(o, "Count", json_integer((json_int_t)s->count));
  json_object_set_new(o, "Rate", json_real(elapsed_s > 0 ? s->sum / elapsed_s : 0));
  json_object_set_new(o, "Sum", json_real(s->sum));
  json_object_set_new(o, "Min", json_real(s->min));
  json_object_set_new(o, "Max", json_real(s->max));
  json_object_set_new(o, "Mean", json_real(s->count ? s->sum / (double)s->count : 0));
  json_object_set_new(o, "Stddev", json_real(metrics_stddev(s)));
  json_object_set_new(o, "Labels", metrics_labels_json(e));
  return o;
}

json_t *metrics_json(const struct metrics_set *m, time_t now, double elapsed_s)
{
  char ts[64];
  time_t start = now - now % 10; /* go-metrics stamps the 10 s interval's start */
  struct tm tm;
  gmtime_r(&start, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
  json_t *gauges = json_array(), *counters = json_array(), *samples = json_array();
  for (size_t i = 0; i < m->n; i++) {
    const struct metrics_entry *e = &m->v[i];
    if (e->kind == METRICS_GAUGE) {
      json_t *o = json_object();
      json_object_set_new(o, "Name", json_string(e->name));
      json_object_set_new(o, "Value", json_real(e->value));
      json_object_set_new(o, "Labels", metrics_labels_json(e));
      json_array_append_new(gauges, o);
    } else {
      json_array_append_new(e->kind == METRICS_COUNTER ? counters : samples,
                            metrics_summary_json(e, elapsed_s));
    }
  }
  json_t *j = json_object();
  json_object_set_new(j, "Timestamp", json_string(ts));
  json_object_set_new(j, "Gauges", gauges);
  json_object_set_new(j, "Points", json_array());
  json_object_set_new(j, "Counters", counters);
  json_object_set_new(j, "Samples", samples);
  return j;
}

/* ---- Prometheus ---- */

void metrics_prometheus_name(const char *name, struct buf *out)
{
  for (const char *p = name; *p; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (c >= '0' && c <= '9' && p != name);
    buf_putc(out, ok ? c : '_');
  }
}

static void metrics_prom_labels(const struct metrics_entry *e, struct buf *out)
{
  if (!e->nlabels) return;
  buf_putc(out, '{');
  for (size_t i = 0; i < e->nlabels; i++) {
    if (i) buf_putc(out, ',');
    metrics_prometheus_name(e->labels[i].name, out);
    buf_puts(out, "=\"");
    for (const char *p = e->labels[i].value; *p; p++) {
      if (*p == '\\') buf_puts(out, "\\\\");
      else if (*p == '"') buf_puts(out, "\\\"");
      else if (*p == '\n') buf_puts(out, "\\n");
      else buf_putc(out, *p);
    }
    buf_putc(out, '"');
  }
  buf_putc(out, '}');
}

static void metrics_prom_value(double v, struct buf *out)
{
  if (isnan(v)) buf_puts(out, "NaN");
  else if (isinf(v)) buf_puts(out, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 1e15) buf_printf(out, "%.0f", v);
  else buf_printf(out, "%.17g", v);
}

static int metrics_cmp_name(const void *a, const void *b)
{
  const struct metrics_entry *x = *(const struct metrics_entry *const *)a;
  const struct metrics_entry *y = *(const struct metrics_entry *const *)b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  return x < y ? -1 : x > y; /* stable: keep the order they were added in */
}

void metrics_prometheus(const struct metrics_set *m, struct buf *out)
{
  if (!m->n) return;
  const struct metrics_entry **order = xcalloc(m->n, sizeof *order);
  for (size_t i = 0; i < m->n; i++) order[i] = &m->v[i];
  qsort(order, m->n, sizeof *order, metrics_cmp_name);
  struct buf name = BUF_INIT;
  for (size_t i = 0; i < m->n; i++) {
    const struct metrics_entry *e = order[i];
    buf_reset(&name);
    metrics_prometheus_name(e->name, &name);
    if (i == 0 || strcmp(order[i - 1]->name, e->name) != 0) {
      static const char *const types[] = {"gauge", "counter", "summary"};
      buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name.data, name.data, name.data,
                 types[e->kind]);
    }
    if (e->kind == METRICS_SAMPLE) {
      buf_printf(out, "%s_sum", name.data);
      metrics_prom_labels(e, out);
      buf_putc(out, ' ');
      metrics_prom_value(e->sum.sum, out);
      buf_printf(out, "\n%s_count", name.data);
      metrics_prom_labels(e, out);
      buf_printf(out, " %llu\n", (unsigned long long)e->sum.count);
    } else {
      buf_puts(out, name.data);
      metrics_prom_labels(e, out);
      buf_putc(out, ' ');
      metrics_prom_value(e->kind == METRICS_GAUGE ? e->value : e->sum.sum, out);
      buf_putc(out, '\n');
    }
  }
  buf_free(&name);
  free(order);
}
