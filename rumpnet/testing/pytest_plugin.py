"""pytest plugin (entry point ``pytest11: rumpnet``): kernels, networks and faulty links.

Fixtures:

* ``rump_seed`` -- the seed of this test: ``--rump-seed N``, else ``$RUMP_SEED``, else 1;
  printed in the report of a failing test ("rumpnet seed: N") so the run can be replayed;
* ``rump_kernel`` -- a kernel on a fresh virtual clock, halted afterwards;
* ``rump_network`` -- an empty :class:`rumpnet.faults.network.Network` with that seed;
* ``faulty_wire`` -- hosts ``a`` (10.0.1.1) and ``b`` (10.0.1.2) on link ``wire``;
* ``rump_linux_peer`` -- a real-clock kernel (``.kernel``, 10.213.0.2 on ``virt0``) whose
  tap's other end is in a new network namespace (``.ns``) where Linux has 10.213.0.1:
  ``.run(argv)`` and ``.python(code)`` run programs there (ping, curl, sockets). It needs
  root, ``/dev/net/tun`` and ``ip netns``, and skips with the reason when they are missing;
  the namespace and tap are removed afterwards.

Strict mode (rumpkern/strict.py) is on for every test: the plugin sets ``RUMP_STRICT=1``
(unless the environment already sets ``RUMP_STRICT``; ``RUMP_STRICT=0`` turns it off) and
``RUMP_STRICT_LOG`` to a file of this session, so rump_servers a test starts run strict
too. An exception out of protocol input, a timer or a scheduler callback then raises
``KernelInternalError`` in the test's next call on that scheduler; one that no call
raised (a background thread, no call after it, a rump_server's) fails the test after it
ran, with the traceback. ``--rump-strict=0`` turns this off for a run.

Kernels a test boots on the thread's default virtual scheduler (``rump_init(clock=
"virtual")`` without ``scheduler=``) and leaves running are halted after its teardown,
with a ``KernelLeftRunningWarning`` naming them: left running, they would keep that
scheduler for every later test, whose scenarios would then not replay the same
(issue 14 part 7; ``tests/scenario/test_replay_after_a_leak.py``).

Marker ``@pytest.mark.netem("delay 10ms loss 1%", link="lan", direction="both")``
impairs the network fixture's links of that name (every link when ``link`` is not given),
now or as soon as they are added; several markers apply in order.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Generator, Iterator
from typing import Any

import pytest

DEFAULT_SEED = 1
SEED_KEY = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--rump-seed N``: the seed of the rumpnet fixtures."""
    group = parser.getgroup("rumpnet")
    group.addoption("--rump-seed", action="store", type=int, default=None, dest="rump_seed",
                    help="seed of rumpnet kernels and networks (default: $RUMP_SEED, else 1)")
    group.addoption("--rump-strict", action="store", default=None, dest="rump_strict", choices=("0", "1"),
                    help="internal errors of rumpnet kernels fail the test (default: $RUMP_STRICT, else 1)")


def pytest_configure(config: pytest.Config) -> None:
    """Turn strict mode on (see the module docstring); register the ``netem`` marker."""
    _strict_configure(config)
    config.stash[WATCH_KEY] = _ErrorWatch()
    config.addinivalue_line(
        "markers",
        "netem(spec, link=None, direction='both'): impair the rump_network/faulty_wire links "
        "(tc-netem options or keyword parameters)")


def _seed(config: pytest.Config) -> int:
    opt = config.getoption("rump_seed", default=None)
    if opt is not None:
        return int(opt)
    env = os.environ.get("RUMP_SEED")
    if env:
        try:
            return int(env)
        except ValueError:
            raise pytest.UsageError(f"RUMP_SEED={env!r} is not an integer") from None
    return DEFAULT_SEED


@pytest.fixture
def rump_seed(request: pytest.FixtureRequest, record_property: Any) -> int:
    seed = _seed(request.config)
    request.node.stash[SEED_KEY] = seed
    record_property("rumpnet_seed", seed)
    return seed


@pytest.fixture
def rump_kernel(rump_seed: int) -> Iterator[Any]:
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler

    sched = Scheduler(virtual=True)
    k = rump_init(clock="virtual", seed=rump_seed, scheduler=sched)
    try:
        yield k
    finally:
        k.halt()
        if sched.background:
            sched.stop_background()
        if not sched.loop.is_running():
            sched.loop.close()


def _apply_markers(request: pytest.FixtureRequest, net: Any) -> None:
    for mark in reversed(list(request.node.iter_markers("netem"))):  # closest last
        spec = mark.args[0] if mark.args else None
        kw = dict(mark.kwargs)
        link = kw.pop("link", None)
        direction = kw.pop("direction", "both")
        try:
            net.preset(spec, link=link, direction=direction, **kw)
        except ValueError as e:
            raise pytest.UsageError(f"@pytest.mark.netem: {e}") from None


@pytest.fixture
def rump_network(request: pytest.FixtureRequest, rump_seed: int) -> Iterator[Any]:
    from rumpnet.faults.network import Network

    net = Network(seed=rump_seed)
    try:
        _apply_markers(request, net)
        yield net
    finally:
        net.close()


class FaultyWire:
    """Two hosts on one impaired link: ``a``, ``b`` (Hosts), ``link``, ``net``."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.a = net.host("a")
        self.b = net.host("b")
        self.link = net.link("wire")

    def impair(self, spec: Any = None, direction: str = "both", **params: Any) -> Any:
        """Impair the wire (``Link.impair``)."""
        return self.link.impair(spec, direction=direction, **params)

    def partition(self, direction: str = "both") -> Any:
        """Partition the wire until :meth:`heal`."""
        return self.link.partition(direction)

    def heal(self, direction: str = "both") -> Any:
        """End a partition of the wire."""
        return self.link.heal(direction)

    def counters(self, direction: str = "both") -> dict[str, int]:
        """The wire's counters for ``direction``."""
        return self.link.counters(direction)  # type: ignore[no-any-return]

    def run_for(self, seconds: float) -> None:
        """Let the network run for ``seconds`` of kernel time."""
        self.net.run_for(seconds)


@pytest.fixture
def faulty_wire(rump_network: Any) -> FaultyWire:
    rump_network.add_host("a")
    rump_network.add_host("b")
    rump_network.add_link("wire", "a", "b", subnet="10.0.1.0/24")
    return FaultyWire(rump_network)


# -- strict mode: internal errors fail the test that caused them ----------------------------
LOG_KEY = pytest.StashKey[str]()
ENV_KEY = pytest.StashKey[dict[str, str | None]]()


def _strict_configure(config: pytest.Config) -> None:
    from rumpkern.strict import ENV, LOG_ENV, parse_strict

    # Restored at the end, so that a pytest run inside another (pytester) leaves the
    # outer session's strict mode as it was.
    config.stash[ENV_KEY] = {name: os.environ.get(name) for name in (ENV, LOG_ENV)}
    opt = config.getoption("rump_strict", default=None)
    if opt is not None:
        os.environ[ENV] = opt
    else:
        os.environ.setdefault(ENV, "1")
    try:
        on = parse_strict(os.environ[ENV])
    except OSError as e:
        raise pytest.UsageError(str(e.strerror)) from None
    if on and not os.environ.get(LOG_ENV):
        fd, path = tempfile.mkstemp(prefix="rump-strict-", suffix=".log")
        os.close(fd)
        os.environ[LOG_ENV] = path
        config.stash[LOG_KEY] = path  # ours: removed at the end


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's strict log and restore RUMP_STRICT / RUMP_STRICT_LOG."""
    path = config.stash.get(LOG_KEY, None)
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
    for name, value in config.stash.get(ENV_KEY, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class _ErrorWatch:
    """Internal errors recorded since the last look: this process's unraised ones, and
    those other processes (rump_servers) appended to the session's log since this session
    began (a pytest run started by a test inherits the log: what its parent recorded
    before it is not its business)."""

    def __init__(self) -> None:
        from rumpkern.strict import LOG_ENV

        path = os.environ.get(LOG_ENV)
        self.offset = os.path.getsize(path) if path and os.path.exists(path) else 0

    def take(self) -> list[str]:
        from rumpkern.strict import LOG_ENV, read_log, take_unraised

        found = [e.format() for e in take_unraised()]
        path = os.environ.get(LOG_ENV)
        if path:
            records, self.offset = read_log(path, self.offset, skip_pid=os.getpid())
            found += [f"(from process {r.get('pid')}) {r.get('traceback', '')}" for r in records]
        return found


WATCH_KEY = pytest.StashKey[_ErrorWatch]()


def _watch(config: pytest.Config) -> _ErrorWatch:
    watch = config.stash.get(WATCH_KEY, None)
    if watch is None:
        watch = config.stash[WATCH_KEY] = _ErrorWatch()
    return watch


def _internal_error_report(errors: list[str], when: str) -> str:
    return (f"{len(errors)} rumpnet kernel internal error(s) {when} that no call raised "
            "(strict mode, rumpkern/strict.py):\n\n" + "\n".join(errors))


def _checked_phase(config: pytest.Config, when: str) -> Generator[None, None, None]:
    """Run one phase of a test (hook wrapper body); internal errors recorded during it
    fail it, also when it failed or skipped on its own (the errors are added then)."""
    watch = _watch(config)
    try:
        yield  # set-up and teardown hooks return nothing
    except BaseException as e:
        errors = watch.take()
        if errors:
            report = _internal_error_report(errors, when)
            if isinstance(e, pytest.skip.Exception):
                pytest.fail(report, pytrace=False)
            e.add_note(report)
        raise
    errors = watch.take()
    if errors:
        pytest.fail(_internal_error_report(errors, when), pytrace=False)


# -- kernels a test leaves running on the thread's default virtual CPU ----------------------
RUNNING_KEY = pytest.StashKey[list[Any]]()


class KernelLeftRunningWarning(pytest.PytestWarning):
    """A test left kernels running on the thread's default virtual scheduler."""


def _default_virtual_kernels() -> list[Any]:
    from rumpkern.sched import thread_default_scheduler

    sched = thread_default_scheduler(virtual=True)
    return [k for k in sched.kernels if not k.halted] if sched is not None else []


def _halt_left_running(item: pytest.Item) -> None:
    """Halt the kernels ``item`` booted on the thread's default virtual scheduler and left
    running. Left there, they keep that scheduler from ever being spent, so every later
    scenario booted on it shares their clock (advanced by every test since) and boot
    count (which seeds each kernel's rng): its replay then depends on what ran before
    (issue 14 part 7). Halted, the next ``rump_init(clock="virtual")`` starts a fresh CPU.
    A fixture broader than a function that wants a kernel for several tests boots it on a
    scheduler of its own (``scheduler=``, as :class:`~rumpnet.testing.vnet.VNet` does)."""
    before = item.stash.get(RUNNING_KEY, [])
    left = [k for k in _default_virtual_kernels() if not any(k is b for b in before)]
    for k in left:
        k.halt()
    if left:
        names = ", ".join(k.hostname for k in left)
        item.warn(KernelLeftRunningWarning(
            f"{len(left)} virtual-clock kernel(s) left running on the thread's default scheduler "
            f"({names}): halted after the test; halt them in the test (k.halt())"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Set-up fails on an internal error no call raised (strict mode)."""
    item.stash[RUNNING_KEY] = _default_virtual_kernels()
    yield from _checked_phase(item.config, "during set-up (or left by an earlier test)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Teardown fails on an internal error no call raised (strict mode); then the kernels
    the test left running on the default virtual scheduler are halted (:func:`_halt_left_running`)."""
    try:
        yield from _checked_phase(item.config, "during teardown")
    finally:
        _halt_left_running(item)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An internal error recorded after the last test fails the session."""
    errors = _watch(session.config).take()
    if errors:
        sys.stderr.write(_internal_error_report(errors, "after the last test") + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """A failing test's report gets the seed to replay it with (``--rump-seed N``)."""
    outcome: Any = yield
    rep = outcome.get_result()
    seed = item.stash.get(SEED_KEY, None)
    if seed is not None and rep.failed:
        rep.sections.append(("rumpnet", f"rumpnet seed: {seed} (replay with --rump-seed {seed})"))


class LinuxPeer:
    """What ``rump_linux_peer`` yields: a kernel and Linux on either side of a tap."""

    kernel_addr = "10.213.0.2"
    peer_addr = "10.213.0.1"

    def __init__(self, kernel: Any, ns: Any, tap: str) -> None:
        self.kernel = kernel
        self.ns = ns
        self.tap = tap

    def run(self, argv: list[str], timeout: float = 30.0) -> Any:
        """``argv`` in the namespace; a ``subprocess.CompletedProcess`` (text output)."""
        from rumpnet.testing.netns import ns_run

        return ns_run(self.ns, argv, timeout=timeout)

    def python(self, code: str, timeout: float = 30.0, args: tuple[str, ...] = ()) -> Any:
        """``python -c code args...`` in the namespace (this interpreter)."""
        from rumpnet.testing.netns import ns_python

        return ns_python(self.ns, code, timeout=timeout, args=args)


@pytest.fixture
def rump_linux_peer(rump_seed: int) -> Iterator[LinuxPeer]:
    from rumpkern import rump_init
    from rumpnet.testing.netns import have_netns_privileges, tap_peer

    ok, why = have_netns_privileges()
    if not ok:
        pytest.skip(why)
    k = rump_init(clock="real", seed=rump_seed)
    try:
        with tap_peer(k, f"{LinuxPeer.kernel_addr}/24", f"{LinuxPeer.peer_addr}/24", prefix="rlp") as (ns, tap):
            yield LinuxPeer(k, ns, tap)
    finally:
        k.halt()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A system call a test made in a coroutine and never awaited fails the test (its
    UnawaitedSyscallWarning would only be a line in the warnings summary). A warning the
    test expects (``pytest.warns``) is caught there and never reaches this check. An
    internal error no call raised while the test ran fails it too (strict mode)."""
    import warnings

    from rumpkern.unawaited import UnawaitedSyscallWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnawaitedSyscallWarning)
        yield from _checked_phase(item.config, "while the test ran")
    lost = [w for w in caught if issubclass(w.category, UnawaitedSyscallWarning)]
    for w in caught:  # everything else goes on to pytest's own warning capture
        if w not in lost:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if lost:
        pytest.fail("a system call was never awaited:\n" + "\n".join(str(w.message) for w in lost), pytrace=False)
