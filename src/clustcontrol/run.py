"""The only module that starts processes: argv lists, a clean environment, one error type."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from clustcontrol.errors import CommandError

log = logging.getLogger(__name__)

_CLEAN_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: only PATH, LANG, LC_ALL, TMPDIR and HOME of ours.

    PATH gets a standard default when unset and LC_ALL is always "C" (messages in English,
    parseable); `extra` (name -> value) is added last and may override both. Returns a new dict.
    """
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
    """The absolute path of `program` (found as by `which`).

    Raises CommandError naming the Debian `package` to install when the program is missing."""
    found = which(program)
    if found is None:
        raise CommandError(
            f"required program {program!r} is not installed",
            hint=f"install it with: apt-get install {package}",
        )
    return found


PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (prctl(2) PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    die_with_parent: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv, capture its output; raise CommandError naming the command when check fails.

    argv items are converted with str(); the child gets clean_env(env), `input` (bytes) on its
    standard input, `cwd` as working directory and at most `timeout` seconds (None: no limit);
    with `die_with_parent` it is killed when this process dies, even by SIGKILL.
    Returns the CompletedProcess with stdout and stderr as bytes. Raises CommandError when the
    program is not found, when the timeout expires, and (with `check`, the default) when the
    exit status is not 0, quoting stderr (or stdout when stderr is empty)."""
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
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]}: timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        output = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise CommandError(f"{' '.join(args)} failed with status {proc.returncode}: {output}")
    return proc
