"""Run inside the plug-in's virtual environment: ``python driver.py embedded|URL``.

Runs ``greet+job`` end to end and prints what the test asserts, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import asyncrun


async def main(where: str) -> dict[str, Any]:
    backend: dict[str, Any] = {} if where == "embedded" else {"endpoint": where}
    project = f"p-{uuid.uuid4().hex[:12]}"
    out: dict[str, Any] = {}
    async with asyncrun.AsyncClient(**backend) as client:
        run = await client.new_run(project, "greet+job", spec={"name": "plug-in", "times": 3})
        await run.run()
        await run.wait(timeout=60)
        out["state"] = run.status.state.value
        out["message"] = run.status.message
        out["greeting"] = run.greeting()
        out["exit_code"] = run.status.extra.get("exit_code")
        out["logs"] = [[line.stream, line.text] async for line in run.logs()]
        out["metrics"] = {key: s.last for key, s in run.metric_summary.items()}

        failing = await client.new_run(project, "greet+job", spec={"name": "x", "fail": True})
        await failing.run()
        await failing.wait(timeout=60)
        out["failing"] = [failing.status.state.value, failing.status.message]

        for kind, spec in (("greet+job", {"name": 1}), ("broken+job", {})):
            try:
                await client.new_run(project, kind, spec=spec)
                out[kind] = None
            except asyncrun.ValidationError as exc:
                out[kind] = str(exc)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
