"""Commands: mirror, mirror status, verify, fetch (issue 7)."""
