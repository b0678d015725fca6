"""The few error types library code raises; only clustcontrol.cli turns them into messages
and exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


class ClustcontrolError(Exception):
    """A failure to report to the user as a message, optionally with a hint on what to do.

    `message` is the text shown, `hint` an optional next step; `exit_code` is the process exit
    status cli.py uses (EXIT_FAILURE here, EXIT_INVALID for InvalidInputError)."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The message as lines to print, one element per line of output (here: the message)."""
        return [self.message]


class InvalidInputError(ClustcontrolError):
    """Bad input: an inventory, argument or file that does not validate. Nothing was written.

    `problems` is the list of every problem found, one line each; the message joins them with
    newlines."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        super().__init__("\n".join(problems), hint)
        self.problems = problems

    def lines(self) -> list[str]:
        """One line per problem, each naming where it is (e.g. "nodes.node01.ip: ...")."""
        return list(self.problems)


class CommandError(ClustcontrolError):
    """An external program failed (or is missing)."""


class LockedError(ClustcontrolError):
    """Another clustcontrol process holds the apply lock."""


class UnsafePathError(ClustcontrolError):
    """A target path apply will not touch: a symbolic link, something other than a regular
    file, or a path that would leave the root it works under. Nothing was read through it.

    `problems` holds one line per path, each naming the path as found on this machine."""

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        super().__init__("\n".join(problems), hint)
        self.problems = problems

    def lines(self) -> list[str]:
        """One line per refused path."""
        return list(self.problems)
