"""The imnrisk command's arguments checked as text before any command runs: none empty, none with a NUL."""

from __future__ import annotations

import argparse
from typing import Dict

from IMNRiskLib.core.errors import InputError


def argument_names(parser: argparse.ArgumentParser, command: str) -> Dict[str, str]:
    """dest -> how the user wrote the argument (its option, or its name when positional)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest: (a.option_strings[0] if a.option_strings else a.dest) for a in sub._actions}


def check_argument_text(args: argparse.Namespace, names: Dict[str, str]) -> None:
    """No argument is an empty text (`--out ''` would name the current folder, `--host ''` every
    interface) or holds a NUL character (no file name can): refused naming the argument."""
    for name, value in vars(args).items():
        if name not in names:
            continue  # command, func
        for text in (value if isinstance(value, list) else [value]):
            if not isinstance(text, str):
                continue
            flag = names[name]
            if text.strip() == "":
                raise InputError("is empty; give a value", field=flag)
            if "\0" in text:
                raise InputError("holds a NUL character", field=flag)
