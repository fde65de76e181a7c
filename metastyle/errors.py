"""The one exception type that means "the user gave us something bad".

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: message names the file (or option) and the problem."""
