/* io.h -- everything the gossip protocol needs from the outside world, as one small table.
 *
 * The protocol code (swim.c, pushpull.c, serf.c) never touches a socket, a clock or a random
 * source directly (STYLE.md habit 4). It calls these ops, and the io calls back into the sink
 * the protocol registered. io_uv.c implements them on libuv; io_fake.c runs many members in one
 * process on virtual time with loss, delay and partitions.
 *
 * Rules every implementation keeps:
 *  - an op never calls the sink synchronously (no re-entry); events arrive from the loop;
 *  - wake_at replaces the previous wake-up; the sink's wake runs once the time has come;
 *  - streams are reliable byte streams (TCP). stream_close flushes what was written, then
 *    closes; after it, or after a CLOSED event, the id is never reported again.
 * Times are milliseconds on a monotonic clock. */
#ifndef CONCORD_GOSSIP_IO_H
#define CONCORD_GOSSIP_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An IPv4 (len 4) or IPv6 (len 16) address and port, in the byte form memberlist puts on the
 * wire. */
struct gossip_addr {
  uint8_t ip[16];
  uint8_t len;
  uint16_t port;
};

enum gossip_stream_event {
  GOSSIP_STREAM_ACCEPTED,  /* a peer connected to us; peer is set */
  GOSSIP_STREAM_CONNECTED, /* our stream_open succeeded */
  GOSSIP_STREAM_DATA,      /* bytes arrived (lent for the call) */
  GOSSIP_STREAM_CLOSED,    /* peer closed, connect failed, or an error: the id is gone */
};

struct gossip_io;

struct gossip_io_ops {
  uint64_t (*now)(struct gossip_io *io);
  uint64_t (*random)(struct gossip_io *io);
  void (*wake_at)(struct gossip_io *io, uint64_t when);
  /* Best effort; 0 or a negative CC_E* (the protocol logs and moves on). */
  int (*send_packet)(struct gossip_io *io, const struct gossip_addr *to, const void *p, size_t len);
  int (*stream_open)(struct gossip_io *io, const struct gossip_addr *to, uint64_t *id);
  /* Copies the bytes. */
  int (*stream_write)(struct gossip_io *io, uint64_t id, const void *p, size_t len);
  void (*stream_close)(struct gossip_io *io, uint64_t id);
};

struct gossip_io_sink {
  void *ctx;
  void (*wake)(void *ctx);
  void (*packet)(void *ctx, const struct gossip_addr *from, const uint8_t *p, size_t len);
  void (*stream)(void *ctx, uint64_t id, enum gossip_stream_event ev,
                 const struct gossip_addr *peer, const uint8_t *p, size_t len);
};

struct gossip_io {
  const struct gossip_io_ops *ops;
  struct gossip_io_sink sink; /* filled by the protocol before the first event */
};

/* "1.2.3.4:5" / "[::1]:5" into out (at least GOSSIP_ADDR_STRLEN bytes). */
#define GOSSIP_ADDR_STRLEN 56
char *gossip_addr_format(const struct gossip_addr *a, char *out, size_t outlen);
/* Parses "ip", "ip:port", "[v6]:port"; a missing port takes default_port. 0 or CC_EINVAL. */
int gossip_addr_parse(const char *s, uint16_t default_port, struct gossip_addr *out);
bool gossip_addr_eq(const struct gossip_addr *a, const struct gossip_addr *b);
/* Builds an address from wire bytes (4 or 16; a v4-mapped v6 address becomes 4 bytes). */
int gossip_addr_from_bytes(const uint8_t *ip, size_t len, uint16_t port, struct gossip_addr *out);

#endif
