"""``python -m robutler_skill_mcp.launcher COMMAND [ARGS...]``: runs COMMAND in place of this
process (``execvp``) after asking Linux to kill it (SIGKILL, ``PR_SET_PDEATHSIG``) when the
process that started it dies, so a stdio MCP server does not outlive a crashed agent server.

The skill starts stdio servers through it on Linux; elsewhere they are started directly (and
still end at shutdown, and, as well-behaved MCP servers do, when their stdin closes).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m robutler_skill_mcp.launcher COMMAND [ARGS...]")
    parent = int(os.environ.pop("ROBUTLER_MCP_PARENT_PID", "0"))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        sys.stderr.write(f"robutler_skill_mcp.launcher: prctl failed: {os.strerror(errno)}\n")
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.exit(f"robutler_skill_mcp.launcher: cannot run {argv[0]!r}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
