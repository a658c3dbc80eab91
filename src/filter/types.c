/* types.c -- the shapes of the Consul structs ?filter runs on, as bexpr sees them: exported
 * fields of agent/structs (Consul 1.17) minus those tagged `bexpr:"-"` (RaftIndex, i.e.
 * CreateIndex/ModifyIndex, EnterpriseMeta, Locality, a check's Definition, NodeService's
 * PeerName, the proxy's opaque Config). */
#include "filter/filter.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct filter_type t_string = {FILTER_STRING, NULL, NULL, 0};
static const struct filter_type t_int = {FILTER_INT, NULL, NULL, 0};
static const struct filter_type t_bool = {FILTER_BOOL, NULL, NULL, 0};
static const struct filter_type t_strings = {FILTER_SLICE, &t_string, NULL, 0};
static const struct filter_type t_string_map = {FILTER_MAP, &t_string, NULL, 0};

/* structs.ServiceAddress */
static const struct filter_field f_service_address[] = {{"Address", &t_string}, {"Port", &t_int}};
static const struct filter_type t_service_address = {FILTER_STRUCT, NULL, f_service_address,
                                                     N(f_service_address)};
static const struct filter_type t_service_addresses = {FILTER_MAP, &t_service_address, NULL, 0};

/* structs.Weights */
static const struct filter_field f_weights[] = {{"Passing", &t_int}, {"Warning", &t_int}};
static const struct filter_type t_weights = {FILTER_STRUCT, NULL, f_weights, N(f_weights)};

/* structs.MeshGatewayConfig */
static const struct filter_field f_mesh_gateway[] = {{"Mode", &t_string}};
static const struct filter_type t_mesh_gateway = {FILTER_STRUCT, NULL, f_mesh_gateway,
                                                  N(f_mesh_gateway)};

/* structs.TransparentProxyConfig */
static const struct filter_field f_tproxy[] = {{"OutboundListenerPort", &t_int},
                                               {"DialedDirectly", &t_bool}};
static const struct filter_type t_tproxy = {FILTER_STRUCT, NULL, f_tproxy, N(f_tproxy)};

/* structs.Upstream */
static const struct filter_field f_upstream[] = {
    {"DestinationType", &t_string},      {"DestinationNamespace", &t_string},
    {"DestinationPartition", &t_string}, {"DestinationPeer", &t_string},
    {"DestinationName", &t_string},      {"Datacenter", &t_string},
    {"LocalBindAddress", &t_string},     {"LocalBindPort", &t_int},
    {"LocalBindSocketPath", &t_string},  {"LocalBindSocketMode", &t_string},
    {"MeshGateway", &t_mesh_gateway},    {"CentrallyConfigured", &t_bool},
};
static const struct filter_type t_upstream = {FILTER_STRUCT, NULL, f_upstream, N(f_upstream)};
static const struct filter_type t_upstreams = {FILTER_SLICE, &t_upstream, NULL, 0};

/* structs.ExposeConfig / ExposePath */
static const struct filter_field f_expose_path[] = {{"ListenerPort", &t_int},
                                                    {"Path", &t_string},
                                                    {"LocalPathPort", &t_int},
                                                    {"Protocol", &t_string},
                                                    {"ParsedFromCheck", &t_bool}};
static const struct filter_type t_expose_path = {FILTER_STRUCT, NULL, f_expose_path,
                                                 N(f_expose_path)};
static const struct filter_type t_expose_paths = {FILTER_SLICE, &t_expose_path, NULL, 0};
static const struct filter_field f_expose[] = {{"Checks", &t_bool}, {"Paths", &t_expose_paths}};
static const struct filter_type t_expose = {FILTER_STRUCT, NULL, f_expose, N(f_expose)};

/* structs.ConnectProxyConfig */
static const struct filter_field f_proxy[] = {
    {"DestinationServiceName", &t_string}, {"DestinationServiceID", &t_string},
    {"LocalServiceAddress", &t_string},    {"LocalServicePort", &t_int},
    {"LocalServiceSocketPath", &t_string}, {"Mode", &t_string},
    {"TransparentProxy", &t_tproxy},       {"Upstreams", &t_upstreams},
    {"MeshGateway", &t_mesh_gateway},      {"Expose", &t_expose},
};
static const struct filter_type t_proxy = {FILTER_STRUCT, NULL, f_proxy, N(f_proxy)};

/* structs.ServiceConnect */
static const struct filter_field f_connect[] = {{"Native", &t_bool}};
static const struct filter_type t_connect = {FILTER_STRUCT, NULL, f_connect, N(f_connect)};

/* structs.Node */
static const struct filter_field f_node[] = {
    {"ID", &t_string},         {"Node", &t_string},     {"Address", &t_string},
    {"Datacenter", &t_string}, {"Partition", &t_string}, {"PeerName", &t_string},
    {"TaggedAddresses", &t_string_map}, {"Meta", &t_string_map},
};
const struct filter_type filter_type_node = {FILTER_STRUCT, NULL, f_node, N(f_node)};

/* structs.ServiceNode */
static const struct filter_field f_service_node[] = {
    {"ID", &t_string},
    {"Node", &t_string},
    {"Address", &t_string},
    {"Datacenter", &t_string},
    {"TaggedAddresses", &t_string_map},
    {"NodeMeta", &t_string_map},
    {"ServiceKind", &t_string},
    {"ServiceID", &t_string},
    {"ServiceName", &t_string},
    {"ServiceTags", &t_strings},
    {"ServiceAddress", &t_string},
    {"ServiceTaggedAddresses", &t_service_addresses},
    {"ServiceWeights", &t_weights},
    {"ServiceMeta", &t_string_map},
    {"ServicePort", &t_int},
    {"ServiceSocketPath", &t_string},
    {"ServiceEnableTagOverride", &t_bool},
    {"ServiceProxy", &t_proxy},
    {"ServiceConnect", &t_connect},
    {"PeerName", &t_string},
};
const struct filter_type filter_type_service_node = {FILTER_STRUCT, NULL, f_service_node,
                                                     N(f_service_node)};

/* structs.NodeService */
static const struct filter_field f_node_service[] = {
    {"Kind", &t_string},
    {"ID", &t_string},
    {"Service", &t_string},
    {"Tags", &t_strings},
    {"Address", &t_string},
    {"TaggedAddresses", &t_service_addresses},
    {"Meta", &t_string_map},
    {"Port", &t_int},
    {"SocketPath", &t_string},
    {"Weights", &t_weights},
    {"EnableTagOverride", &t_bool},
    {"Proxy", &t_proxy},
    {"Connect", &t_connect},
};
const struct filter_type filter_type_node_service = {FILTER_STRUCT, NULL, f_node_service,
                                                     N(f_node_service)};

/* structs.HealthCheck */
static const struct filter_field f_health_check[] = {
    {"Node", &t_string},        {"CheckID", &t_string},  {"Name", &t_string},
    {"Status", &t_string},      {"Notes", &t_string},    {"Output", &t_string},
    {"ServiceID", &t_string},   {"ServiceName", &t_string}, {"ServiceTags", &t_strings},
    {"Type", &t_string},        {"Interval", &t_string}, {"Timeout", &t_string},
    {"ExposedPort", &t_int},    {"PeerName", &t_string},
};
const struct filter_type filter_type_health_check = {FILTER_STRUCT, NULL, f_health_check,
                                                     N(f_health_check)};
static const struct filter_type t_health_checks = {FILTER_SLICE, &filter_type_health_check, NULL,
                                                   0};

/* structs.CheckServiceNode */
static const struct filter_field f_csn[] = {{"Node", &filter_type_node},
                                            {"Service", &filter_type_node_service},
                                            {"Checks", &t_health_checks}};
const struct filter_type filter_type_check_service_node = {FILTER_STRUCT, NULL, f_csn, N(f_csn)};
