"""shmif: NetBSD's shared-memory file bus (shmif(4)), an L2 segment between processes.

``ShmifBus`` is the bus file itself, ``ShmifDriver`` the LinkDriver of a ``shmifN``
interface, ``rumpnet.shmif.dumpbus`` the ``shmif_dumpbus`` command.
"""

from rumpnet.shmif.if_shmif import ShmifDriver
from rumpnet.shmif.shmif_bus import (
    BUSMEM_DATASIZE,
    BUSMEM_SIZE,
    SHMIF_MAGIC,
    SHMIF_VERSION,
    ShmifBus,
    ShmifBusError,
)

__all__ = [
    "BUSMEM_DATASIZE",
    "BUSMEM_SIZE",
    "SHMIF_MAGIC",
    "SHMIF_VERSION",
    "ShmifBus",
    "ShmifBusError",
    "ShmifDriver",
]
