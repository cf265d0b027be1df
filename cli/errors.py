"""How the command line ends: exit codes, one-line error messages, and `--debug` tracebacks.

0  success
1  an internal error (a bug): `error: internal error: ...` and a hint to rerun with --debug
2  a user error (OnnxplainError, a bad flag or argument, a file that cannot be written):
   exactly one line `error: <message>`
130 interrupted (Ctrl-C)

The handling sits in the Typer group's `main`, so `onnxplain`, `python -m onnxplain.cli` and
Typer's CliRunner in the tests all go through the same code.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Sequence

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit

from onnxplain.engine.errors import OnnxplainError

from .flags import flag_message

USER_ERROR = 2
INTERNAL_ERROR = 1
INTERRUPTED = 130
DEBUG_ENV = "ONNXPLAIN_DEBUG"
# Recent Typer releases vendor click (as a private module), older ones raise click's own exceptions:
# the public typer.BadParameter derives from whichever ClickException the installed Typer raises.
CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def debug_requested(args: Sequence[str]) -> bool:
    """`--debug` among the arguments, or ONNXPLAIN_DEBUG set to a true value."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return "--debug" in args or env not in ("", "0", "false", "no", "off")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def fail(message: str, code: int) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(code)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (the test runner swaps it per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; sys.stderr always wins
        pass

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = record.levelname.lower()
        return one_line(super().format(record))


def _is_help_page(exc: Exception) -> bool:
    """True for click's NoArgsIsHelpError (a group called without a command; click >= 8.2), which carries the
    group's help page. Matched by name: neither Typer nor every click release it allows exports the class."""
    return any(c.__name__ == "NoArgsIsHelpError" for c in type(exc).__mro__)


class OnnxplainGroup(TyperGroup):
    """The `onnxplain` command group, with the exit-code contract above."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = debug_requested(argv)
        # --debug works anywhere on the line (`onnxplain explain ... --debug`), not only before the command.
        argv = [a for a in argv if a != "--debug"]
        logger = logging.getLogger("onnxplain")
        handler = _StderrHandler()
        old_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if debug else logging.WARNING)
        try:
            code = super().main(argv, prog_name or "onnxplain", complete_var, standalone_mode=False, **extra)
        except OnnxplainError as exc:
            if debug:
                raise
            fail(flag_message(exc), USER_ERROR)
        except CLICK_EXCEPTION as exc:
            if _is_help_page(exc):  # a group called without a command (no_args_is_help): its help, exit 2
                exc.show()  # type: ignore[attr-defined]
                sys.exit(USER_ERROR)
            command = f"{exc.ctx.command_path} --help" if getattr(exc, "ctx", None) is not None else "onnxplain --help"
            fail(f"{exc.format_message()} (see `{command}`)", exc.exit_code)  # type: ignore[attr-defined]
        except (Abort, KeyboardInterrupt):
            fail("interrupted", INTERRUPTED)
        except Exit as exc:
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            sys.exit(INTERNAL_ERROR)  # `onnxplain ... | head`: the reader left; nothing to say
        except OSError as exc:  # permission denied, disk full, a path that is a folder...
            if debug:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}", USER_ERROR)
        except Exception as exc:
            if debug:
                raise
            fail(f"internal error: {type(exc).__name__}: {exc}; rerun with --debug (or {DEBUG_ENV}=1) "
                 "to see the traceback, and please report it", INTERNAL_ERROR)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        if standalone_mode:
            sys.exit(code if isinstance(code, int) else 0)
        return code
