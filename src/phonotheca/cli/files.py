"""Commands for audio files: import files (scan, match, cover art), synth audio."""
