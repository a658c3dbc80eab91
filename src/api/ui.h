/* ui.h -- the web UI at /ui/ (Consul's ui_config.enabled / -ui): the files under ui/ in the
 * repository, embedded into the binary at build time (cmake/embed_ui.cmake generates the
 * table below), served from memory with their Content-Type and an ETag. Paths under /ui/
 * that name no file get index.html, so the single-page app's own routes (/ui/dc1/services)
 * load it, as Consul's UI server does. */
#ifndef CONCORD_API_UI_H
#define CONCORD_API_UI_H

#include <stddef.h>

#include "api/api.h"

struct api_ui_asset {
  const char *path;          /* relative to ui/: "index.html", "app.js" */
  const unsigned char *data; /* static; NUL after the last byte */
  size_t len;
  const char *etag;          /* quoted content hash, as the ETag header carries it */
};

/* Generated at build time (ui_assets.c in the build directory). */
extern const struct api_ui_asset api_ui_assets[];
extern const size_t api_ui_assets_count;

/* The Content-Type for a file name by its extension (application/octet-stream if unknown). */
const char *api_ui_content_type(const char *path);
/* The embedded file at exactly this path (relative to ui/), or NULL. */
const struct api_ui_asset *api_ui_find(const char *path);
/* What GET /ui/<tail> serves: the file named tail, else index.html (the app's own routes,
 * directories, anything unknown). Never NULL. Only the embedded table is consulted, so no
 * tail reaches outside it. */
const struct api_ui_asset *api_ui_resolve(const char *tail);

/* Registers "/" (Consul's index: 301 to /ui/ when the UI is on, else a line saying it is
 * off) and, when ctx->cfg->ui, "/ui/". */
void api_ui_register(struct api_ctx *ctx);

#endif
