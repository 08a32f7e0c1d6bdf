"""Phoenix: deploy applications the Phoenix-server way."""
