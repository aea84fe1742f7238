"""rumpnet.router's configuration: values are typed strictly and applied as written."""

from __future__ import annotations

from typing import Any

import pytest

from rumpnet.router import ConfigError, apply_config


def _cfg(**top: Any) -> dict[str, Any]:
    return {"interface": [{"name": "wire0", "link": "rc-seg", "address": "10.4.1.1/24"}], **top}


def test_forwarding_false_turns_forwarding_off_and_true_on(vnet: Any) -> None:
    k = vnet.kernel(1)
    apply_config(k, _cfg(forwarding=False))
    assert k.config.sysctl_get("net.inet.ip.forwarding") == 0
    k2 = vnet.kernel(2)
    apply_config(k2, {"interface": [{"name": "wire0", "link": "rc-seg2", "address": "10.4.2.1/24"}]})
    assert k2.config.sysctl_get("net.inet.ip.forwarding") == 1  # the default


def test_reject_and_blackhole_routes_take_the_loopback_gateway(vnet: Any) -> None:
    k = vnet.kernel(1)
    apply_config(k, _cfg(route=[{"destination": "10.66.0.0/16", "reject": True},
                                {"destination": "10.9.0.0/16", "gateway": "10.4.1.7"}]))
    out = k.netstat("-rn")
    assert any(line.startswith("10.66/16") and "127.0.0.1" in line and "R" in line.split()[2] for line in out.splitlines())
    assert any(line.startswith("10.9/16") and "10.4.1.7" in line for line in out.splitlines())


@pytest.mark.parametrize("cfg, message", [
    (_cfg(forwarding="no"), "forwarding: must be true or false, not 'no'"),
    (_cfg(forwarding=1), "forwarding: must be true or false, not 1"),
    (_cfg(route=[{"destination": "10.9.0.0/16"}]), "route[0].gateway: missing"),
    (_cfg(hostnme="r"), "hostnme: unknown field (did you mean 'hostname'?)"),
    ({"interface": [{"name": "eth0", "address": "10.4.1.1/24"}]}, "interface[0].name: 'eth0' is not an interface"),
    ({"interface": [{"name": "wire0", "address": "10.4.1.1/24", "mtu": True}]}, "interface[0].mtu: must be an integer"),
    ({"interface": "wire0"}, "interface: must be an array"),
])
def test_bad_configurations_name_the_field_and_apply_nothing(vnet: Any, cfg: dict[str, Any], message: str) -> None:
    k = vnet.kernel(1)
    with pytest.raises(ConfigError) as ei:
        apply_config(k, cfg)
    assert str(ei.value).startswith(message), str(ei.value)
    assert [ifp.name for ifp in k.ifnet.all()] == ["lo0"]  # nothing was applied
