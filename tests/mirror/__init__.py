"""Tests of the mirror: choosing, downloading and seeding, resume, verify, fetch."""
