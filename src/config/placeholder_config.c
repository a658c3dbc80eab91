/* placeholder */ typedef int concord_placeholder_config;
