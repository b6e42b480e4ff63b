"""The one exception type that train.py and test.py print as a one-line message."""


class UserError(Exception):
    """A problem with the user's input (a flag, a folder, a file) that a message can explain.

    train.py and test.py catch it and print ``error: <message>`` without a traceback; everything
    else is a bug and keeps its traceback.
    """
