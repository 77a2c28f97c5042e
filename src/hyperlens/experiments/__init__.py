"""End-to-end pipelines; each module is one ``hyperlens`` subcommand."""
