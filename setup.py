"""Build the compiled speedups; everything else is in pyproject.toml.

- ``tidewire._speedups``: hand-written C (masking);
- ``tidewire.protocol._reader_c``: ``protocol/reader.py`` itself, compiled by
  Cython with the C types of ``_reader_c.pxd``, so there is one source;
- ``tidewire.protocol._connection_c``: ``protocol/connection.py``, the same way.

Neither is optional: a build that can't compile them fails loudly instead of
shipping the slower pure-Python twins without a word.
"""

import shutil
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

PROTOCOL = Path("src/tidewire/protocol")
COMPILED = {"reader": "_reader_c", "connection": "_connection_c"}
for source, name in COMPILED.items():
    shutil.copyfile(PROTOCOL / f"{source}.py", PROTOCOL / f"{name}.py")

setup(
    ext_modules=[
        Extension(
            "tidewire._speedups",
            sources=["src/tidewire/_speedups.c"],
            extra_compile_args=["-O3"],
            optional=False,
        ),
        *cythonize(
            [
                Extension(f"tidewire.protocol.{name}", [str(PROTOCOL / f"{name}.py")])
                for name in COMPILED.values()
            ],
            compiler_directives={
                "language_level": 3,
                "annotation_typing": False,
                "wraparound": False,
            },
            quiet=True,
        ),
    ]
)
