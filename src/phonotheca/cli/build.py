"""Commands: build and validate: pack the plan into collections and torrents (issue 5)."""
