"""The one exception type for mistakes a user can make (bad config, names, files, arguments).

The CLI turns it into a single line on stderr and exit code 2; library callers can catch it.
"""

import os


class BlockswapError(ValueError):
    """A user-facing error: the message says what was wrong and what is allowed."""


def os_error_message(err: OSError) -> str:
    """One line for a file the system refused: the path (the destination of a rename) and why,
    as `cp` and `cat` say it."""
    path = err.filename2 if err.filename2 is not None else err.filename
    reason = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
    if path is None:
        return reason
    return f"{os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else path}: {reason}"
