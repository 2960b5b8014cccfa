"""User-facing errors: one line that names the problem."""


class KimGnnError(Exception):
    """A problem with the user's input (file, model, structure, option).

    The CLI prints its message on one line and exits non-zero; it never shows
    a traceback for these.
    """


class UnsupportedModelError(KimGnnError):
    """The model contains something kim_gnn cannot convert exactly."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (torch's often run to a C++
    traceback), shortened to about ``limit`` characters at a word boundary
    (marked with '...'); the exception's type if empty."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0].strip()
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + " ..."


class OptimisationNotApplied(UserWarning):
    """A conversion kept the slower exact form of part of a model (a layer
    run whole, the whole last layer, aten sums where the kim_gnn kernels were
    asked for). The message is one line: which optimisation, where, and why.
    The converted model's spec records what was applied; ``kim-gnn convert``
    prints these as ``kim-gnn: warning: ...`` on stderr."""


def warn_not_applied(message: str) -> None:
    """Warn (``OptimisationNotApplied``) that an optimisation was not
    applied; ``message`` says which and why, on one line."""
    import warnings

    warnings.warn(" ".join(message.split()), OptimisationNotApplied, stacklevel=3)
