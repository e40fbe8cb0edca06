"""The build stage's packing library: tar volumes, the index, the bag, and validation.

A collection is a BagIt bag whose payload is deterministic tar volumes plus
``data/index.jsonl`` (docs/FORMAT.md, "Collections (bags of tar volumes)").
"""

from phonotheca.build.bag import (
    BagFile,
    BagInfo,
    PackedCollection,
    PackItem,
    PayloadPlan,
    pack_collection,
    plan_payload,
)
from phonotheca.build.index import METADATA_FIELDS, IndexEntry, read_index
from phonotheca.build.tarvolume import (
    DEFAULT_VOLUME_SIZE,
    ByteSink,
    PackedMember,
    PackError,
    VolumeFile,
    VolumeWriter,
    member_name,
    plan_volumes,
)
from phonotheca.build.validate import CollectionCheck, Problem, validate_collection

__all__ = [
    "DEFAULT_VOLUME_SIZE",
    "METADATA_FIELDS",
    "BagFile",
    "BagInfo",
    "ByteSink",
    "CollectionCheck",
    "IndexEntry",
    "PackError",
    "PackItem",
    "PackedCollection",
    "PackedMember",
    "PayloadPlan",
    "Problem",
    "VolumeFile",
    "VolumeWriter",
    "member_name",
    "pack_collection",
    "plan_payload",
    "plan_volumes",
    "read_index",
    "validate_collection",
]
