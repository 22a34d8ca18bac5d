"""The one exception type for user mistakes; the CLI prints its message as one paragraph and exits 2."""


class L4stbError(Exception):
    """A mistake the user can fix (bad scenario, missing testbed, unreachable host...).

    The message is written for the user: it names the file, field or host and says what to do.
    """

    exit_code = 2
