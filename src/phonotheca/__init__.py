"""Phonotheca: build, publish, mirror and serve an open music preservation archive."""

__version__ = "0.1.0"
