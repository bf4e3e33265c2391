"""The one error type the CLI and the service turn into a clear message instead of a traceback."""


class ParcelriskError(Exception):
    """A problem the user can act on (bad input, missing artifact); the message says which."""
