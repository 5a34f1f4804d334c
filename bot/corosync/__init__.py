"""Pure Corosync core: models, parsers for corosync-quorumtool / pvecm status / corosync-cfgtool,
and membership health rules. No I/O here."""
