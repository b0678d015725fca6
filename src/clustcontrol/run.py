"""The only module that starts processes: argv lists, a clean environment, one error type."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from clustcontrol.errors import CommandError

log = logging.getLogger(__name__)

_CLEAN_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _CLEAN_ENV_KEYS if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def which(program: str) -> str | None:
    """Find a program on PATH, including the sbin directories a non-login root shell may lack."""
    path = clean_env()["PATH"] + ":/usr/sbin:/sbin"
    return shutil.which(program, path=path)


def require(program: str, package: str) -> str:
    found = which(program)
    if found is None:
        raise CommandError(
            f"required program {program!r} is not installed",
            hint=f"install it with: apt-get install {package}",
        )
    return found


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv, capture its output; raise CommandError naming the command when check fails."""
    args = [str(a) for a in argv]
    log.debug("run: %s", " ".join(args))
    try:
        proc = subprocess.run(
            args,
            input=input,
            capture_output=True,
            env=clean_env(env),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]}: timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        output = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise CommandError(f"{' '.join(args)} failed with status {proc.returncode}: {output}")
    return proc
