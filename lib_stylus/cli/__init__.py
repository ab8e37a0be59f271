"""`python -m lib_stylus COMMAND`: each command module has add_parser(subparsers) and run(args) -> exit
code."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["index", "query", "retrieve", "compose", "demo"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib_stylus",
                                     description="Stylus: automatic LoRA selection.")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(f"lib_stylus.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"lib_stylus.cli.{name}":
                raise
            continue  # a command not built yet
        modules[name].add_parser(sub)
    args = parser.parse_args(argv)
    return modules[args.command].run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
