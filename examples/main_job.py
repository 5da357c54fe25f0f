"""The main job, end to end on the embedded backend (nothing to start).

Creates a run, updates and refreshes it, lists the project's runs, exports the run to YAML
and loads it back. Run it with ``python examples/main_job.py``.
"""

from __future__ import annotations

import asyncio
import tempfile

import asyncrun


async def main() -> None:
    """Create, update, refresh, list, export and load back one run."""
    context = tempfile.mkdtemp(prefix="asyncrun-demo-")
    async with asyncrun.AsyncClient(context=context) as client:
        print(f"backend: {client.endpoint or 'embedded'}")
        run = await client.new_run(
            project="demo",
            kind="python+job",
            spec={"handler": "demo.train:main", "parameters": {"lr": 0.1}},
            labels=["quickstart"],
        )
        print(f"created {run.key} in state {run.status.state}")

        run.spec["parameters"]["lr"] = 0.05
        await run.save(update=True)
        await run.refresh()
        print(f"updated to revision {run.metadata.revision}: lr={run.spec['parameters']['lr']}")

        count = 0
        async for _ in client.list_runs("demo", label="quickstart"):
            count += 1
        print(f"{count} run(s) labelled 'quickstart' in project demo")

        path = await run.export()
        loaded = await client.load_run(path)
        assert loaded == run, "an exported run loads back equal"
        print(f"exported to {path} and loaded back equal")


if __name__ == "__main__":
    asyncio.run(main())
