/* filter.h -- Consul's ?filter= expressions (hashicorp/go-bexpr, as Consul 1.17 uses it).
 *
 *   Service.Meta.version == "2" and not ("canary" in Service.Tags)
 *   Checks.Status != passing or Node.Meta["rack"] matches "^r[0-9]+$"
 *
 * Grammar (go-bexpr grammar.peg): `or` binds loosest, then `and`, then `not`; parentheses;
 * match expressions `<selector> == != <value>`, `<selector> contains / not contains <value>`,
 * `<selector> matches / not matches <value>`, `<selector> is empty / is not empty`,
 * `<value> in / not in <selector>`. Selectors are dotted identifiers with map indexing
 * (Meta.env, Meta["env"]) or JSON pointers in quotes ("/Service/Meta/env"). Values are
 * numbers, "double-quoted" or `raw` strings, or bare words (Status == passing).
 *
 * An expression is checked against a type (the Go struct Consul filters) when it is
 * created, as bexpr.CreateFilter does: unknown fields and operators a field does not
 * support are errors then, not silently false. Evaluation runs on a jansson tree of the row
 * in Consul's JSON shape (state/catalog.h builds them), with bexpr's semantics:
 *   - a selector through a list of structs (Checks.Status) matches if any element matches;
 *   - a missing map key makes ==, in, is not empty, matches false and their negations true;
 *   - `"x" in <string>` is a substring test, `"x" in <list>` membership, `"k" in <map>` a key;
 *   - numbers and booleans are compared after coercing the value to the field's type.
 * Regular expressions are POSIX extended with \d \D \w \W \s \S and a leading (?i), close to
 * Go's RE2 for what filters use. */
#ifndef CONCORD_FILTER_FILTER_H
#define CONCORD_FILTER_FILTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Longest expression accepted, and deepest nesting of parentheses/not. */
#define FILTER_MAX_EXPR (64 * 1024)
#define FILTER_MAX_DEPTH 64

enum filter_kind {
  FILTER_STRING,
  FILTER_INT,
  FILTER_FLOAT,
  FILTER_BOOL,
  FILTER_STRUCT, /* fields */
  FILTER_MAP,    /* string keys, elem values */
  FILTER_SLICE,  /* elem values */
};

struct filter_field;

/* The shape of a filterable Go type: what bexpr's FieldConfigurations describe. */
struct filter_type {
  enum filter_kind kind;
  const struct filter_type *elem;    /* MAP, SLICE */
  const struct filter_field *fields; /* STRUCT */
  size_t n_fields;
};

struct filter_field {
  const char *name; /* exact, case-sensitive, as bexpr matches struct fields */
  const struct filter_type *type;
};

struct filter;

/* Parses and validates expr against type. Returns the filter (caller frees with
 * filter_free) or NULL with bexpr's kind of message in err ("Selector \"Foo\" is not
 * valid", "1:5 (4): no match found, expected: ..."); the HTTP layer prefixes Consul's
 * "Failed to create boolean expression evaluator: ". expr is copied. */
struct filter *filter_new(const char *expr, const struct filter_type *type, char *err,
                          size_t errlen);
void filter_free(struct filter *f);

/* True if the row (a tree of the filter's type; borrowed) matches. */
bool filter_match(const struct filter *f, const json_t *row);

/* The types of Consul's filterable results (agent/structs, fields bexpr can see). */
extern const struct filter_type filter_type_node;               /* structs.Node */
extern const struct filter_type filter_type_service_node;       /* structs.ServiceNode */
extern const struct filter_type filter_type_node_service;       /* structs.NodeService */
extern const struct filter_type filter_type_health_check;       /* structs.HealthCheck */
extern const struct filter_type filter_type_check_service_node; /* structs.CheckServiceNode */

#endif
