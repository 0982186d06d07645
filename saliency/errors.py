"""The one exception type meant for users.

Anything raised as :class:`UserError` is bad input or a missing resource the user can fix; the CLI
prints its message as one line and exits with code 2. Everything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Bad input the user can fix: the message names the file or setting and what to do."""
