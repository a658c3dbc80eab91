/* addr.c -- gossip_addr text and byte forms (see io.h). */
#include "gossip/io.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

char *gossip_addr_format(const struct gossip_addr *a, char *out, size_t outlen) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (a->len == 4)
    inet_ntop(AF_INET, a->ip, ip, sizeof ip);
  else if (a->len == 16)
    inet_ntop(AF_INET6, a->ip, ip, sizeof ip);
  snprintf(out, outlen, a->len == 16 ? "[%s]:%u" : "%s:%u", ip, (unsigned)a->port);
  return out;
}

int gossip_addr_from_bytes(const uint8_t *ip, size_t len, uint16_t port, struct gossip_addr *out) {
  memset(out, 0, sizeof *out);
  out->port = port;
  if (len == 16 && memcmp(ip, v4mapped, 12) == 0) {
    ip += 12;
    len = 4;
  }
  if (len != 4 && len != 16) return CC_EINVAL;
  memcpy(out->ip, ip, len);
  out->len = (uint8_t)len;
  return 0;
}

int gossip_addr_parse(const char *s, uint16_t default_port, struct gossip_addr *out) {
  char host[INET6_ADDRSTRLEN + 2];
  const char *port = NULL;
  size_t n = strlen(s);
  memset(out, 0, sizeof *out);
  if (n == 0 || n > 80) return CC_EINVAL;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || (size_t)(close - s - 1) >= sizeof host) return CC_EINVAL;
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    if (close[1] == ':')
      port = close + 2;
    else if (close[1] != '\0')
      return CC_EINVAL;
  } else {
    const char *colon = strchr(s, ':');
    if (colon && strchr(colon + 1, ':')) colon = NULL; /* bare IPv6 */
    size_t hl = colon ? (size_t)(colon - s) : n;
    if (hl >= sizeof host) return CC_EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (colon) port = colon + 1;
  }
  out->port = default_port;
  if (port) {
    char *end;
    long p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || p < 0 || p > 65535) return CC_EINVAL;
    out->port = (uint16_t)p;
  }
  if (inet_pton(AF_INET, host, out->ip) == 1) {
    out->len = 4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, out->ip) == 1) {
    out->len = 16;
    struct gossip_addr tmp;
    if (gossip_addr_from_bytes(out->ip, 16, out->port, &tmp) == 0) *out = tmp;
    return 0;
  }
  return CC_EINVAL;
}

bool gossip_addr_eq(const struct gossip_addr *a, const struct gossip_addr *b) {
  return a->len == b->len && a->port == b->port && memcmp(a->ip, b->ip, a->len) == 0;
}
