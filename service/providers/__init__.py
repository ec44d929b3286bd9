"""One typed client per external API."""
