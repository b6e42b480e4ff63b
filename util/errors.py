"""The one exception type that the command-line tools print as a one-line message, and the code that prints it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem with the user's input (a flag, a folder, a file) that a message can explain.

    train.py and test.py catch it and print ``error: <message>`` without a traceback; everything
    else is a bug and keeps its traceback.
    """


def exit_on_user_error(run: Callable[[], T]) -> T:
    """Return run()'s result; a UserError ends the program instead, with 'error: <message>' and exit status 2."""
    try:
        return run()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
