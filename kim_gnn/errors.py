"""User-facing errors: one line that names the problem."""


class KimGnnError(Exception):
    """A problem with the user's input (file, model, structure, option).

    The CLI prints its message on one line and exits non-zero; it never shows
    a traceback for these.
    """


class UnsupportedModelError(KimGnnError):
    """The model contains something kim_gnn cannot convert exactly."""
