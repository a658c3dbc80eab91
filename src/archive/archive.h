/* archive.h -- Consul's snapshot archive: a gzipped tar of meta.json (Raft's SnapshotMeta as
 * JSON), state.bin (the state, here the store's own encoding, state/store.h) and SHA256SUMS
 * (sha256sum lines for the other two), as Consul's snapshot/archive.go lays it out.
 *
 * The reader takes bytes from users and is fuzzed (fuzz/fuzz_archive.c): it inflates at most
 * max_state + ARCHIVE_SLACK bytes, accepts only those three regular files, checks every
 * header checksum, both hashes and the metadata (Version 1, Size = state.bin's length) before
 * it hands anything back. */
#ifndef CONCORD_ARCHIVE_H
#define CONCORD_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* What the tar adds around state.bin: headers, meta.json, SHA256SUMS, padding. */
#define ARCHIVE_SLACK (64 * 1024)

struct archive_meta {
  char id[96];      /* "<term>-<index>-<unix ms>", as hashicorp/raft names snapshots */
  uint64_t size;    /* state.bin's length */
  uint64_t index;   /* the store's index */
  uint64_t term;    /* the Raft term */
  uint64_t version; /* snapshot format: always 1 (raft's SnapshotVersionMax) */
};

/* Appends the gzipped archive to out (the caller owns out; state is only read). meta->size
 * is taken from len. mtime_s stamps the tar headers. */
void archive_write(struct buf *out, const struct archive_meta *meta, const void *state,
                   size_t len, int64_t mtime_s);

/* Reads an archive: 0 with *meta filled and state.bin appended to *state (the caller owns
 * it), or CC_ECORRUPT with a sentence in err, or CC_ETOOBIG when state.bin (or what
 * inflates) is over max_state; *state is then left empty. data is only read. */
int archive_read(const void *data, size_t len, size_t max_state, struct archive_meta *meta,
                 struct buf *state, char *err, size_t errlen);

#endif
