"""Commands: publish, torrents scrape/health/suggest, serve-files (issue 6)."""
