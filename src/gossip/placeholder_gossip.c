/* placeholder until gossip lands */ typedef int concord_placeholder_gossip;
