"""The library functions behind the other subcommands: plan, rollback, export, status, validate."""
