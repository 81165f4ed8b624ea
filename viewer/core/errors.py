"""The one exception type the public API raises for bad input.

Its message is a single sentence a person can act on: what went wrong and what to do.
The CLI prints it to stderr and exits with status 2; the GUI shows it in the window.
"""


class HounsfieldError(Exception):
    """Bad input or an operation that cannot be carried out; ``str(err)`` is one sentence."""
