"""Command-line options that more than one command takes (not a command itself)."""

from __future__ import annotations

import argparse


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set dense.epochs=2 (repeatable; VALUE is YAML)",
    )
