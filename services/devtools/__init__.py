"""Tools for running mailstream locally and in tests: the capture sink."""
