"""Commands: user add/passwd/token: accounts in state.sqlite3 (issue 8)."""
