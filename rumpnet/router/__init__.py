"""The virtual IP router: a rump kernel forwarding between host taps (``virtN``), shmif
buses (``shmifN``) and in-process wires (``wireN``), configured from a TOML file.

``rump_router`` (:func:`rumpnet.router.main.main`) is the program; :func:`apply_config`
configures a kernel you booted yourself::

    from rumpkern import rump_init
    from rumpnet.router import apply_config

    k = rump_init(clock="virtual", hostname="r1")
    apply_config(k, {"interface": [{"name": "wire0", "link": "seg-a", "address": "10.0.1.1/24"}]})
"""

from rumpnet.router.config import EXAMPLE_CONFIG, ConfigError, apply_config, validate

__all__ = ["EXAMPLE_CONFIG", "ConfigError", "apply_config", "validate"]
