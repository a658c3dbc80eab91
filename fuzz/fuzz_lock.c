/* fuzz_lock.c -- `concord lock`'s decoder of the semaphore entry `<prefix>/.lock`, which any
 * contender (or anyone with write access to the prefix) may have written: decode, edit, prune,
 * encode, and check that what we write decodes back to the same holders. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/lock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char err[CLI__ERRLEN];
  struct cli__sem s;
  if (cli__sem_decode((const char *)data, size, 2, &s, err, sizeof(err)) == 0) {
    cli__sem_add(&s, "fuzz-session");
    if (s.n > 1) cli__sem_remove(&s, s.h[0].session);
    struct cli__kvpair pair;
    memset(&pair, 0, sizeof(pair));
    pair.key = (char *)"p/fuzz-session";
    pair.session = (char *)"fuzz-session";
    if (size & 1) cli__sem_prune(&s, &pair, 1);
    struct buf b = BUF_INIT;
    cli__sem_encode(&s, &b);
    struct cli__sem back;
    if (cli__sem_decode(b.data, b.len, 2, &back, err, sizeof(err)) != 0) abort();
    if (back.n != s.n || back.limit != s.limit) abort();
    for (size_t i = 0; i < s.n; i++)
      if (strcmp(back.h[i].session, s.h[i].session) != 0 || back.h[i].value != s.h[i].value)
        abort();
    cli__sem_free(&back);
    buf_free(&b);
  }
  cli__sem_free(&s);
  return 0;
}
