"""One adapter per framework KL-loss API; see adapters/base.py for the interface."""
