"""Build the compiled speedups; everything else is in pyproject.toml.

- ``tidewire._speedups``: hand-written C (masking);
- ``tidewire.protocol._reader_c``: ``protocol/reader.py`` itself, compiled by
  Cython with the C types of ``_reader_c.pxd``, so there is one source;
- ``tidewire.protocol._connection_c``: ``protocol/connection.py``, the same way;
- ``tidewire.asyncio._connection_c`` and ``_messages_c``: the asyncio layer's
  per-message path, ``asyncio/connection.py`` and ``asyncio/messages.py``, the
  same way, with their attributes in C structs (the ``.pxd`` files).

None is optional: a build that can't compile them fails loudly instead of
shipping the slower pure-Python twins without a word.
"""

import os
import shutil
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

PACKAGE = Path("src/tidewire")
JOBS = os.cpu_count() or 1  # Cython and the C compiler, one module per core
# source module -> its compiled twin, in the same package
COMPILED = {
    "protocol.reader": "_reader_c",
    "protocol.connection": "_connection_c",
    "asyncio.connection": "_connection_c",
    "asyncio.messages": "_messages_c",
}


def twin(source: str) -> tuple[str, Path]:
    """The compiled twin's module name and the path of its copied source."""
    package = source.rpartition(".")[0]
    name = f"tidewire.{package}.{COMPILED[source]}"
    return name, PACKAGE / package / f"{COMPILED[source]}.py"


for source in COMPILED:
    shutil.copyfile(PACKAGE / f"{source.replace('.', '/')}.py", twin(source)[1])

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
                Extension(name, [str(path)])
                for name, path in map(twin, COMPILED)
            ],
            compiler_directives={
                "language_level": 3,
                "annotation_typing": False,
                "wraparound": False,
            },
            quiet=True,
            nthreads=JOBS,
        ),
    ],
    options={"build_ext": {"parallel": JOBS}},
)
