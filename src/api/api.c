/* api.c -- registers every endpoint family on the agent's HTTP server. */
#include "api/internal.h"
#include "api/ui.h"

void api_register(struct api_ctx *ctx)
{
  api__blocking_init(ctx);
  api__forward_init(ctx);
  api_kv_register(ctx);
  api_status_register(ctx);
  api_agent_register(ctx);
  api_catalog_register(ctx);
  api_health_register(ctx);
  api_agent_services_register(ctx);
  api_operator_register(ctx);
  api_session_register(ctx);
  api_txn_register(ctx);
  api_keyring_register(ctx);
  api_query_register(ctx);
  api_event_register(ctx);
  api_snapshot_register(ctx);
  api_monitor_register(ctx);
  api_metrics_register(ctx);
  api_ui_register(ctx);
}

void api_shutdown(struct api_ctx *ctx)
{
  api__blocking_shutdown(ctx);
  api_metrics_shutdown(ctx);
}
