"""Retry and polling delays: exponential backoff with jitter, honouring server hints.

Pure: the caller passes the attempt number and a random number in [0, 1).
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Backoff:
    """Exponential backoff with full jitter.

    Attributes:
        base: Delay of the first retry, in seconds.
        factor: Growth per attempt.
        cap: Longest delay.
        jitter: Fraction of the delay that is randomised (0 = none, 1 = full jitter).
    """

    base: float = 0.05
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, random: float, hint: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based).

        Args:
            attempt: How many retries came before this one.
            random: A uniform random number in [0, 1).
            hint: A server's ``Retry-After``, which wins when it is longer.
        """
        raw = min(self.cap, self.base * self.factor**attempt)
        delay = raw * (1 - self.jitter) + raw * self.jitter * random
        return max(delay, hint) if hint is not None else delay
