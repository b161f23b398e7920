"""The chart library the dashboard's pages load: Observable Plot on d3, from npm.

``make setup`` installs them into ``reporting/web/node_modules`` (``reporting/web/package.json``
pins the versions); the app serves the two built files under ``/assets/``. They hold no data,
so they need no sign-in. Without them (a checkout that skipped the set-up) the pages still
show every figure as a table, and say the charts are missing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web

log = logging.getLogger("learnpulse.dashboard")

# An installed (non-editable) package has no node_modules beside it: the container image
# installs them elsewhere and names the directory (Dockerfile).
NODE_MODULES = Path(os.environ.get("LEARNPULSE_CHARTS_DIR") or Path(__file__).resolve().parent / "web" / "node_modules")
CHART_SCRIPTS = {
    "d3.min.js": NODE_MODULES / "d3" / "dist" / "d3.min.js",
    "plot.umd.min.js": NODE_MODULES / "@observablehq" / "plot" / "dist" / "plot.umd.min.js",
}
ASSETS_PATH = "/assets"
# What a page includes: the library first (Plot reads the global d3), then Plot.
CHART_TAGS = "".join(f'<script src="{ASSETS_PATH}/{name}" defer></script>' for name in CHART_SCRIPTS)


def add_asset_routes(app: web.Application) -> None:
    """``GET /assets/{name}`` for the chart scripts installed by the set-up; 404 naming the fix when missing."""
    missing = [str(p) for p in CHART_SCRIPTS.values() if not p.is_file()]
    if missing:
        log.warning("chart library not installed (run `make setup`): %s; pages show tables only", ", ".join(missing))

    async def asset(request: web.Request) -> web.StreamResponse:
        path = CHART_SCRIPTS.get(request.match_info["name"])
        if path is None or not path.is_file():
            return web.json_response({"error": "assets.missing: not installed; run `make setup`",
                                      "rule": "assets.missing"}, status=404)  # fmt: skip
        # Versions are pinned in package.json: a day's caching is safe, and a new set-up renames nothing.
        return web.FileResponse(path, headers={"Content-Type": "text/javascript; charset=utf-8",
                                               "Cache-Control": "public, max-age=86400"})  # fmt: skip

    app.router.add_get(ASSETS_PATH + "/{name}", asset)
