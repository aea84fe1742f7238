"""Scenario files (TOML): good ones build the network they describe, bad ones name the field."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rumpnet.faults.network import Network
from rumpnet.faults.scenario import ScenarioError, load

GOOD = """
seed = 9
schedule = ["at 1s partition a-r for 2s", "at 5s wan loss 10%"]

[hosts.a]
[hosts.r]
router = true
[hosts.b]
routes = [{ dst = "10.0.7.0/24", gateway = "10.0.2.1" }]
sysctl = { "net.inet.ip.ttl" = 32 }

[links.lan]
hosts = ["a", "r"]
netem = "delay 5ms"
loss = "1%"

[links.lan.directions."a->r"]
duplicate = "5%"

[links.wan]
hosts = ["r", "b"]
subnet = "10.0.2.0/24"
mtu = 1400
addresses = { b = "10.0.2.50" }

[proxies.web]
listen = "10.0.1.1:8080"
upstream = "10.0.2.50:80"
enabled = false
toxics = [{ type = "latency", attributes = { latency = 100 } }]
"""


def test_good_scenario_builds_everything(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    with Network.from_toml(path) as net:
        assert net.seed == 9 and list(net.hosts) == ["a", "r", "b"]
        lan, wan = net.link("lan"), net.link("wan")
        # the direction's table adds to the link-wide impairment (it used to replace it)
        assert lan.netem() == {"a->r": "limit 1000 delay 5ms loss 1% duplicate 5%", "r->a": "limit 1000 delay 5ms loss 1%"}
        assert wan.mtu == 1400 and net.host("b").addr() == "10.0.2.50" and net.host("r").addr("wan") == "10.0.2.1"
        assert net.host("b").kernel.config.sysctl_get("net.inet.ip.ttl") == 32
        assert any(rt["destination"] == "10.0.7.0/24" for rt in _routes(net.host("b")))
        assert net.proxies["web"].to_json()["toxics"][0]["attributes"] == {"latency": 100, "jitter": 0}
        assert len(net.schedules) == 1
        # traffic flows a -> b through the router
        a, b = net.host("a"), net.host("b")
        sa = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        sb = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        b.rump_sys_bind(sb, ("0.0.0.0", 9))
        a.rump_sys_sendto(sa, b"hi", 0, ("10.0.2.50", 9))
        assert b.rump_sys_recvfrom(sb, 10, 0)[0] == b"hi"
        net.run_for(2.0)
        assert lan.partitioned
        net.run_for(4.0)
        assert not lan.partitioned and wan.runners("r->b")[0].params.loss == 0.1


def _routes(h) -> list[dict]:  # noqa: ANN001
    from rumpnet.netconfig import describe_route

    return [describe_route(rt) for rt in h.kernel.config.routes()]


def test_text_and_seed_override() -> None:
    with Network.from_toml(GOOD, seed=3) as net:
        assert net.seed == 3


BASE = '[hosts.a]\n[hosts.b]\n[links.lan]\nhosts = ["a", "b"]\n'


@pytest.mark.parametrize("text, message", [
    (BASE + "loss = 1.5\n", "links.lan.loss: probability 150% is over 100%"),
    (BASE + 'loss = "150%"\n', "links.lan.loss: probability 150% is over 100%"),
    (BASE + 'netem = "delay 10ms distribution gauss"\n', "links.lan.netem:"),
    (BASE + 'distribution = "gauss"\n', "links.lan.distribution: unknown distribution"),
    (BASE + "rate = -5\n", "links.lan.rate: negative"),
    (BASE + "colour = 1\n", "links.lan.colour: not a netem parameter or link field"),
    (BASE + 'subnte = "10.0.1.0/24"\n', "links.lan.subnte: not a netem parameter or link field (did you mean 'subnet'?)"),
    ('[hosts.a]\nhostnme = "x"\n', "hosts.a.hostnme: unknown field (did you mean 'hostname'?)"),
    (BASE + 'subnet = "10.0.1.1/24"\n', "links.lan.subnet:"),
    (BASE + "mtu = 20\n", "links.lan.mtu:"),
    (BASE + 'addresses = { a = "10.9.9.9" }\n', "links.lan.addresses:"),
    (BASE + '[links.lan.directions."a->c"]\nloss = "1%"\n', "links.lan.directions.a->c: host 'c'"),
    ('[hosts.a]\n[links.lan]\nhosts = ["a", "z"]\n', "links.lan.hosts: no host 'z'"),
    ('[hosts.a]\nrouter = "yes"\n', "hosts.a.router: not a boolean"),
    ('[hosts.a]\nroutes = [{ dst = "x", gateway = "10.0.0.1" }]\n', "hosts.a.routes[0].dst"),
    ('seed = "x"\n', "seed: not an integer"),
    ('clock = "sundial"\n', "clock:"),
    ("frobnicate = 1\n", "frobnicate: unknown field"),
    ("[hosts\n", "toml:"),
    (BASE + 'schedule = "at 1s partition x-y"\n', "links.lan.schedule"),  # schedule must be top-level
    ('schedule = "at 1s partition x-y"\n' + BASE, "schedule:"),
    ('schedule = "at soon loss 1%"\n' + BASE, "schedule:"),
    (BASE + '[proxies.p]\nlisten = "10.0.1.1:99999"\nupstream = "10.0.1.2:80"\n', "proxies.p.listen: port"),
    (BASE + '[proxies.p]\nlisten = "10.0.1.1:80"\nupstream = "10.0.1.2:80"\n'
            'toxics = [{ type = "bandwidth", attributes = { rate = -1 } }]\n', "proxies.p.toxics[0].attributes.rate"),
    (BASE + '[proxies.p]\nlisten = "10.0.1.1:80"\nupstream = "10.0.1.2:80"\n'
            'toxics = [{ type = "latency", toxicity = 2.0 }]\n', "proxies.p.toxics[0].toxicity"),
])
def test_bad_scenarios_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        Network.from_toml(text)
    assert str(ei.value).startswith(message), str(ei.value)


def test_build_error_tears_down_what_was_built() -> None:
    # valid on paper, fails while building (a proxy on a host without the address is fine,
    # but a listen port taken twice is not): nothing is left behind
    text = BASE + ('[proxies.p]\nlisten = "10.0.1.1:80"\nupstream = "10.0.1.2:80"\n'
                   '[proxies.q]\nlisten = "10.0.1.1:80"\nupstream = "10.0.1.2:80"\n')
    with pytest.raises(ScenarioError, match=r"^proxies\.q: "):
        Network.from_toml(text)


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match="file: cannot read"):
        load(Path("/nonexistent/scenario.toml"))


# -- traps of issue 16 ---------------------------------------------------------------------
def test_a_bare_number_string_is_a_percentage_as_tc_reads_it() -> None:
    # loss = "1" used to be read as the fraction 1 (100% loss) while tc reads "loss 1" as 1%
    with Network.from_toml(BASE + 'loss = "1"\nduplicate = "2.5"\n') as net:
        p = net.link("lan").runners("a->b")[0].params
        assert (p.loss, p.duplicate) == (0.01, 0.025)
        net.link("lan").impair(loss="1")
        assert net.link("lan").runners("a->b")[0].params.loss == 0.01


@pytest.mark.parametrize("text, message", [
    (BASE + "loss = 1\n", 'links.lan.loss: 1 is ambiguous: write "1%"'),
    (BASE + 'loss = "-5%"\n', "links.lan.loss: negative percentage '-5%'"),
    (BASE + 'loss = "lots"\n', "links.lan.loss: not a percentage: 'lots'"),
])
def test_probabilities_that_could_be_misread_are_refused(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        Network.from_toml(text)
    assert str(ei.value).startswith(message), str(ei.value)


def test_a_direction_table_adds_to_the_link_wide_impairment() -> None:
    text = BASE.replace('["a", "b"]', '["a", "b", "c"]').replace("[hosts.b]", "[hosts.b]\n[hosts.c]")
    text += 'delay = "5ms"\nloss = "1%"\n[links.lan.directions."a->b"]\nduplicate = "5%"\n'
    with Network.from_toml(text) as net:
        lan = net.link("lan")
        # a->b on a three-host segment: the link-wide egress of a, then b's ingress on top
        assert lan.netem()["a->*"] == "limit 1000 delay 5ms loss 1%"
        assert lan.netem()["*->b"] == "limit 1000 duplicate 5%"
    with Network.from_toml(BASE + 'delay = "5ms"\n[links.lan.directions."a->b"]\nloss = "3%"\n') as net:
        assert net.link("lan").netem()["a->b"] == "limit 1000 delay 5ms loss 3%"


@pytest.mark.parametrize("schedule, message", [
    ("at 5x loss 1%", "schedule: 'at 5x loss 1%': at: bad time '5x' (5s, 250ms"),
    ("at 5s nosuch loss 1%", "schedule: 'at 5s nosuch loss 1%': 'nosuch' is not a link, host, direction or netem option"),
    ("at 5s lan loss 500%", "schedule: 'at 5s lan loss 500%': action: Illegal \"loss percent\" value \"500%\""),
])
def test_schedule_errors_name_the_statement_once(schedule: str, message: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        Network.from_toml(f"schedule = {schedule!r}\n" + BASE)
    assert str(ei.value).startswith(message), str(ei.value)
    assert "schedule: schedule:" not in str(ei.value) and "Usage:" not in str(ei.value)
