"""What the commands share: progress on stderr, the refusal of an output file
that cannot be written, the adapters' options from the command line, and
``adapter.convert`` with its optimisation warnings as ``kim-gnn: warning:``
lines."""

import os
import sys

from ..errors import KimGnnError


def _progress(quiet: bool):
    if quiet:
        return None
    tty = sys.stderr.isatty()

    def show(message: str) -> None:
        if tty:
            sys.stderr.write("\r\033[K" + message)
        else:
            sys.stderr.write(message + "\n")
        sys.stderr.flush()

    return show


def _end_progress(quiet: bool) -> None:
    if not quiet and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def check_output_file(path: str, what: str) -> str:
    """Refuse, before any work starts, an output file that cannot be written."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise KimGnnError(f"{what} {path} is a directory; give a file name")
    from ..export import check_parent_directory

    check_parent_directory(path, f"cannot write {what} {path}")
    return path


def _convert(adapter, source, **options):
    """``adapter.convert`` with each ``OptimisationNotApplied`` warning
    printed as one ``kim-gnn: warning: ...`` line on stderr (other warnings
    go where they would have gone)."""
    import warnings

    from ..errors import OptimisationNotApplied

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OptimisationNotApplied)
        staged = adapter.convert(source, **options)
    for w in caught:
        if issubclass(w.category, OptimisationNotApplied):
            print(f"kim-gnn: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return staged


def _adapter_options(args) -> dict:
    """The adapters' conversion options as given on the command line."""
    from ..adapters import all_options

    return {name: getattr(args, name, None) for name in all_options()}
