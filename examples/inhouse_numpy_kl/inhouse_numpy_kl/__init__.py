"""An "in-house framework" (a numpy KL loss) and its klconform adapter (``adapter.py``)."""
__version__ = "0.1.0"
