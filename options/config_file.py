"""Config files: YAML files of flags (``--config FILE.yaml``), read through the parser's own flags, and written.

A file sets flags by their names (argparse's dest: ``crop_size: 64``, ``no_flip: true``, ``gpu_ids: -1`` or
``[0, 1]``, ``name: [a, b]`` for a flag of several values). Each value goes through its flag's own conversion
and checks (type, choices, number of values), as the same value on the command line does; the command line
overrides the file (docs/training.md#config-files). Only yaml.safe_load and yaml.safe_dump touch the files.
"""

from __future__ import annotations

import argparse
import difflib
import os
from typing import Any

import yaml

from util.errors import UserError
from util.files import atomic_write

# Not flags a file can set: argparse's --help, and --config itself (a file names no other file).
NOT_SETTABLE = ("help", "config")


def read(path: str) -> dict[str, Any]:
    """Return the flags of a YAML config file, name -> value; an unreadable file, bad YAML or a non-mapping is a
    UserError naming the file (and the line of a syntax error)."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except OSError as err:
        raise UserError(f"--config {path}: cannot be read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path}{where}: not valid YAML ({problem})") from None
    if values is None:  # an empty file, or comments only
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected 'flag: value' lines (a YAML mapping), found a {type(values).__name__}")
    for key in values:
        if not isinstance(key, str):
            raise UserError(f"{path}: {key!r} is not a flag name")
    return values


def flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Return the flags a file can set, by name (their dest): every optional flag but --help and --config."""
    # argparse keeps no public list of its flags; _actions is the one its own parsing and help read.
    return {action.dest: action for action in parser._actions
            if action.option_strings and action.dest not in NOT_SETTABLE}


def parse(parser: argparse.ArgumentParser, args: list[str], values: dict[str, Any], path: str,
          complete: bool, selected: str = "") -> argparse.Namespace:
    """Return args parsed by parser over the file's values: a flag on the command line wins over the file's.

    complete=False, an early pass that only picks --config, --model and --dataset_mode: the file's keys that
    parser lacks wait for the full parser, nothing is required and unknown command-line flags are let through.
    complete=True: every key must be a flag of parser (selected, e.g. '--model ibcln', is named in the error
    about one that is not), and a flag the file sets is no longer required.
    """
    known = flags(parser)
    namespace = argparse.Namespace()
    for key, value in values.items():
        if key in known:
            setattr(namespace, key, convert(known[key], value, f"{path}: {key}"))
            known[key].required = False
        elif complete:
            raise UserError(unknown_key(path, key, known, f"{parser.prog} {selected}".strip()))
    if not complete:
        for action in known.values():
            action.required = False
        return parser.parse_known_args(args, namespace)[0]
    # Values already in the namespace are kept unless the command line gives the flag (argparse's rule).
    return parser.parse_args(args, namespace)


def unknown_key(path: str, key: str, known: dict[str, argparse.Action], command: str) -> str:
    """Return the one-line error for a key that is not a flag of command, with the closest flag names if any."""
    if key in NOT_SETTABLE:
        return f"{path}: '{key}' cannot be set in a config file"
    name = key[2:] if key.startswith("--") else key
    close = difflib.get_close_matches(name, known, n=3)
    hint = (f"; write '{name}:' without the dashes" if name in known
            else f"; did you mean {' or '.join(close)}?" if close else "")
    return f"{path}: unknown key '{key}': not a flag of {command}{hint}"


def convert(action: argparse.Action, value: Any, where: str) -> Any:
    """Return a file's value as the flag's own value (what argparse makes of the same value on the command line).

    store_true flags take true/false; flags of several values (nargs +, * or N) a list, or one value; a
    one-value text flag takes a list as its comma-separated form (gpu_ids: [0, 1] = --gpu_ids 0,1); a flag
    whose value is optional (nargs ?) takes true for the flag alone. null keeps a default of None (seed: null).
    """
    if value is None:
        if action.default is None:
            return None
        raise UserError(f"{where}: no value; give one, or leave the key out for the default {action.default!r}")
    if action.nargs == 0:  # store_true (store_false): the file gives the flag's value itself
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, found {value!r}")
        return value
    if isinstance(value, bool):
        if action.nargs == "?" and value:
            return action.const  # the flag alone
        if value is False and action.default is False:
            return False  # the flag not given (e.g. continue_train: false)
        raise UserError(f"{where}: expected a value, found {str(value).lower()} (YAML reads unquoted yes, no, on "
                        "and off as true and false: quote them, e.g. 'off')")
    several = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(value, list) and not several:
        if action.type not in (None, str):
            raise UserError(f"{where}: expected one value, found a list")
        value = ",".join(str(scalar(item, where)) for item in value)
    items = [one_value(action, item, where) for item in (value if isinstance(value, list) else [value])]
    if not several:
        return items[0]
    if action.nargs == "+" and not items:
        raise UserError(f"{where}: expected one value or more, found an empty list")
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise UserError(f"{where}: expected {action.nargs} values, found {len(items)}")
    return items


def scalar(item: Any, where: str) -> Any:
    """Return item when it is a number or a text; anything else (true/false, null, a list, a mapping) is a UserError."""
    if isinstance(item, (bool, list, dict)) or item is None:
        found = yaml.safe_dump(item, default_flow_style=True).splitlines()[0]
        raise UserError(f"{where}: expected a number or a text, found {found}")
    return item


def one_value(action: argparse.Action, item: Any, where: str) -> Any:
    """Return one value converted by the flag's type and checked against its choices, as argparse does."""
    text = str(scalar(item, where))
    try:
        result = action.type(text) if action.type is not None else text
    except argparse.ArgumentTypeError as err:
        raise UserError(f"{where}: {err}") from None
    except (TypeError, ValueError):
        raise UserError(f"{where}: invalid {getattr(action.type, '__name__', 'value')} value {text!r}") from None
    if action.choices is not None and result not in action.choices:
        raise UserError(f"{where}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return result


def write(path: str, values: dict[str, Any], header: str) -> None:
    """Write values as a YAML config file (sorted keys) under a '# ' comment header, atomically, making its folder;
    return None."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    text = comment + yaml.safe_dump(values, sort_keys=True, default_flow_style=False, allow_unicode=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
