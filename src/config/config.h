/* config.h -- the agent's configuration: Consul's defaults, then JSON config files (Consul's
 * key names) in the order given, then command-line flags (Consul's names), each later source
 * overriding the earlier ones. Every bad value is an error with a sentence naming the source
 * and the key; keys Consul has that Concord does not implement yet are warnings (logged), and
 * keys Consul does not have are errors, as Consul's "invalid config key" is. */
#ifndef CONCORD_CONFIG_CONFIG_H
#define CONCORD_CONFIG_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config {
  bool dev;
  bool server;
  bool bootstrap;
  unsigned bootstrap_expect;
  char *datacenter;  /* lower-cased, as Consul does */
  char *node_name;
  char *node_id;     /* "" until the agent loads or creates <data_dir>/node-id */
  char *data_dir;    /* NULL in -dev mode (the agent makes a temporary one) */
  char *bind_addr;
  char **client_addrs; /* -client: space-separated list; NULL-terminated */
  char *domain;      /* "consul." */
  char *alt_domain;
  char *log_level;
  int port_http;     /* -1 disables */
  int port_dns;
  int port_server;
  int port_serf_lan;
  int port_serf_wan;
  uint64_t kv_max_value_size;  /* limits.kv_max_value_size, 512 KiB */
  uint64_t txn_max_req_len;    /* limits.txn_max_req_len, 512 KiB */
  unsigned http_max_conns;     /* limits.http_max_conns_per_client (we apply it per agent) */
  unsigned raft_snapshot_threshold; /* 16384 */
  unsigned raft_trailing_logs;      /* 10240 */
  unsigned raft_multiplier;         /* performance.raft_multiplier, 1..10, default 1 (Consul: 5) */
  bool ui;
  json_t *node_meta;  /* object of string -> string */
  char **recursors;   /* upstream DNS servers, NULL-terminated */
  bool enable_script_checks;       /* script checks from the API and files (off: RCE risk) */
  bool enable_local_script_checks; /* script checks from config files only */
  bool disable_remote_exec;        /* `consul exec` jobs refused (Consul's default: true) */
  int64_t check_update_interval_ns; /* output-only check changes sync this often (5m) */
  /* The parsed config documents that define services or checks ("service", "services",
   * "check", "checks"): an array of {"source": path, "doc": document}, in load order, for
   * the agent's local state (src/local) to read. */
  json_t *local_docs;
  /* "watches": every watch of every file, in load order, each checked at load by
   * watch_spec_parse (agent form): an array of {"source": path, "index": i, "watch": object}
   * for agent/watches.c to parse again and run. */
  json_t *watches;
  char **start_join;  /* -join: joined once at start, NULL-terminated */
  char **retry_join;  /* -retry-join: retried every retry_interval until one succeeds */
  int64_t retry_interval_ns;
  unsigned retry_max; /* 0: retry forever */
  /* The WAN pool (servers only): -join-wan once at start, -retry-join-wan until it works. */
  char **start_join_wan;
  char **retry_join_wan;
  int64_t retry_interval_wan_ns;
  /* dns_config.* (Consul's names and defaults) */
  int64_t dns_node_ttl_ns;
  json_t *dns_service_ttl; /* object of service name ("*" and "prefix*" allowed) -> duration */
  bool dns_only_passing;
  bool dns_enable_truncate;
  unsigned dns_udp_answer_limit;
  unsigned dns_a_record_limit;
  bool dns_allow_stale;
  int64_t dns_max_stale_ns;
  int64_t dns_recursor_timeout_ns;
  bool dns_node_meta_txt;
  unsigned dns_soa_refresh, dns_soa_retry, dns_soa_expire, dns_soa_min_ttl;
  /* translate_wan_addrs: DNS answers for other datacenters' nodes carry their WAN addresses
   * (Consul also rewrites HTTP catalog answers; Concord's DNS only). */
  bool translate_wan_addrs;
  /* Gossip encryption (Consul's keys): the -encrypt key (base64, checked), whether to insist
   * on encrypted traffic each way, and whether to keep <data_dir>/serf/local.keyring. */
  char *encrypt_key;
  bool encrypt_verify_incoming, encrypt_verify_outgoing;
  bool disable_keyring_file;
  char **config_sources; /* the -config-file/-config-dir arguments; NULL-terminated */
  int argc;              /* a copy of the command line, so reload applies the same precedence */
  char **argv;
};

/* Parses argv (argv[0] is "agent") and the config files it names into cfg. Returns 0, 1 when
 * -h/-help was given (usage printed), or -1 with a sentence in errbuf. cfg is always safe to
 * pass to config_free afterwards. */
int config_load(int argc, char **argv, struct config *cfg, char *errbuf, size_t errlen);
void config_free(struct config *cfg);
/* Loads the configuration again from the same command line and files (for SIGHUP and
 * /v1/agent/reload) into fresh. Returns 0, or -1 with a sentence in errbuf. */
int config_reload(const struct config *running, struct config *fresh, char *errbuf,
                  size_t errlen);
/* Applies one JSON document (a file's contents) on top of cfg; `source` names it in errors. */
int config_apply_json(struct config *cfg, const char *text, size_t len, const char *source,
                      char *errbuf, size_t errlen);
/* Prints the agent's flags (`concord agent -h`). */
void config_usage(void);

#endif
