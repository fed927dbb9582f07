"""Per-package readers for the shipped real-data extracts (used by ``suites/build_data.py``)."""
