"""The `abscopal` command line: one module per subcommand, heavy imports inside commands."""
