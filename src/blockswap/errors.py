"""The one exception type for mistakes a user can make (bad config, names, files, arguments).

The CLI turns it into a single line on stderr and exit code 2; library callers can catch it.
"""


class BlockswapError(ValueError):
    """A user-facing error: the message says what was wrong and what is allowed."""
