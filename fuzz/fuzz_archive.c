/* fuzz_archive.c -- libFuzzer target for the snapshot archive reader (src/archive/archive.c).
 *
 * Archives come from users (PUT /v1/snapshot, `snapshot restore`, `snapshot inspect`), so any
 * bytes must give CC_ECORRUPT/CC_ETOOBIG with a sentence and nothing handed back, or an
 * archive whose state.bin is within the cap and whose metadata matches it; never a crash, a
 * leak or a sanitizer report. A good archive written again reads back the same. Seeds:
 * fuzz/corpus/archive/, written by tests/unit/test_archive.c (CONCORD_ARCHIVE_CORPUS=dir). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archive.h"
#include "lib/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct archive_meta m;
  struct buf st = BUF_INIT;
  char err[256];
  int rc = archive_read(data, size, 1 << 20, &m, &st, err, sizeof err);
  if (rc != 0) {
    if ((rc != CC_ECORRUPT && rc != CC_ETOOBIG) || !err[0] || st.len) abort();
  } else {
    if (st.len > (1 << 20) || m.size != st.len || m.version != 1) abort();
    struct buf gz = BUF_INIT, st2 = BUF_INIT;
    struct archive_meta m2;
    archive_write(&gz, &m, st.data, st.len, 0);
    if (archive_read(gz.data, gz.len, 1 << 20, &m2, &st2, err, sizeof err) != 0) abort();
    if (st2.len != st.len || (st.len && memcmp(st.data, st2.data, st.len)) ||
        strcmp(m.id, m2.id) || m.index != m2.index || m.term != m2.term)
      abort();
    buf_free(&gz);
    buf_free(&st2);
  }
  buf_free(&st);
  return 0;
}
