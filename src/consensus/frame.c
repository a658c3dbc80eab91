/* frame.c -- the padding around a command in a Raft log entry (layout in internal.h): libraft
 * 0.15 can only read back entries whose length is a multiple of 8. */
#include <stdint.h>
#include <string.h>

#include "consensus/internal.h"

size_t consensus__framed_len(size_t cmd_len)
{
  return (cmd_len + 1 + 7) & ~(size_t)7;
}

void consensus__frame(void *out, const void *cmd, size_t len)
{
  size_t total = consensus__framed_len(len);
  uint8_t *p = out;
  memcpy(p, cmd, len);
  memset(p + len, 0, total - len);
  p[total - 1] = (uint8_t)(total - len);
}

long consensus__unframe(const void *entry, size_t len)
{
  const uint8_t *p = entry;
  if (len == 0 || len % 8 != 0 || len > CONSENSUS_MAX_COMMAND + 8) return -1;
  size_t pad = p[len - 1];
  if (pad < 1 || pad > 8 || pad > len) return -1;
  for (size_t i = len - pad; i < len - 1; i++) {
    if (p[i] != 0) return -1;
  }
  return (long)(len - pad);
}
