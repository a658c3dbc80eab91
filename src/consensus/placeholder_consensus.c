/* placeholder */ typedef int concord_placeholder_consensus;
