"""Mirror: choose torrents to seed within a budget, download, seed, verify, fetch a track."""
