"""Import commands for open metadata: MusicBrainz release documents, listen counts."""
