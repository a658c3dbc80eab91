/* tree.h -- the ordered index under the KV table and the graveyard (internal to state/).
 *
 * An AVL tree of intrusive nodes ordered by key bytes (memcmp order, a shorter key before
 * any key it is a prefix of). The node is the first member of its row, so a row is one
 * allocation: tree links, the row's fields, key and value bytes (see store.c).
 *
 * Why AVL: KV reads are prefix range scans (in-order walk from a lower bound) and single-key
 * lookups, and the store must stay compact (<= 1.5x raw data at 100k keys of 1 KB). An AVL
 * tree costs two child pointers and a height per row, gives a strict O(log n) bound (height
 * <= 1.44 log2 n, so a 64-entry iterator stack covers any tree that fits in memory) and keeps
 * rows in place, so a pointer a read returns stays valid until the next write. A radix tree
 * would make prefix lookups cheaper but costs an inner node per branching point; a skip list
 * costs more pointers per row on average.
 *
 * The tree never allocates or frees: callers own the nodes. */
#ifndef CONCORD_STATE_TREE_H
#define CONCORD_STATE_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct state__tnode {
  struct state__tnode *child[2]; /* [0] smaller keys, [1] larger keys */
  const char *key;               /* points into the row that embeds the node */
  uint32_t key_len;
  int32_t height; /* of the subtree rooted here; a leaf is 1 */
};

/* Deepest iterator stack needed: an AVL tree of height 64 has more than 2^44 nodes. */
#define STATE__TREE_MAX_HEIGHT 64

int state__tree_cmp(const char *a, size_t alen, const char *b, size_t blen);
struct state__tnode *state__tree_find(struct state__tnode *root, const char *key, size_t len);
/* Links node (with key/key_len set) into the tree; the key must not be present yet. */
void state__tree_insert(struct state__tnode **root, struct state__tnode *node);
/* Puts fresh in old's place (same key); old is unlinked, not freed. */
void state__tree_replace(struct state__tnode **root, struct state__tnode *old,
                         struct state__tnode *fresh);
/* Unlinks and returns the node with this key, or NULL; the caller frees it. */
struct state__tnode *state__tree_remove(struct state__tnode **root, const char *key, size_t len);

/* In-order iteration from a lower bound. The tree must not change during the walk. */
struct state__titer {
  struct state__tnode *stack[STATE__TREE_MAX_HEIGHT];
  int depth;
};
/* Positions it before the first node whose key is >= key (key NULL/len 0: the first node). */
void state__tree_seek(struct state__titer *it, struct state__tnode *root, const char *key,
                      size_t len);
/* The next node in order, or NULL at the end. */
struct state__tnode *state__tree_next(struct state__titer *it);

/* Checks the AVL invariants, the order and the stored heights; returns the node count, or
 * -1 when anything is wrong. For tests; walks the whole tree. */
long state__tree_check(const struct state__tnode *root);

static inline bool state__has_prefix(const char *key, size_t len, const char *prefix,
                                     size_t plen)
{
  return len >= plen && (plen == 0 || memcmp(key, prefix, plen) == 0);
}

#endif
