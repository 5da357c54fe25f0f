"""A small training job for the main-job example: prints progress and logs metrics."""

from __future__ import annotations

import math
import time

import asyncrun


def train(epochs: int = 5, lr: float = 0.1) -> dict[str, float]:
    """Pretend to train: one log line and a few metrics per epoch."""
    run = asyncrun.current_run()  # the sync Run of this job
    loss = 1.0
    for epoch in range(1, epochs + 1):
        loss *= math.exp(-lr * epoch)
        print(f"epoch {epoch}/{epochs}: loss={loss:.4f}")
        run.log_metric("loss", loss)  # buffered; flushed on a timer and when the job exits
        run.log_metrics({"epoch": epoch, "lr": [lr]})
        time.sleep(0.05)
    run.log_metric("final_loss", loss, single_value=True)
    return {"loss": loss}
