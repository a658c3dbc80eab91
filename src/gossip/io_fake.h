/* io_fake.h -- a simulated network for the gossip protocol: many members in one process, on
 * virtual time, with packet loss, delay, partitions and crashed members (the test double of
 * io_uv.c, as canonical raft's fixture or tarantool's swim_test_transport).
 *
 * Everything is deterministic for a given seed: events run in (time, insertion) order and each
 * member draws from its own seeded generator. UDP packets are lost with the configured
 * probability; streams (TCP) are reliable and in order, but cut by partitions and crashes. A
 * connect to a crashed member is refused after one delay; one across a partition is never
 * answered (the caller's timeout fires), as with real sockets. */
#ifndef CONCORD_GOSSIP_IO_FAKE_H
#define CONCORD_GOSSIP_IO_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/io.h"

struct fakenet;

struct fakenet *fakenet_new(uint64_t seed);
/* Frees the network and every io it made (the protocol objects on them must be freed first). */
void fakenet_free(struct fakenet *n);
/* A new member endpoint at addr; owned by the network. */
struct gossip_io *fakenet_add(struct fakenet *n, const struct gossip_addr *addr);

void fakenet_set_loss(struct fakenet *n, double udp_loss);
void fakenet_set_delay(struct fakenet *n, uint64_t min_ms, uint64_t max_ms);
/* Members in different groups cannot reach each other (group 0 is everyone's default). */
void fakenet_set_group(struct fakenet *n, struct gossip_io *io, int group);
/* Starves a member of CPU: it runs only during the first run_ms of every period_ms; packets,
 * stream events and its own timers wait for the next run (0 period: never starved). */
void fakenet_set_starved(struct fakenet *n, struct gossip_io *io, uint64_t period_ms, uint64_t run_ms);
/* Crashes a member: nothing reaches it and nothing it sends leaves. */
void fakenet_kill(struct fakenet *n, struct gossip_io *io);

uint64_t fakenet_now(const struct fakenet *n);
/* Runs every event due up to t (virtual ms), then sets the clock to t. */
void fakenet_run_until(struct fakenet *n, uint64_t t);

struct fakenet_stats {
  uint64_t packets_sent, packets_lost, packets_delivered, bytes_delivered, streams_opened, events;
};
void fakenet_stats(const struct fakenet *n, struct fakenet_stats *out);

#endif
