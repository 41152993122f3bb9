"""klconform: the harness — cases, worker pool, verdicts, reports and the command line."""
__version__ = "0.1.0"
