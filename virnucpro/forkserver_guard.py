"""Imported by the fork server (forkserver.PRELOAD) and by nothing else: the server dies with
the launcher that started it, and so its workers with it (each has PR_SET_PDEATHSIG towards the
server, parallel._die_with_parent).  Left alone, a server whose launcher was killed stayed up
with a stopped worker under it (2026-12-07).  Linux only; elsewhere this does nothing."""
from virnucpro.forkserver import die_with_parent

die_with_parent()
