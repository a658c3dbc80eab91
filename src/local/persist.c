/* persist.c -- API registrations in the data dir, so they survive a restart (Consul's
 * persistService, persistCheck, persistCheckState and loadServices/loadChecks).
 *
 *   <data_dir>/services/<sha256(id)>      {"Token", "Service": {...}, "Source": "remote"}
 *   <data_dir>/checks/<sha256(id)>        {"Token", "Check": {...}, "ChkType": {...}, "Source"}
 *   <data_dir>/checks/state/<sha256(id)>  {"CheckID", "Status", "Output", "Expires"}
 *
 * File names hash the ID (as Consul's do) so any ID is a safe name. Definitions are written
 * atomically: a temporary file, fsync, rename, fsync of the directory, so a crash leaves the
 * old file or the new one. TTL check state is rewritten on every TTL update, so, as Consul, it
 * is renamed into place without the fsyncs: losing the last update costs one TTL. Services and
 * checks from config files are never written here; a maintenance check is (Consul persists
 * it), with no ChkType. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/file.h"
#include "lib/log.h"
#include "local/internal.h"

#define PERSIST_MAX_FILE (4u << 20)

void local__restore_maint(struct local_agent *la, const char *id, const char *name,
                          const char *notes, const char *service_id);

static void id_hash(const char *id, char out[65])
{
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(id, strlen(id), md, &len, EVP_sha256(), NULL);
  for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int mkdirs(const char *dir)
{
  char *p = xstrdup(dir);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      free(p);
      return -1;
    }
    *s = '/';
  }
  int rv = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
  free(p);
  return rv;
}

static void path_of(struct local_agent *la, char *out, size_t outlen, const char *sub,
                     const char *id)
{
  char h[65];
  id_hash(id, h);
  snprintf(out, outlen, "%s/%s/%s", la->data_dir, sub, h);
}

/* file_write_atomic with the error as a sentence. */
static int write_atomic(const char *path, const char *data, size_t len, bool sync, char *err,
                        size_t errlen)
{
  int e = file_write_atomic(path, data, len, sync);
  if (e == 0) return 0;
  snprintf(err, errlen, "failed writing %s: %s", path, strerror(e));
  return -1;
}

static int write_json(struct local_agent *la, const char *sub, const char *id, json_t *j,
                      bool sync, char *err, size_t errlen)
{
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/%s", la->data_dir, sub);
  if (mkdirs(dir) != 0) {
    snprintf(err, errlen, "failed creating %s: %s", dir, strerror(errno));
    json_decref(j);
    return -1;
  }
  path_of(la, path, sizeof path, sub, id);
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  int rv = write_atomic(path, text, strlen(text), sync, err, errlen);
  free(text);
  return rv;
}

int local__persist_service(struct local_agent *la, const struct local_service_def *d,
                           enum local_source src, char *err, size_t errlen)
{
  if (!la->data_dir) return 0;
  json_t *j = json_object();
  json_object_set_new(j, "Token", json_string(d->token));
  json_object_set_new(j, "Service", local__service_def_json(d));
  json_object_set_new(j, "Source", json_string(src == LOCAL_SRC_API ? "remote" : "local"));
  return write_json(la, "services", d->id, j, true, err, errlen);
}

int local__persist_check(struct local_agent *la, const struct local_check_def *d,
                         const struct local_chk *c, enum local_source src, char *err,
                         size_t errlen)
{
  if (!la->data_dir || !c) return 0;
  json_t *chk = json_object();
  json_object_set_new(chk, "CheckID", json_string(c->id));
  json_object_set_new(chk, "Name", json_string(c->name));
  json_object_set_new(chk, "Notes", json_string(c->notes));
  json_object_set_new(chk, "ServiceID", json_string(c->service_id));
  json_object_set_new(chk, "Type", json_string(c->type));
  json_object_set_new(chk, "Interval", json_string(c->interval));
  json_object_set_new(chk, "Timeout", json_string(c->timeout));
  json_t *j = json_object();
  json_object_set_new(j, "Check", chk);
  if (d) json_object_set_new(j, "ChkType", local__check_def_json(d));
  json_object_set_new(j, "Token", json_string(c->token ? c->token : ""));
  json_object_set_new(j, "Source", json_string(src == LOCAL_SRC_API ? "remote" : "local"));
  return write_json(la, "checks", c->id, j, true, err, errlen);
}

static void purge(struct local_agent *la, const char *sub, const char *id)
{
  if (!la->data_dir) return;
  char path[4200];
  path_of(la, path, sizeof path, sub, id);
  if (unlink(path) != 0 && errno != ENOENT)
    log_warn("agent", "failed removing %s: %s", path, strerror(errno));
}

void local__purge_service(struct local_agent *la, const char *id)
{
  purge(la, "services", id);
}

void local__purge_check(struct local_agent *la, const char *id)
{
  purge(la, "checks", id);
  purge(la, "checks/state", id);
}

void local__persist_check_state(struct local_agent *la, const struct local_chk *c, int64_t ttl_ns)
{
  if (!la->data_dir) return;
  json_t *j = json_object();
  json_object_set_new(j, "CheckID", json_string(c->id));
  json_object_set_new(j, "Status", json_string(c->status));
  json_object_set_new(j, "Output", json_string(c->output));
  json_object_set_new(j, "Expires", json_integer((json_int_t)(time(NULL) + ttl_ns / 1000000000LL)));
  char err[512];
  if (write_json(la, "checks/state", c->id, j, false, err, sizeof err) != 0)
    log_warn("agent", "failed persisting state for check \"%s\": %s", c->id, err);
}

static json_t *read_json(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || st.st_size > (off_t)PERSIST_MAX_FILE) {
    fclose(f);
    return NULL;
  }
  json_error_t jerr;
  json_t *j = json_loadf(f, 0, &jerr);
  fclose(f);
  return j;
}

int local__load_check_state(struct local_agent *la, const char *id, char **status, char **output)
{
  *status = *output = NULL;
  if (!la->data_dir) return -1;
  char path[4200];
  path_of(la, path, sizeof path, "checks/state", id);
  json_t *j = read_json(path);
  if (!j) return -1;
  json_t *st = json_object_get(j, "Status"), *out = json_object_get(j, "Output"),
         *exp = json_object_get(j, "Expires");
  int rv = -1;
  if (!json_is_string(st) || !json_is_integer(exp) || !local__status_valid(json_string_value(st))) {
    log_error("agent", "failed decoding check state %s", path);
    unlink(path);
  } else if ((json_int_t)time(NULL) >= json_integer_value(exp)) {
    log_debug("agent", "check state expired, not restoring: check=%s", id);
    unlink(path);
  } else {
    *status = xstrdup(json_string_value(st));
    *output = xstrdup(json_is_string(out) ? json_string_value(out) : "");
    rv = 0;
  }
  json_decref(j);
  return rv;
}

static enum local_source source_of(json_t *j)
{
  json_t *s = json_object_get(j, "Source");
  return json_is_string(s) && strcmp(json_string_value(s), "local") == 0 ? LOCAL_SRC_CONFIG
                                                                          : LOCAL_SRC_API;
}

static const char *jstr(json_t *o, const char *k)
{
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : "";
}

/* The regular files of dir, sorted (so restores are deterministic). Caller frees. */
static char **list_dir(const char *dir, size_t *n)
{
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return NULL;
  size_t cap = 16;
  char **names = xcalloc(cap, sizeof *names);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    size_t len = strlen(e->d_name);
    if (len >= 3 && strcmp(e->d_name + len - 3, "tmp") == 0) continue; /* partial writes */
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (*n + 1 >= cap) names = xrealloc(names, (cap *= 2) * sizeof *names);
    names[(*n)++] = xstrdup(path);
  }
  closedir(d);
  for (size_t a = 1; a < *n; a++)
    for (size_t b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
      char *t = names[b];
      names[b] = names[b - 1];
      names[b - 1] = t;
    }
  return names;
}

void local__restore(struct local_agent *la, local_restore_svc_fn svc_fn,
                    local_restore_chk_fn chk_fn)
{
  if (!la->data_dir) return;
  char dir[4096], err[512];
  size_t n;
  snprintf(dir, sizeof dir, "%s/services", la->data_dir);
  char **files = list_dir(dir, &n);
  for (size_t i = 0; i < n; i++) {
    json_t *j = read_json(files[i]);
    json_t *svc = j ? json_object_get(j, "Service") : NULL;
    struct local_service_def *d = svc ? local__service_def_decode(svc, err, sizeof err) : NULL;
    if (!d || !*d->id) {
      log_error("agent", "Failed decoding service file %s", files[i]);
      local__service_def_free(d);
    } else {
      local__set(&d->token, jstr(j, "Token"));
      svc_fn(la, d, source_of(j), files[i]);
    }
    json_decref(j);
    free(files[i]);
  }
  free(files);
  snprintf(dir, sizeof dir, "%s/checks", la->data_dir);
  files = list_dir(dir, &n);
  for (size_t i = 0; i < n; i++) {
    json_t *j = read_json(files[i]);
    json_t *chk = j ? json_object_get(j, "Check") : NULL;
    json_t *ct = j ? json_object_get(j, "ChkType") : NULL;
    if (!json_is_object(chk) || !*jstr(chk, "CheckID")) {
      log_error("agent", "Failed decoding check file %s", files[i]);
    } else if (!json_is_object(ct)) {
      /* A maintenance check. */
      local__restore_maint(la, jstr(chk, "CheckID"), jstr(chk, "Name"), jstr(chk, "Notes"),
                           jstr(chk, "ServiceID"));
    } else {
      struct local_check_def *d = local__check_def_decode(ct, "CheckType", err, sizeof err);
      if (!d) {
        log_error("agent", "Failed decoding check file %s: %s", files[i], err);
      } else {
        local__set(&d->id, jstr(chk, "CheckID"));
        local__set(&d->name, jstr(chk, "Name"));
        local__set(&d->notes, jstr(chk, "Notes"));
        local__set(&d->service_id, jstr(chk, "ServiceID"));
        local__set(&d->token, jstr(j, "Token"));
        chk_fn(la, d, source_of(j), files[i], jstr(chk, "Interval"), jstr(chk, "Timeout"));
      }
    }
    json_decref(j);
    free(files[i]);
  }
  free(files);
}
