"""The ``nimbus`` command-line client (entry point: :func:`nimbus.cli.main.main`)."""
