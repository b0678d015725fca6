"""Check staged configs with the real programs' own checkers before anything is installed."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from clustcontrol.errors import InvalidInputError
from clustcontrol.render.base import Output, Service
from clustcontrol.render.dhcp.dnsmasq import DNSMASQ_CONF
from clustcontrol.render.dhcp.isc import DHCPD_CONF
from clustcontrol.render.dhcp.kea import KEA_CONF
from clustcontrol.render.dns import OPTIONS, SNIPPET, ZONE_DIR
from clustcontrol.render.firewall import RULESET
from clustcontrol.render.grub import GRUB_CONFIG
from clustcontrol.run import run, which


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one checker program on one staged file.

    `target` is the file's live path, `program` the checker's name, `output` its stdout and
    stderr; `skipped` is true (and `ok` too) when the program is not installed."""

    service: Service
    program: str
    target: str
    ok: bool
    skipped: bool
    output: str

    @property
    def status(self) -> str:
        """One word or phrase for the user: "ok", "FAILED", "skipped (not installed)", or the
        checker note when it starts with "ok (" (e.g. the Kea interfaces that were not checked).
        """
        if self.skipped:
            return "skipped (not installed)"
        if not self.ok:
            return "FAILED"
        return self.output if self.output.startswith("ok (") else "ok"


Checker = Callable[[dict[str, Path], Path], Iterable[CheckResult]]


def _check(
    service: Service, argv: list[str], target: str, env: dict[str, str] | None = None
) -> CheckResult:
    program = argv[0]
    found = which(program)
    if found is None:
        return CheckResult(service, program, target, ok=True, skipped=True, output="not installed")
    proc = run([found, *argv[1:]], check=False, env=env, timeout=120)
    output = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    return CheckResult(service, program, target, proc.returncode == 0, False, output)


def _isc(staged: dict[str, Path], _work: Path) -> Iterable[CheckResult]:
    if DHCPD_CONF in staged:
        yield _check("dhcp-isc", ["dhcpd", "-t", "-4", "-cf", str(staged[DHCPD_CONF])], DHCPD_CONF)


def kea_checkable(text: str, present: set[str]) -> tuple[str, list[str]]:
    """Kea's -t also opens the configured interfaces; for a prefix apply on a machine without
    them, check a copy listening on "*" and name the interfaces that were not checked.

    `text` is the rendered kea-dhcp4.conf (a comment line, then JSON), `present` the interface
    names of this machine (/sys/class/net). An entry "IFACE/ADDRESS" counts as IFACE. Returns
    (the text to check, the interfaces missing here); the text is unchanged when none is
    missing. Raises ValueError (json.JSONDecodeError) or KeyError on text not in that shape."""
    comment, _, body = text.partition("\n")
    config = json.loads(body)
    interfaces = config["Dhcp4"]["interfaces-config"]["interfaces"]
    missing = [i for i in interfaces if i != "*" and i.split("/")[0] not in present]
    if not missing:
        return text, []
    config["Dhcp4"]["interfaces-config"]["interfaces"] = ["*"]
    return comment + "\n" + json.dumps(config, indent=2) + "\n", missing


def _kea(staged: dict[str, Path], work: Path) -> Iterable[CheckResult]:
    if KEA_CONF not in staged:
        return
    present = {p.name for p in Path("/sys/class/net").iterdir()}
    text, missing = kea_checkable(staged[KEA_CONF].read_text(), present)
    checked = staged[KEA_CONF]
    if missing:
        checked = work / "kea-dhcp4.any-interface.conf"
        checked.write_text(text)
    env = {"KEA_PIDFILE_DIR": str(work), "KEA_LOCKFILE_DIR": str(work)}
    result = _check("dhcp-kea", ["kea-dhcp4", "-t", str(checked)], KEA_CONF, env)
    if missing and result.ok and not result.skipped:
        note = f"ok (interface {', '.join(missing)} absent here, not checked)"
        result = dataclasses.replace(result, output=note)
    yield result


def _dnsmasq(staged: dict[str, Path], _work: Path) -> Iterable[CheckResult]:
    if DNSMASQ_CONF in staged:
        conf = f"--conf-file={staged[DNSMASQ_CONF]}"
        yield _check("dhcp-dnsmasq", ["dnsmasq", "--test", conf], DNSMASQ_CONF)


def _dns(staged: dict[str, Path], _work: Path) -> Iterable[CheckResult]:
    for path in (OPTIONS, SNIPPET):
        if path in staged:
            yield _check("dns", ["named-checkconf", str(staged[path])], path)
    for path, file in sorted(staged.items()):
        if path.startswith(ZONE_DIR + "/db."):
            zone = path.removeprefix(ZONE_DIR + "/db.")
            yield _check("dns", ["named-checkzone", "-k", "fail", zone, str(file)], path)


def _firewall(staged: dict[str, Path], _work: Path) -> Iterable[CheckResult]:
    if RULESET not in staged:
        return
    if which("nft") is None:
        yield CheckResult("firewall", "nft", RULESET, ok=True, skipped=True, output="not installed")
        return
    # In a network namespace of its own: nft -c needs CAP_NET_ADMIN over one (as a user, the
    # user namespace unshare creates gives it), and the check neither sees nor touches the
    # live ruleset. The ruleset is one table of its own, so the live one has nothing to add.
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    argv = ["unshare", "--net", *user, "nft", "--check", "--file", str(staged[RULESET])]
    result = dataclasses.replace(_check("firewall", argv, RULESET), program="nft")
    if not result.ok and result.output.startswith("unshare:"):
        # No namespace to be had here (user namespaces turned off): say so, as for Kea.
        note = f"ok (not checked: no network namespace here: {result.output.splitlines()[0]})"
        result = dataclasses.replace(result, ok=True, output=note)
    yield result


def _grub(staged: dict[str, Path], work: Path) -> Iterable[CheckResult]:
    """grub-script-check on every GRUB config, one run for all of them (each file is a script
    of its own, so their concatenation parses exactly when each does; one run per node's file
    would cost a process each), then, when that fails, one run per file to name the one."""
    configs = sorted((p, f) for p, f in staged.items() if GRUB_CONFIG.fullmatch(p))
    if not configs:
        return
    whole = work / "all-grub.cfg"
    whole.write_bytes(b"".join(f.read_bytes() for _, f in configs))
    # The run over them all is named by the file GRUB reads first, and how many follow.
    first = min((p for p, _ in configs), key=lambda p: (not p.endswith("/grub/grub.cfg"), p))
    target = first if len(configs) == 1 else f"{first} and {len(configs) - 1} more"
    result = _check("pxe", ["grub-script-check", str(whole)], target)
    if result.ok or result.skipped:
        yield result
        return
    for path, file in configs:
        yield _check("pxe", ["grub-script-check", str(file)], path)


CHECKERS: tuple[Checker, ...] = (_isc, _kea, _dnsmasq, _dns, _firewall, _grub)


def check_outputs(outputs: Iterable[Output]) -> list[CheckResult]:
    """Stage the outputs in a scratch directory and run every applicable checker on them.

    Checkers: `dhcpd -t -4 -cf` (dhcpd(8)), `kea-dhcp4 -t` (kea-dhcp4(8)), `dnsmasq --test`
    (dnsmasq(8)), `named-checkconf` and `named-checkzone -k fail` (named-checkzone(1)), `nft
    --check --file` in a network namespace of its own (nft(8), unshare(1)), `grub-script-check`
    (grub-common) on the GRUB configs together, each only when its file is among the outputs.
    Managed blocks and copied files are not checked.
    Returns one CheckResult per check, in that order; a failing check is a result, not an
    exception. Raises CommandError when a checker runs longer than 120 seconds."""
    with tempfile.TemporaryDirectory(prefix="clustcontrol-check-") as scratch:
        work = Path(scratch)
        staged: dict[str, Path] = {}
        for output in outputs:
            if output.block or output.source is not None:
                continue
            file = work / "tree" / output.path.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(output.data())
            staged[output.path] = file
        results = [result for checker in CHECKERS for result in checker(staged, work)]
    return results


def require_clean(results: list[CheckResult]) -> None:
    """Raise InvalidInputError listing every failed check (skipped checks count as passed)."""
    failures = [r for r in results if not r.ok]
    if failures:
        raise InvalidInputError(
            [f"{r.target}: {r.program} rejects the generated file: {r.output}" for r in failures],
            hint="this is a bug in clustcontrol's templates or a value the checks let through; "
            "nothing was installed",
        )
