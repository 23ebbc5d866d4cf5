"""The ``sentimentalyzer`` command: one entry point for every process of the service (sentimentalyzer/cli.py)."""
