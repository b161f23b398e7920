"""Errors the CLI shows as one line (what went wrong, what to do) with a non-zero exit."""


class UserError(Exception):
    """A problem the user can fix; the message says how."""
