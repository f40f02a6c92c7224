"""mailstream.gateway."""
