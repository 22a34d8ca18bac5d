"""The one exception type for user mistakes, and the user-facing words for what the environment refuses (full disk, read-only mount, Ctrl-C)."""

import errno


class L4stbError(Exception):
    """A mistake the user can fix (bad scenario, missing testbed, unreachable host...).

    The message is written for the user: it names the file, field or host and says what to do.
    """

    exit_code = 2


INTERRUPTED_MESSAGE = ("interrupted: what was finished is saved and the manifest says what is incomplete; "
                       "re-run the command to resume.")
"""What Ctrl-C (SIGINT) and SIGTERM print (README, "Reliability")."""

_ERRNO_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space (or use another --workdir) and re-run the command",
    errno.EDQUOT: "the disk quota is exhausted: free some space (or use another --workdir) and re-run the command",
    errno.EROFS: "the file system is read-only: use a --workdir on a writable disk",
    errno.EACCES: "permission denied: fix the permissions or use another --workdir",
    errno.EPERM: "operation not permitted: fix the permissions or use another --workdir",
    errno.ENOTDIR: "a part of this path is a file, not a folder: move it aside or use another --workdir",
    errno.EISDIR: "this is a folder where a file belongs: move it aside and re-run the command",
    errno.ELOOP: "this is a symbolic link, which l4stb does not follow here: replace it with a real file or folder",
    errno.ENAMETOOLONG: "the path is too long: use a shorter --workdir or name",
    errno.EMFILE: "too many open files: raise `ulimit -n` and re-run the command",
    errno.EIO: "the disk reported an I/O error: check it, then re-run the command",
}


def explain_environment_error(exc: BaseException) -> str | None:
    """A user-facing paragraph for failures the environment causes (disk full, read-only, permissions,
    memory), or None for a real bug. The paragraph names the file the operating system named."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO_ADVICE:
        where = exc.filename if exc.filename is not None else "a file in the workdir"
        return f"cannot write or read {where}: {_ERRNO_ADVICE[exc.errno]}."
    if isinstance(exc, MemoryError):
        return ("ran out of memory: the input is larger than this machine can hold; use a smaller input or "
                "a machine with more memory.")
    return None
