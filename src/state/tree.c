/* tree.c -- AVL tree of intrusive, key-ordered nodes (see tree.h for why AVL).
 *
 * Insert and remove are recursive: the depth is the tree height (<= 1.44 log2 n, about 40
 * for 100 million rows), and rebalancing on the way back up is the textbook form, which is
 * easier to check than the parent-pointer form. Iteration uses an explicit stack. */
#include "state/tree.h"

#include <assert.h>
#include <string.h>

int state__tree_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int node_cmp(const char *key, size_t len, const struct state__tnode *n)
{
  return state__tree_cmp(key, len, n->key, n->key_len);
}

static int32_t height(const struct state__tnode *n) { return n ? n->height : 0; }

static void fix_height(struct state__tnode *n)
{
  int32_t l = height(n->child[0]), r = height(n->child[1]);
  n->height = 1 + (l > r ? l : r);
}

/* Rotates n so that its child on side !dir comes up; dir 1 is a right rotation. */
static struct state__tnode *rotate(struct state__tnode *n, int dir)
{
  struct state__tnode *c = n->child[!dir];
  n->child[!dir] = c->child[dir];
  c->child[dir] = n;
  fix_height(n);
  fix_height(c);
  return c;
}

static struct state__tnode *balance(struct state__tnode *n)
{
  fix_height(n);
  int32_t bf = height(n->child[0]) - height(n->child[1]);
  if (bf > 1) {
    struct state__tnode *l = n->child[0];
    if (height(l->child[0]) < height(l->child[1])) n->child[0] = rotate(l, 0);
    return rotate(n, 1);
  }
  if (bf < -1) {
    struct state__tnode *r = n->child[1];
    if (height(r->child[1]) < height(r->child[0])) n->child[1] = rotate(r, 1);
    return rotate(n, 0);
  }
  return n;
}

struct state__tnode *state__tree_find(struct state__tnode *n, const char *key, size_t len)
{
  while (n) {
    int c = node_cmp(key, len, n);
    if (!c) return n;
    n = n->child[c > 0];
  }
  return NULL;
}

static struct state__tnode *insert_rec(struct state__tnode *n, struct state__tnode *node)
{
  if (!n) {
    node->child[0] = node->child[1] = NULL;
    node->height = 1;
    return node;
  }
  int c = node_cmp(node->key, node->key_len, n);
  assert(c != 0);
  n->child[c > 0] = insert_rec(n->child[c > 0], node);
  return balance(n);
}

void state__tree_insert(struct state__tnode **root, struct state__tnode *node)
{
  *root = insert_rec(*root, node);
}

void state__tree_replace(struct state__tnode **root, struct state__tnode *old,
                         struct state__tnode *fresh)
{
  struct state__tnode **pp = root;
  while (*pp != old) {
    assert(*pp);
    pp = &(*pp)->child[node_cmp(old->key, old->key_len, *pp) > 0];
  }
  fresh->child[0] = old->child[0];
  fresh->child[1] = old->child[1];
  fresh->height = old->height;
  *pp = fresh;
}

static struct state__tnode *remove_min(struct state__tnode *n, struct state__tnode **min)
{
  if (!n->child[0]) {
    *min = n;
    return n->child[1];
  }
  n->child[0] = remove_min(n->child[0], min);
  return balance(n);
}

static struct state__tnode *remove_rec(struct state__tnode *n, const char *key, size_t len,
                                       struct state__tnode **out)
{
  if (!n) return NULL;
  int c = node_cmp(key, len, n);
  if (c) {
    n->child[c > 0] = remove_rec(n->child[c > 0], key, len, out);
    return *out ? balance(n) : n;
  }
  *out = n;
  if (!n->child[0]) return n->child[1];
  if (!n->child[1]) return n->child[0];
  /* Two children: the successor (leftmost of the right subtree) takes n's place. */
  struct state__tnode *succ;
  struct state__tnode *right = remove_min(n->child[1], &succ);
  succ->child[0] = n->child[0];
  succ->child[1] = right;
  return balance(succ);
}

struct state__tnode *state__tree_remove(struct state__tnode **root, const char *key, size_t len)
{
  struct state__tnode *out = NULL;
  *root = remove_rec(*root, key, len, &out);
  if (out) out->child[0] = out->child[1] = NULL;
  return out;
}

void state__tree_seek(struct state__titer *it, struct state__tnode *n, const char *key,
                      size_t len)
{
  /* Every node passed on the way down whose key is >= key is a candidate; the stack keeps
   * them with the smallest on top. Nodes < key are skipped with their left subtrees. */
  it->depth = 0;
  while (n) {
    if (node_cmp(key, len, n) <= 0) {
      assert(it->depth < STATE__TREE_MAX_HEIGHT);
      it->stack[it->depth++] = n;
      n = n->child[0];
    } else {
      n = n->child[1];
    }
  }
}

struct state__tnode *state__tree_next(struct state__titer *it)
{
  if (!it->depth) return NULL;
  struct state__tnode *n = it->stack[--it->depth];
  for (struct state__tnode *m = n->child[1]; m; m = m->child[0]) {
    assert(it->depth < STATE__TREE_MAX_HEIGHT);
    it->stack[it->depth++] = m;
  }
  return n;
}

/* Returns the subtree's height, or -1; counts nodes into *count and checks that every key
 * lies strictly between lo and hi (NULL: unbounded). */
static int32_t check_rec(const struct state__tnode *n, const struct state__tnode *lo,
                         const struct state__tnode *hi, long *count)
{
  if (!n) return 0;
  if (lo && state__tree_cmp(lo->key, lo->key_len, n->key, n->key_len) >= 0) return -1;
  if (hi && state__tree_cmp(n->key, n->key_len, hi->key, hi->key_len) >= 0) return -1;
  int32_t l = check_rec(n->child[0], lo, n, count);
  int32_t r = check_rec(n->child[1], n, hi, count);
  if (l < 0 || r < 0) return -1;
  if (l - r > 1 || r - l > 1) return -1;
  int32_t h = 1 + (l > r ? l : r);
  if (h != n->height) return -1;
  (*count)++;
  return h;
}

long state__tree_check(const struct state__tnode *root)
{
  long count = 0;
  if (check_rec(root, NULL, NULL, &count) < 0) return -1;
  return count;
}
