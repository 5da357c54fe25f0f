"""Handlers of the python+job runs the CLI tests start (imported by the job's child process)."""

from __future__ import annotations

import math


def train(epochs: int, lr: float = 0.1) -> dict[str, float]:
    import asyncrun

    run = asyncrun.current_run()
    loss = 1.0
    for epoch in range(epochs):
        loss *= 1 - lr
        print(f"epoch {epoch} loss {loss:.4f}")
        run.log_metric("loss", loss)
    run.log_metric("accuracy", 0.9, single_value=True)
    run.log_metric("gappy", [1.0, math.nan, 3.0, 4.0])
    return {"epochs": epochs, "lr": lr, "loss": loss}
