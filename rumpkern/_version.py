"""The version of the rumpnet distribution (rumpkern and rumpnet): its one source.

pyproject.toml reads it (``[tool.setuptools.dynamic]``); ``rumpnet.__version__`` and
every program's ``--version`` print it.
"""

__version__ = "0.1.0"
