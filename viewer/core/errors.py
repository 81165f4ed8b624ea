"""The one exception type the public API raises for bad input.

Its message is a single sentence a person can act on: what went wrong and what to do.
The CLI prints it to stderr and exits with status 2; the GUI shows it in the window.
"""


class HounsfieldError(Exception):
    """Bad input or an operation that cannot be carried out; ``str(err)`` is one sentence."""


def shown(value, limit: int = 80) -> str:
    """A value read from a file or a server as it may stand inside a one-sentence message: one line,
    printable, at most ``limit`` characters (a corrupt length can make a UID thousands long)."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."
