/* test_config.c -- config/: defaults, flags, JSON files and directories, precedence, and a
 * clear error for every kind of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/log.h"

static int load(struct config *cfg, char *err, size_t errlen, int argc, char **argv)
{
  return config_load(argc, argv, cfg, err, errlen);
}

#define LOAD(cfg, err, ...)                                                     \
  load(cfg, err, sizeof err, (int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)), \
       (char *[]){__VA_ARGS__})

static void write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_dev_defaults(void **state)
{
  (void)state;
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-dev"), 0);
  assert_true(c.server);
  assert_int_equal(c.bootstrap_expect, 1);
  assert_string_equal(c.bind_addr, "127.0.0.1");
  assert_string_equal(c.client_addrs[0], "127.0.0.1");
  assert_string_equal(c.datacenter, "dc1");
  assert_int_equal(c.port_http, 8500);
  assert_int_equal(c.port_dns, 8600);
  assert_int_equal(c.kv_max_value_size, 512 * 1024);
  assert_null(c.data_dir);
  config_free(&c);
}

static void test_flag_forms(void **state)
{
  (void)state;
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-server", "-bootstrap-expect=3", "--data-dir", "/tmp/x",
                        "-node=n1", "-client", "127.0.0.2 127.0.0.3", "-http-port", "-1",
                        "-datacenter", "EU-West", "-node-meta", "rack:r1"),
                   0);
  assert_true(c.server);
  assert_int_equal(c.bootstrap_expect, 3);
  assert_string_equal(c.data_dir, "/tmp/x");
  assert_string_equal(c.node_name, "n1");
  assert_string_equal(c.client_addrs[1], "127.0.0.3");
  assert_null(c.client_addrs[2]);
  assert_int_equal(c.port_http, -1);
  assert_string_equal(c.datacenter, "eu-west");
  assert_string_equal(json_string_value(json_object_get(c.node_meta, "rack")), "r1");
  config_free(&c);
}

static void test_errors(void **state)
{
  (void)state;
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-nope"), -1);
  assert_non_null(strstr(err, "flag provided but not defined: -nope"));
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-server"), -1); /* no data dir */
  assert_non_null(strstr(err, "data_dir"));
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-http-port", "70000"), -1);
  assert_non_null(strstr(err, "invalid port"));
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-log-level", "loud"), -1);
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-node"), -1);
  assert_non_null(strstr(err, "flag needs an argument"));
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-data-dir", "/tmp/x", "-bootstrap-expect=3"), -1);
  assert_non_null(strstr(err, "server"));
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-datacenter", "bad dc!"), -1);
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-node-id", "xyz"), -1);
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "stray"), -1);
  config_free(&c);
}

/* The WAN pool's join settings: repeatable flags, Consul's JSON keys, the interval. */
static void test_wan_join(void **state)
{
  (void)state;
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-join-wan", "10.0.0.1", "-join-wan=10.0.0.2:8302",
                        "-retry-join-wan", "10.1.0.1", "-retry-interval-wan", "5s"),
                   0);
  assert_string_equal(c.start_join_wan[0], "10.0.0.1");
  assert_string_equal(c.start_join_wan[1], "10.0.0.2:8302");
  assert_null(c.start_join_wan[2]);
  assert_string_equal(c.retry_join_wan[0], "10.1.0.1");
  assert_null(c.retry_join_wan[1]);
  assert_int_equal(c.retry_interval_wan_ns, 5000000000LL);
  assert_null(c.start_join[0]); /* the LAN list is its own */
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev"), 0);
  assert_null(c.start_join_wan[0]);
  assert_int_equal(c.retry_interval_wan_ns, 30000000000LL);
  config_free(&c);
  char dir[] = "/tmp/concord-cfg-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char f[256];
  snprintf(f, sizeof f, "%s/wan.json", dir);
  write_file(f, "{\"start_join_wan\": [\"a\", \"b\"], \"retry_join_wan\": [\"c\"],"
                " \"retry_interval_wan\": \"1m\"}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", f), 0);
  assert_string_equal(c.start_join_wan[1], "b");
  assert_string_equal(c.retry_join_wan[0], "c");
  assert_int_equal(c.retry_interval_wan_ns, 60000000000LL);
  config_free(&c);
  remove(f);
  rmdir(dir);
}

static void test_files_and_precedence(void **state)
{
  (void)state;
  char dir[] = "/tmp/concord-cfg-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char a[256], b[256], hcl[256];
  snprintf(a, sizeof a, "%s/10-base.json", dir);
  snprintf(b, sizeof b, "%s/20-more.json", dir);
  write_file(a, "{\"datacenter\": \"one\", \"node_name\": \"from-file\", \"ports\": {\"http\": 9500},"
                " \"limits\": {\"kv_max_value_size\": 1024}, \"server\": true, \"data_dir\": \"/tmp/d\"}");
  write_file(b, "{\"datacenter\": \"two\", \"log_level\": \"warn\", \"retry_join\": [\"x\"]}");
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-node", "from-flag", "-config-dir", dir), 0);
  assert_string_equal(c.datacenter, "two");        /* later file wins */
  assert_string_equal(c.node_name, "from-flag");   /* flags win over files, wherever they stand */
  assert_int_equal(c.port_http, 9500);
  assert_int_equal(c.kv_max_value_size, 1024);
  assert_true(c.server);
  /* reload reads the same sources again */
  struct config fresh;
  assert_int_equal(config_reload(&c, &fresh, err, sizeof err), 0);
  assert_string_equal(fresh.datacenter, "two");
  config_free(&fresh);
  config_free(&c);

  write_file(b, "{\"datacenter\": 5}");
  assert_int_equal(LOAD(&c, err, "agent", "-config-dir", dir), -1);
  assert_non_null(strstr(err, "datacenter has the wrong type"));
  assert_non_null(strstr(err, "20-more.json"));
  config_free(&c);
  write_file(b, "{\"not_a_consul_key\": 1}");
  assert_int_equal(LOAD(&c, err, "agent", "-config-file", b), -1);
  assert_non_null(strstr(err, "invalid config key not_a_consul_key"));
  config_free(&c);
  write_file(b, "{\"ports\": {\"http\": \"x\"}}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", b), -1);
  assert_non_null(strstr(err, "ports.http"));
  config_free(&c);
  write_file(b, "{\"datacenter\": \"x\",}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", b), -1);
  assert_non_null(strstr(err, "invalid JSON"));
  config_free(&c);
  write_file(b, "[1,2]");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", b), -1);
  config_free(&c);
  snprintf(hcl, sizeof hcl, "%s/30.hcl", dir);
  write_file(b, "{}");
  write_file(hcl, "datacenter = \"x\"");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-dir", dir), -1);
  assert_non_null(strstr(err, "HCL"));
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", "/nonexistent/x.json"), -1);
  config_free(&c);
  unlink(a);
  unlink(b);
  unlink(hcl);
  rmdir(dir);
}

static void test_dns_settings(void **state)
{
  (void)state;
  char path[] = "/tmp/concord-dnscfg-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  write_file(path, "{\"recursors\": [\"127.0.0.9\", \"127.0.0.10:5353\"], \"ports\": {\"grpc\": 8502},"
                   " \"dns_config\": {\"node_ttl\": \"10s\", \"only_passing\": true,"
                   " \"udp_answer_limit\": 5, \"service_ttl\": {\"*\": \"5s\", \"web\": \"1m\"},"
                   " \"soa\": {\"min_ttl\": 30}, \"prefer_namespace\": true},"
                   " \"translate_wan_addrs\": true}");
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", path, "-recursor", "127.0.0.11"), 0);
  assert_string_equal(c.recursors[0], "127.0.0.9");
  assert_string_equal(c.recursors[1], "127.0.0.10:5353");
  assert_string_equal(c.recursors[2], "127.0.0.11");
  assert_null(c.recursors[3]);
  assert_int_equal(c.dns_node_ttl_ns, 10000000000LL);
  assert_true(c.dns_only_passing);
  assert_int_equal(c.dns_udp_answer_limit, 5);
  assert_int_equal(c.dns_soa_min_ttl, 30);
  assert_true(c.translate_wan_addrs);
  assert_string_equal(json_string_value(json_object_get(c.dns_service_ttl, "web")), "1m");
  config_free(&c);
  /* Defaults as Consul's. */
  assert_int_equal(LOAD(&c, err, "agent", "-dev"), 0);
  assert_int_equal(c.dns_udp_answer_limit, 3);
  assert_int_equal(c.dns_node_ttl_ns, 0);
  assert_false(c.translate_wan_addrs);
  assert_null(c.recursors[0]);
  config_free(&c);
  write_file(path, "{\"dns_config\": {\"node_ttl\": \"soon\"}}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", path), -1);
  assert_non_null(strstr(err, "dns_config.node_ttl"));
  config_free(&c);
  write_file(path, "{\"dns_config\": {\"service_ttl\": {\"web\": 5}}}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", path), -1);
  config_free(&c);
  write_file(path, "{\"recursors\": \"127.0.0.1\"}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", path), -1);
  assert_non_null(strstr(err, "recursors has the wrong type"));
  config_free(&c);
  unlink(path);
}

/* Gossip encryption: encrypt (flag and file), encrypt_verify_*, disable_keyring_file. */
static void test_encrypt_settings(void **state)
{
  (void)state;
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-data-dir", "/tmp/x"), 0);
  assert_null(c.encrypt_key);
  assert_true(c.encrypt_verify_incoming);
  assert_true(c.encrypt_verify_outgoing);
  assert_false(c.disable_keyring_file);
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev"), 0);
  assert_true(c.disable_keyring_file); /* Consul's dev mode keeps nothing on disk */
  config_free(&c);
  const char *k32 = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-encrypt", (char *)k32), 0);
  assert_string_equal(c.encrypt_key, k32);
  config_free(&c);
  char path[] = "/tmp/concord-enccfg-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  write_file(path, "{\"encrypt\": \"AAECAwQFBgcICQoLDA0ODw==\", \"encrypt_verify_incoming\": false,"
                   " \"encrypt_verify_outgoing\": false, \"disable_keyring_file\": true}");
  assert_int_equal(LOAD(&c, err, "agent", "-data-dir", "/tmp/x", "-config-file", path), 0);
  assert_string_equal(c.encrypt_key, "AAECAwQFBgcICQoLDA0ODw==");
  assert_false(c.encrypt_verify_incoming);
  assert_false(c.encrypt_verify_outgoing);
  assert_true(c.disable_keyring_file);
  config_free(&c);
  unlink(path);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-encrypt", "not base64!"), -1);
  assert_string_equal(err, "encrypt has invalid key: illegal base64 data");
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-encrypt", "AAAA"), -1);
  assert_string_equal(err, "encrypt has invalid key: key size must be 16, 24 or 32 bytes");
  config_free(&c);
}

/* disable_remote_exec: Consul's default is true (exec is opt-in); a config-file key only. */
static void test_disable_remote_exec(void **state)
{
  (void)state;
  char path[] = "/tmp/concord-execcfg-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  struct config c;
  char err[512];
  assert_int_equal(LOAD(&c, err, "agent", "-dev"), 0);
  assert_true(c.disable_remote_exec);
  config_free(&c);
  write_file(path, "{\"disable_remote_exec\": false}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", path), 0);
  assert_false(c.disable_remote_exec);
  config_free(&c);
  write_file(path, "{\"disable_remote_exec\": \"no\"}");
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-config-file", path), -1);
  assert_non_null(strstr(err, "disable_remote_exec"));
  config_free(&c);
  assert_int_equal(LOAD(&c, err, "agent", "-dev", "-disable-remote-exec=false"), -1);
  config_free(&c);
  unlink(path);
}

int main(void)
{
  log_set_level(LOG_ERROR); /* the "not supported yet" warnings are expected here */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dev_defaults),
      cmocka_unit_test(test_flag_forms),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_files_and_precedence),
      cmocka_unit_test(test_wan_join),
      cmocka_unit_test(test_dns_settings),
      cmocka_unit_test(test_encrypt_settings),
      cmocka_unit_test(test_disable_remote_exec),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
