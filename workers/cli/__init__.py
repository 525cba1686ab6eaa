"""The ``stat-guard`` command: start the fleet's processes, register models, run drift
now, show the latest verdicts, clear a flag. One module per command group; docs/fleet.md,
"Command line"."""
