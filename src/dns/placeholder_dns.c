/* placeholder until dns lands */ typedef int concord_placeholder_dns;
