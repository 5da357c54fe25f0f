"""The dashboard's files ship with the package and hold together (no browser needed).

The browser tests are in tests/ui (``nox -s ui``); these check, in the default run, what a
broken package would show only there: every module the page imports is served, every vendored
library has its licence, and the page's import map is allowed by the policy it is served with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

from asyncrun.server._dashboard import Dashboard

# Static imports: `import x from 'y';`, `import { a,\n b } from "y"`, `import'y'` (minified too).
IMPORT = re.compile(r"""(?:^|[;\n])\s*import\s*(?:[\w*{}\s,$]+?\s*from\s*)?["']([^"']+)["']""")


def test_every_module_the_page_imports_is_served() -> None:
    files = Dashboard().files
    index = files["index.html"][0].decode()
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', index, re.S)[1])
    mapped = {name: path.removeprefix("./") for name, path in imports["imports"].items()}
    for path in mapped.values():
        assert path.removeprefix("ui/") in files, path
    for src in re.findall(r'(?:src|href)="(ui/[^"]+)"', index):
        assert src.removeprefix("ui/") in files, src
    for name, (body, kind, _) in files.items():
        if not name.endswith(".js"):
            continue
        assert kind.startswith("text/javascript")
        folder = name.rpartition("/")[0]
        for match in IMPORT.finditer(body.decode()):
            target = match[1]
            if target.startswith("."):
                parts = [*folder.split("/"), *target.split("/")]
                resolved: list[str] = []
                for part in parts:
                    if part == "..":
                        resolved.pop()
                    elif part not in (".", ""):
                        resolved.append(part)
                assert "/".join(resolved) in files, (name, target)
            else:
                assert target in mapped, (name, target)


def test_every_vendored_library_has_its_licence() -> None:
    files = Dashboard().files
    libraries = {name.split("/")[1] for name in files if name.startswith("vendor/")} - {
        "VERSIONS.txt"
    }
    assert libraries == {"preact", "htm", "uplot"}
    for library in libraries:
        assert f"vendor/{library}/LICENSE" in files
        assert library in files["vendor/VERSIONS.txt"][0].decode()


def test_the_policy_allows_the_import_map_and_nothing_inline_else() -> None:
    dashboard = Dashboard()
    index = dashboard.files["index.html"][0]
    policy = dashboard.headers["Content-Security-Policy"]
    scripts = re.findall(rb"<script([^>]*)>(.*?)</script>", index, re.S)
    inline = [body for attrs, body in scripts if b"src=" not in attrs]
    assert len(inline) == 1  # the import map
    digest = base64.b64encode(hashlib.sha256(inline[0]).digest()).decode()
    assert f"'sha256-{digest}'" in policy
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
