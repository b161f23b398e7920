"""The HTTP surface of the process that owns ClickHouse access: live view, summary API, metrics."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reporting.summary import school_summaries
from schemas.clickhouse.engine import ClickHouse

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>learnpulse — live</title>
<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse}td,th{padding:4px 12px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}.hot{background:#e8f7e8}</style></head><body>
<h1>learnpulse — schools live</h1><p id="at">waiting for data…</p>
<table id="t"><thead><tr><th>school</th><th>statements</th><th>learners</th><th>courses</th><th>active (last hour)</th><th>latest event</th></tr></thead><tbody></tbody></table>
<script>
const prev={};
async function tick(){
  const r=await fetch('api/summary'); const rows=await r.json();
  const tb=document.querySelector('#t tbody'); tb.innerHTML='';
  for(const s of rows){const tr=document.createElement('tr'); if(prev[s.school]!==undefined&&prev[s.school]<s.statements) tr.className='hot';
    prev[s.school]=s.statements;
    for(const v of [s.school,s.statements,s.learners,s.courses,s.active_last_hour,s.latest]){const td=document.createElement('td');td.textContent=v;tr.appendChild(td);}
    tb.appendChild(tr);}
  document.querySelector('#at').textContent='updated '+new Date().toLocaleTimeString()+' — '+rows.length+' schools';
}
setInterval(tick,2000); tick();
</script></body></html>"""


def make_app(ch: ClickHouse) -> web.Application:
    async def summary(_request: web.Request) -> web.Response:
        rows = await asyncio.to_thread(school_summaries, ch)
        return web.json_response([asdict(r) for r in rows])

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/summary", summary)
    app.router.add_get("/metrics", metrics)
    return app


def start_web_thread(app: web.Application, port: int) -> threading.Thread:
    """Serve ``app`` on 127.0.0.1:``port`` from a daemon thread with its own event loop."""
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        try:
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        except OSError as err:
            failure.append(err)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=run, name="web", daemon=True)
    t.start()
    ready.wait(10)
    if failure:
        raise OSError(f"web port {port} is taken: {failure[0]}")
    return t
