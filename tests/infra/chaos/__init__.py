"""The chaos run: the real stack under SIGKILLs (`run.py`), its clients, its witness of the topics and its tally.

Used by `tests/chaos/` (the short form, asserted in CI) and `bench/chaos.py` (the long form, a table), so it
must not import pytest.
"""
