/* ui.c -- serves the embedded web UI at /ui/ and Consul's index page at "/".
 *
 * As Consul's agent (agent/http.go Index, agent/uiserver): "/" redirects (301) to /ui/ when
 * the UI is on and otherwise answers 200 with a line saying it is off; other paths nobody
 * serves stay 404 with an empty body (Concord's answer for unknown paths). /ui/ exists only
 * when the UI is on, so with it off /ui/ is 404 as in Consul. A path under /ui/ naming no
 * file gets index.html (the app routes in the browser); ".../index.html" redirects to its
 * directory as Go's FileServer does. Paths arrive decoded and cleaned by the HTTP server
 * (any "..", "//" or "." was already redirected to its clean form) and only the embedded
 * table is looked up, so nothing outside it can be named.
 *
 * Caching: file names carry no content hash, so every answer says Cache-Control no-cache and
 * carries an ETag (a hash computed at build time): browsers revalidate and get 304 while the
 * binary is the same. The HTML also gets a Content-Security-Policy allowing only this
 * origin's scripts, styles and fetches, a second wall behind the app's own escaping. */
#include "api/ui.h"

#include <string.h>

#include "api/internal.h"
#include "lib/buf.h"

/* Consul's text when the UI is off (agent/http.go Index). */
#define UI_DISABLED_TEXT                                                                      \
  "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent "           \
  "configuration and restart."

#define UI_CSP                                                                                \
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
  "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "             \
  "frame-ancestors 'none'"

const char *api_ui_content_type(const char *path)
{
  static const struct {
    const char *ext;
    const char *type;
  } types[] = {
    /* the types Go's mime package gives these extensions */
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/vnd.microsoft.icon"},
    {".txt", "text/plain; charset=utf-8"},
  };
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  if (dot) {
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
      if (strcmp(dot, types[i].ext) == 0) return types[i].type;
  }
  return "application/octet-stream";
}

const struct api_ui_asset *api_ui_find(const char *path)
{
  for (size_t i = 0; i < api_ui_assets_count; i++)
    if (strcmp(api_ui_assets[i].path, path) == 0) return &api_ui_assets[i];
  return NULL;
}

const struct api_ui_asset *api_ui_resolve(const char *tail)
{
  const struct api_ui_asset *a = api_ui_find(tail);
  if (!a) a = api_ui_find("index.html");
  /* index.html is part of the build (embed_ui.cmake fails without files, the tests check
   * it is there); the first file stands in should someone remove it */
  return a ? a : &api_ui_assets[0];
}

/* Does If-None-Match (a list of ETags, or "*") name etag? */
static bool ui_etag_matches(const char *inm, const char *etag)
{
  if (!inm) return false;
  if (strcmp(inm, "*") == 0) return true;
  return strstr(inm, etag) != NULL; /* our ETags are quoted hex: no false substring hits */
}

static void ui_redirect(struct http_request *req, const char *location)
{
  http_set_header(req, "Location", location);
  /* Go's http.Redirect: a short HTML body for GET and HEAD; location is ours, no escaping */
  struct buf body = BUF_INIT;
  if (req->method == HTTP_M_GET || req->method == HTTP_M_HEAD)
    buf_printf(&body, "<a href=\"%s\">Moved Permanently</a>.\n\n", location);
  http_respond_buf(req, 301, body.len ? "text/html; charset=utf-8" : NULL, &body);
}

static void ui_serve(struct http_request *req, void *arg)
{
  (void)arg;
  const char *tail = req->tail;
  size_t tlen = strlen(tail);
  /* Go's FileServer: ".../index.html" redirects to ".../" */
  static const char idx[] = "index.html";
  size_t ilen = sizeof idx - 1;
  if (tlen >= ilen && strcmp(tail + tlen - ilen, idx) == 0 &&
      (tlen == ilen || tail[tlen - ilen - 1] == '/')) {
    struct buf loc = BUF_INIT;
    buf_printf(&loc, "/ui/%.*s", (int)(tlen - ilen), tail);
    ui_redirect(req, loc.data);
    buf_free(&loc);
    return;
  }
  const struct api_ui_asset *a = api_ui_resolve(tail);
  const char *ctype = api_ui_content_type(a->path);
  http_set_header(req, "ETag", a->etag);
  http_set_header(req, "Cache-Control", "no-cache");
  http_set_header(req, "X-Content-Type-Options", "nosniff");
  if (strncmp(ctype, "text/html", 9) == 0) {
    http_set_header(req, "Content-Security-Policy", UI_CSP);
    http_set_header(req, "X-Frame-Options", "DENY");
  }
  if (ui_etag_matches(http_header(req, "If-None-Match"), a->etag)) {
    http_respond(req, 304, NULL, NULL, 0);
    return;
  }
  http_respond(req, 200, ctype, a->data, a->len);
}

/* "/" with the UI on: Consul's index redirects to the UI. Other paths no route takes: 404. */
static void ui_index_on(struct http_request *req, void *arg)
{
  (void)arg;
  if (strcmp(req->path, "/") != 0) {
    http_respond(req, 404, NULL, NULL, 0);
    return;
  }
  ui_redirect(req, "/ui/");
}

/* "/" with the UI off: a line saying what this server is and how to get the UI. */
static void ui_index_off(struct http_request *req, void *arg)
{
  (void)arg;
  if (strcmp(req->path, "/") != 0) {
    http_respond(req, 404, NULL, NULL, 0);
    return;
  }
  http_respond(req, 200, "text/plain; charset=utf-8", UI_DISABLED_TEXT,
               sizeof UI_DISABLED_TEXT - 1);
}

void api_ui_register(struct api_ctx *ctx)
{
  /* Decided once, at start: as in Consul, turning the UI on or off takes a restart (a reload
   * leaves "/" and "/ui/" as they were, so they never disagree).
   * "/" is a prefix route matching every path no longer route takes: the handlers keep those
   * at 404, whatever the method (Consul's index handler takes any method too). */
  bool on = ctx->cfg->ui;
  http_server_route(ctx->http, HTTP_M_ANY, "/", on ? ui_index_on : ui_index_off, NULL);
  if (on) http_server_route(ctx->http, HTTP_M_GET | HTTP_M_HEAD, "/ui/", ui_serve, NULL);
}
