"""The client's own random numbers (retry jitter).

The global ``random`` state belongs to the user's program (a seeded simulation, Hypothesis):
a retry in a background thread must never move it.
"""

from __future__ import annotations

import random

jitter = random.Random().random
"""A uniform number in [0, 1) from the client's own generator."""
