"""Audio files: probe tags and stream properties (mutagen), check they are whole, fingerprint."""

from phonotheca.audio.probe import (
    AUDIO_EXTENSIONS,
    Picture,
    Probe,
    ProbeError,
    StreamInfo,
    Tags,
    probe_file,
    read_tags,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "Picture",
    "Probe",
    "ProbeError",
    "StreamInfo",
    "Tags",
    "probe_file",
    "read_tags",
]
