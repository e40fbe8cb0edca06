"""Commands: serve: the web site, JSON API and Subsonic API (issue 8)."""
