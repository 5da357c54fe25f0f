"""``asyncrun metrics ID --plot KEY``: a metric's values as a line chart drawn with plotext.

plotext renders the chart to a string (it does not need a terminal), so the same chart goes
to a terminal (coloured) and to a pipe or a test (plain characters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_X_TICKS = 7


def _nice_step(raw: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at least ``raw``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= raw:
                return factor * magnitude
        magnitude *= 10


def x_ticks(count: int) -> list[int]:
    """Step numbers to label on the x axis: round multiples (10, 20, ...), and 1 if apart."""
    step = _nice_step((count - 1) / (MAX_X_TICKS - 1))
    ticks = list(range(step, count + 1, step))
    if not ticks or ticks[0] - 1 > step / 2:
        ticks.insert(0, 1)
    return ticks


def render_chart(values: Sequence[float], *, width: int, height: int, color: bool) -> str:
    """Draw ``values`` against their step numbers (1, 2, ...): NaN and infinities are gaps.

    Args:
        values: The metric's values, in logging order.
        width: Columns of the whole chart, axes included.
        height: Rows of the whole chart, axes included.
        color: Colour the line (ANSI escapes); ``False`` gives plain characters.

    Returns:
        The chart, lines joined by newlines, without a final newline.
    """
    import plotext  # type: ignore[import-untyped]  # imported on use: it loads a C++ kernel

    points = [(step, v) for step, v in enumerate(values, 1) if math.isfinite(v)]
    figure = plotext.figure
    figure.clear()
    signal = figure.signal([x for x, _ in points], [float(y) for _, y in points])
    signal.lines()
    for index in range(1, len(points)):
        if points[index][0] != points[index - 1][0] + 1:
            signal.line(index, False)  # a NaN or infinity between: leave a gap
    figure.draw(signal)
    figure.ruler("x").ticks(x_ticks(len(values)))
    figure.theme("simple" if color else "colorless")
    figure.plot_size(width, height)
    text: str = figure.build().string(colorless=not color)
    return "\n".join(line.rstrip() for line in text.splitlines())
