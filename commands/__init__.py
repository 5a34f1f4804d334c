"""Chat commands: one module per command, collected in an explicit registry."""
