"""Pure Pacemaker core: model, parser, merge, health rules and diff. No I/O here."""
