/* io_uv.h -- the gossip io (io.h) on a libuv loop: UDP and TCP bound to one address and port. */
#ifndef CONCORD_GOSSIP_IO_UV_H
#define CONCORD_GOSSIP_IO_UV_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gossip/io.h"

struct io_uv;

/* Binds TCP then UDP on bind (port 0: any free port, the same for both); *bound_port is the
 * port in use. On failure returns CC_EIO with a sentence in errbuf, and the half-made io frees
 * itself on the loop. */
int io_uv_open(uv_loop_t *loop, const struct gossip_addr *bind, struct io_uv **out,
               uint16_t *bound_port, char *errbuf, size_t errlen);
struct gossip_io *io_uv_io(struct io_uv *io);
/* Closes every handle; the io frees itself once they are closed, then done (may be NULL) runs.
 * No sink callback runs after this call. */
void io_uv_close(struct io_uv *io, void (*done)(void *arg), void *arg);

#endif
