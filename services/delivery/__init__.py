"""mailstream.delivery."""
