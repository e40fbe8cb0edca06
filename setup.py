"""The one compiled module: two SHA-256 digests in one pass (src/phonotheca/_sha256pair.c).

Optional: where it cannot be built, packing hashes with hashlib instead (slower, same bytes).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "phonotheca._sha256pair",
            ["src/phonotheca/_sha256pair.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
