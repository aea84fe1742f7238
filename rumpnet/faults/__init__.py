"""Link impairments for the fault-injection harness (DESIGN.md section 6).

* :mod:`.netem` -- a sans-IO model of Linux's netem qdisc (tc-netem(8), sch_netem.c),
  plus partitions, drop-the-Nth and drop-matching;
* :mod:`.runner` -- drives a netem on a scheduler, as an interface's qdisc hook;
* :mod:`.injector` -- ``FaultInjector``, a LinkDriver wrapper with netem both ways;
* :mod:`.tc` -- ``tc qdisc ... netem ...`` command syntax and ``tc -s qdisc show``;
* :mod:`.schedule` -- timelines ("at 5s partition for 3s; at 8s loss 10%");
* :mod:`.match` -- the frame matcher behind ``drop_match``;
* :mod:`.network` -- ``Network``: kernels on impaired links, partitions, captures, one seed;
* :mod:`.scenario` -- the same from a TOML file (``Network.from_toml``);
* :mod:`.toxics` -- ``Proxy`` and ``Toxic``: toxiproxy's connection faults in a kernel;
* :mod:`.http_api` -- ``HttpApi``: a toxiproxy-like HTTP control API (docs/FAULTS.md).
"""

from rumpnet.faults.injector import FaultInjector
from rumpnet.faults.match import FrameMatch
from rumpnet.faults.netem import Netem, NetemParams, NetemStats, gemodel_params, loss_state_params
from rumpnet.faults.runner import QdiscRunner
from rumpnet.faults.schedule import Clear, FaultSchedule, Heal, Partition, SetParams, Update
from rumpnet.faults.tc import format_netem, netem_params, parse_netem_args, tc_command

__all__ = [
    "Clear", "FaultInjector", "FaultSchedule", "FrameMatch", "Heal", "Netem", "NetemParams",
    "NetemStats", "Partition", "QdiscRunner", "SetParams", "Update", "format_netem",
    "gemodel_params", "loss_state_params", "netem_params", "parse_netem_args", "tc_command",
]


_LAZY = {"Network": "network", "Link": "network", "Host": "network", "ScenarioError": "scenario",
         "Proxy": "toxics", "Toxic": "toxics", "HttpApi": "http_api", "impairment": "params"}


def __getattr__(name: str) -> object:
    # the harness modules import the kernel; load them on first use only
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"rumpnet.faults.{mod}"), name)
