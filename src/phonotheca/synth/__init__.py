"""Synthetic data for demos, tests and benchmarks: ``phonotheca synth ...``."""

from phonotheca.synth.catalog import SynthSummary, iter_jsonl, iter_track_records, write_catalog

__all__ = ["SynthSummary", "iter_jsonl", "iter_track_records", "write_catalog"]
