"""The one exception type the command-line tools turn into a one-line error and exit code 2."""


class InrError(Exception):
    """A problem with the user's input (files, flags, data) that is reported without a traceback."""


class CorruptFileError(InrError):
    """A .inr file that is truncated, damaged, foreign or of an unknown format version."""
