"""virtif: ``virtN`` interfaces bound to host tap devices (NetBSD's rump virtif)."""

from rumpnet.virtif.hostif import tun_features
from rumpnet.virtif.if_virt import VirtifDriver

__all__ = ["VirtifDriver", "tun_features"]
