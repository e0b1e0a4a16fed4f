"""The one exception type a user can cause.

Anything a user can get wrong (an unknown method, a bad value, a missing checkpoint) raises
`OpdbenchError` with one line naming the cause and the fix; the CLI prints it and exits non-zero.
Every other exception is a bug and keeps its traceback.
"""


class OpdbenchError(Exception):
    """A user-facing error: its message is one line that names the cause and the fix."""
