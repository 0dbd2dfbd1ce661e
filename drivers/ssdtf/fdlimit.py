"""Raise this process's open-file limit to what the system allows, once, before a deployment.

Why: an SSDTF deployment holds every connection of the run in this process (the embedded
broker's side, and behind the tap three descriptors per client), and Mosquitto inherits the
limit when it is started from here. Debian's default soft limit over SSH is 1,024 while the hard
limit is usually far higher; a few hundred connections of a flood would otherwise make
``accept`` fail for everybody, legitimate roles included. Raising the soft limit to the hard one
is what servers do for themselves (nginx's ``worker_rlimit_nofile``); it needs no privilege.
The bound on connections waiting for a CONNECT (``FlowConfig.max_unconnected``) keeps a flood
well below it; this only removes the low default as the first thing to give way.
"""

from __future__ import annotations

import resource

CEILING = 65536
"""Never ask for more than this (an unlimited hard limit would make select-based code and
per-descriptor tables in libraries needlessly large)."""


def raise_open_files_limit(ceiling: int = CEILING) -> int:
    """Set the soft RLIMIT_NOFILE to min(hard, ``ceiling``) if it is lower; return the soft
    limit in force afterwards. Never lowers it, never fails (a refused change keeps the old
    limit: the run still works, only with less head-room)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft
        return wanted
    return soft
