/* version.h -- Concord's version, and the Consul API level it implements.
 *
 * Tools that read /v1/agent/self sometimes gate features on Consul's version, so the agent
 * reports CONCORD_CONSUL_VERSION there (docs/compatibility.md says so) and its own version in
 * the Revision field and in `concord version`. */
#ifndef CONCORD_VERSION_H
#define CONCORD_VERSION_H

#define CONCORD_VERSION "0.1.0"
#define CONCORD_CONSUL_VERSION "1.17.0"
#define CONCORD_PROTOCOL_DEFAULT 2
#define CONCORD_PROTOCOL_MIN 2
#define CONCORD_PROTOCOL_MAX 3

#endif
