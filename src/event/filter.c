/* filter.c -- which agents keep an event: Consul's validateUserEventParams (what firing
 * refuses) and shouldProcessUserEvent (node, service and tag regular expressions checked by
 * every receiving agent against its own name and services).
 *
 * Consul's filters are Go (RE2) expressions; we compile them as POSIX extended expressions,
 * which agree on everything filters are used for (alternation, classes, anchors, repetition).
 * Go's MatchString is an unanchored search, as regexec is. The Perl classes \d and \D, which
 * POSIX lacks, are translated; glibc understands \w \W \s \S itself. */
#include <stdio.h>
#include <string.h>

#include "event/event.h"
#include "lib/buf.h"

int event_regex_compile(regex_t *re, const char *expr, char *err, size_t errlen)
{
  struct buf t = BUF_INIT;
  bool in_class = false;
  for (const char *p = expr; *p; p++) {
    if (*p == '\\' && p[1]) {
      if (!in_class && (p[1] == 'd' || p[1] == 'D')) {
        buf_printf(&t, "%s", p[1] == 'd' ? "[0-9]" : "[^0-9]");
      } else if (in_class && p[1] == 'd') {
        buf_printf(&t, "0-9");
      } else {
        buf_append(&t, p, 2);
      }
      p++;
      continue;
    }
    if (*p == '[' && !in_class) {
      in_class = true;
      buf_append(&t, p, 1);
      /* A ']' right after '[' or '[^' is a literal member. */
      if (p[1] == '^') buf_append(&t, ++p, 1);
      if (p[1] == ']') buf_append(&t, ++p, 1);
      continue;
    }
    if (*p == ']' && in_class) in_class = false;
    buf_append(&t, p, 1);
  }
  buf_append(&t, "", 1);
  int rc = regcomp(re, t.data, REG_EXTENDED | REG_NOSUB);
  buf_free(&t);
  if (rc != 0) {
    char msg[128];
    regerror(rc, re, msg, sizeof msg);
    snprintf(err, errlen, "error parsing regexp: %s: `%s`", msg, expr);
    return -1;
  }
  return 0;
}

static int check_filter(const char *what, const char *expr, char *err, size_t errlen)
{
  if (!expr[0]) return 0;
  regex_t re;
  char why[512];
  if (event_regex_compile(&re, expr, why, sizeof why) != 0) {
    snprintf(err, errlen, "Invalid %s filter: %s", what, why);
    return -1;
  }
  regfree(&re);
  return 0;
}

int event_validate(const struct event_user *ev, char *err, size_t errlen)
{
  if (!ev->name[0]) {
    snprintf(err, errlen, "User event missing name");
    return -1;
  }
  if (ev->tag_filter[0] && !ev->service_filter[0]) {
    snprintf(err, errlen, "Cannot provide tag filter without service filter");
    return -1;
  }
  if (check_filter("node", ev->node_filter, err, errlen) != 0) return -1;
  if (check_filter("service", ev->service_filter, err, errlen) != 0) return -1;
  if (check_filter("tag", ev->tag_filter, err, errlen) != 0) return -1;
  return 0;
}

static bool matches(const regex_t *re, const char *s)
{
  return regexec(re, s, 0, NULL, 0) == 0;
}

bool event_filter_match(const struct event_user *ev, const char *node,
                        const struct event_service *svcs, size_t nsvcs)
{
  char err[256];
  regex_t re;
  if (ev->node_filter[0]) {
    if (event_regex_compile(&re, ev->node_filter, err, sizeof err) != 0) return false;
    bool ok = matches(&re, node);
    regfree(&re);
    if (!ok) return false;
  }
  if (!ev->service_filter[0]) return true;
  if (event_regex_compile(&re, ev->service_filter, err, sizeof err) != 0) return false;
  regex_t tag_re;
  bool have_tag = ev->tag_filter[0] != 0;
  if (have_tag && event_regex_compile(&tag_re, ev->tag_filter, err, sizeof err) != 0) {
    regfree(&re);
    return false;
  }
  bool found = false;
  for (size_t i = 0; i < nsvcs && !found; i++) {
    if (!matches(&re, svcs[i].id)) continue;
    if (!have_tag) {
      found = true;
      break;
    }
    for (size_t j = 0; j < svcs[i].ntags; j++) {
      if (matches(&tag_re, svcs[i].tags[j])) {
        found = true;
        break;
      }
    }
  }
  regfree(&re);
  if (have_tag) regfree(&tag_re);
  return found;
}
