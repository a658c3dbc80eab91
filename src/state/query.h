/* query.h -- prepared queries: Consul's "prepared-queries" table (agent/consul/state/
 * prepared_query.go), its templates (prepared_query/template.go) and the local part of
 * executing one (PreparedQuery.execute in agent/consul/prepared_query_endpoint.go).
 *
 * A query is kept as Consul prints it (structs.PreparedQuery, fields in Go's order, no
 * indexes): state_query_normalize turns any decoded body into that form, checking types as
 * Go's decoder does. Rules, as Consul's state store:
 *   - the ID is a UUID chosen by the proposer; names are unique (case-insensitive) and may
 *     not equal another query's ID; one template at most has the empty name;
 *   - a Session, when set, must exist, and destroying the session deletes the query;
 *   - a template (Template.Type "name_prefix_match") compiles: its Regexp (POSIX extended
 *     syntax, which covers the usual Go expressions but not \d, (?i) or lazy quantifiers)
 *     and every string of its Service part, which may use ${name.full}, ${name.prefix},
 *     ${name.suffix}, ${match(N)} and ${agent.segment} ("$${" is a literal "${").
 * Resolving a name: a UUID finds the query with that ID (a template only by name), then an
 * exact name, then the template with the longest name that prefixes it (the empty-named one
 * matches everything); a template is rendered for the name asked.
 *
 * Pointers and JSON trees returned are the caller's (new references) unless said otherwise. */
#ifndef CONCORD_STATE_QUERY_H
#define CONCORD_STATE_QUERY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "state/catalog.h"

struct state_store;

#define STATE_QUERY_TABLE "prepared-queries" /* table index and STATE_WATCH_TABLE name */
#define STATE_QUERY_MAX 4096                 /* queries in the table */
#define STATE_QUERY_MAX_JSON (64 * 1024)     /* one query as JSON */

/* Go's decoding of a structs.PreparedQuery from any JSON value: a new object in Consul's
 * shape (ID kept, indexes dropped), or NULL with "json: cannot unmarshal ..." in err. */
json_t *state_query_normalize(const json_t *in, char *err, size_t errlen);

/* The store's checks for setting query q (normalized) under id, without writing: 0, or
 * CC_EINVAL with Consul's sentence ("name 'x' aliases an existing query name", "invalid
 * session \"...\"", "failed compiling template: Bad Template.Type 'x'", ...). */
int state_query_check(struct state_store *s, const char *id, const json_t *q, char *err,
                      size_t errlen);

/* PreparedQuerySet / PreparedQueryDelete at Raft index `index` (the FSM). q_json is the
 * normalized query as JSON text (its ID is replaced by id). Set keeps CreateIndex on an
 * update; delete of an absent ID changes nothing. Both move the table index and fire the
 * table's watches when they change something. 0, or CC_EINVAL (with err) and no change. */
int state_query_set(struct state_store *s, uint64_t index, const char *id, const char *q_json,
                    size_t len, char *err, size_t errlen);
int state_query_delete(struct state_store *s, uint64_t index, const char *id, char *err,
                       size_t errlen);

/* The query with this ID, with CreateIndex and ModifyIndex; NULL when absent. */
json_t *state_query_get(struct state_store *s, const char *id);
/* Every query, by ID (an array, possibly empty). */
json_t *state_query_list(struct state_store *s);
size_t state_query_count(const struct state_store *s);

/* PreparedQueryResolve: 0 and *out (the query, rendered when a template), CC_ENOTFOUND, or
 * CC_EINVAL with a sentence in err (a template asked by ID, a render that fails). */
int state_query_resolve(struct state_store *s, const char *id_or_name, json_t **out, char *err,
                        size_t errlen);

/* The local part of an execute: the instances of the query's service that pass its filters
 * (health with OnlyPassing and IgnoreCheckIDs, NodeMeta, ServiceMeta, Tags with "!tag"
 * exclusions), in catalog order. *out is a malloc'd array of borrowed pointers (valid until
 * the next write) the caller frees; returns its length. */
size_t state_query_execute(struct state_store *s, const json_t *query,
                           const struct state_service ***out);

#endif
