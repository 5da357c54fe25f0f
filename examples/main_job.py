"""The main job, end to end on the embedded backend (nothing to start).

Starts a python+job run, streams its logs while it runs, waits for it, prints the metrics it
logged, exports it to YAML and loads it back. Run it with ``python examples/main_job.py``; set
``ASYNCRUN_ENDPOINT`` to run the same against an ``asyncrun server``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import asyncrun


async def main() -> None:
    """Run one job through its whole life."""
    # asyncrun's own progress (state changes) at INFO; every other library (httpx logs each
    # request at INFO) stays at WARNING: configure the loggers you want, not the root's level.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("asyncrun").setLevel(logging.INFO)
    context = tempfile.mkdtemp(prefix="asyncrun-demo-")
    async with asyncrun.AsyncClient(context=context) as client:
        print(f"backend: {client.endpoint or 'embedded'}")
        run = await client.new_run(
            project="demo",
            kind="python+job",
            spec={
                "handler": "demo_job:train",
                "parameters": {"epochs": 5, "lr": 0.2},
                "cwd": str(Path(__file__).parent),
            },
            labels=["quickstart"],
        )
        await run.run()
        print(f"started {run.key}")
        async for line in run.logs(follow=True):
            print(f"  [{line.stream} {line.offset}] {line.text}")
        await run.wait(timeout=120)
        print(f"finished: {run.status.state}, result {run.result()}")
        for key, value in run.metrics.items():
            print(f"  metric {key} = {value}")
        path = await run.export()
        assert await client.load_run(path) == run, "an exported run loads back equal"
        print(f"exported to {path}")


if __name__ == "__main__":
    asyncio.run(main())
