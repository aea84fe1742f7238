"""Conformance testing with packetdrill: real, unmodified packetdrill drives a fresh
rumpnet kernel per script through its ``--so_filename`` interface.

* ``rumpdrill.c``/``rumpdrill_tool.c``: the shared object packetdrill loads and the
  kernel tools its backtick lines run (C, built once into a cache: :mod:`.build`);
* :mod:`.serve`, :mod:`.session`, :mod:`.syscalls`, :mod:`.tools`: the kernel side;
* :mod:`.runner`, :mod:`.cli`: ``rump_packetdrill``.
"""
