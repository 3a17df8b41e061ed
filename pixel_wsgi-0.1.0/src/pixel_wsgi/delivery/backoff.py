"""When to try again: exponential backoff with full jitter, and when to give up.

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the n-th retry
waits a uniformly random time between 0 and ``min(cap, base * 2**n)``, so workers
that failed together do not come back together. A platform's ``Retry-After`` is a
floor. Rows are given up (dead-lettered) once they have waited :data:`GIVE_UP_AFTER`.
"""

from __future__ import annotations

import random
from datetime import timedelta

__all__ = ["BASE", "CAP", "GIVE_UP_AFTER", "retry_delay"]

#: The first retry's ceiling: retries start after about a second.
BASE = timedelta(seconds=1)
#: The longest wait between two tries.
CAP = timedelta(hours=4)
#: A row still failing this long after it was queued is dead-lettered with its reason.
GIVE_UP_AFTER = timedelta(days=3)


def retry_delay(
    failures: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> timedelta:
    """How long to wait after ``failures`` failed tries in a row (1 for the first).

    :param retry_after: seconds the platform asked for: the delay is never shorter.
    """
    exponent = min(max(failures, 1) - 1, 32)
    ceiling = min(CAP.total_seconds(), BASE.total_seconds() * 2.0**exponent)
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, CAP.total_seconds()))
    return timedelta(seconds=delay)
