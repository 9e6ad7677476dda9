"""Build the compiled speedups; everything else is in pyproject.toml.

The extension is not optional: a build that can't compile it fails loudly
instead of shipping the slower pure-Python twins without a word.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tidewire._speedups",
            sources=["src/tidewire/_speedups.c"],
            extra_compile_args=["-O3"],
            optional=False,
        )
    ]
)
