"""The one exception type the library raises for bad input the user can fix.

The CLI turns it into a one-line message and a non-zero exit; anything else is a bug.
"""


class UserError(Exception):
    """Bad input, a bad path or an unusable model: the message is shown to the user as it is."""
