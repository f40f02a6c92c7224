"""mailstream.scheduler."""
