"""``kim-gnn``: convert, verify and describe GNN potentials as KIM models.

A package by concern: ``parser`` (the argument parser and ``main``, with the
exit codes), one module a command (``convert``, ``verify`` with ``check``,
``info``, ``example``, ``install_driver``) and ``common`` (progress output,
output-file checks, the adapters' options). ``docs/cli.md`` is held equal to
the parser by tests/core/test_readme.py. Importing it imports no torch.
"""

from .common import check_output_file
from .convert import cmd_convert, default_item_name, verify_command
from .example import cmd_example, default_example_dir
from .info import LOADING_TEXT, cmd_info, describe, loading_kind
from .install_driver import cmd_install_driver
from .parser import build_parser, main
from .verify import cmd_check, cmd_verify

__all__ = ["LOADING_TEXT", "build_parser", "check_output_file", "cmd_check", "cmd_convert", "cmd_example",
           "cmd_info", "cmd_install_driver", "cmd_verify", "default_example_dir", "default_item_name", "describe",
           "loading_kind", "main", "verify_command"]
