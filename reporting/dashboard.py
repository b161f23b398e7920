"""The live dashboard: one page for operators, fed by a JSON API over ClickHouse.

Served by the process that owns ClickHouse access (in embedded mode the only process that
can read chDB). Every figure on the page comes from :mod:`reporting` queries, so what an
operator sees is what a researcher gets with the documented SQL.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from aiohttp import web

from schemas.clickhouse.engine import ClickHouse

from .summary import school_summaries

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>learnpulse — live</title>
<style>
:root{--bg:#0f1720;--card:#17212b;--fg:#e6edf3;--dim:#8b98a5;--hot:#2ea043;--warn:#d29922;--bad:#f85149}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:2em;align-items:baseline;padding:1em 1.5em;border-bottom:1px solid #26313c}
h1{font-size:18px;margin:0}.kpi{display:flex;gap:2em}.kpi div{display:flex;flex-direction:column}
.kpi b{font-size:22px;font-variant-numeric:tabular-nums}.kpi span,.dim{color:var(--dim);font-size:12px}
main{padding:1.5em;display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1em}
.school{background:var(--card);border-radius:8px;padding:1em;border:2px solid transparent;transition:border-color .6s}
.school.hot{border-color:var(--hot)}.school h2{font-size:15px;margin:0 0 .5em}
.school dl{display:grid;grid-template-columns:auto auto;gap:.2em 1em;margin:0}.school dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
#status.stale{color:var(--warn)}#status.down{color:var(--bad)}
</style></head><body>
<header><h1>learnpulse — schools live</h1>
<div class="kpi">
 <div><b id="k-statements">–</b><span>statements in ClickHouse</span></div>
 <div><b id="k-rate">–</b><span>statements/s (last update)</span></div>
 <div><b id="k-schools">–</b><span>schools</span></div>
 <div><b id="k-learners">–</b><span>learners</span></div>
</div><span id="status" class="dim">connecting…</span></header>
<main id="schools"></main>
<script>
const prev = {}; let prevTotal = null, prevAt = null;
function fmt(n){return Number(n).toLocaleString('en-US')}
function card(s){
  let el = document.getElementById('school-'+s.school);
  if(!el){el=document.createElement('section');el.className='school';el.id='school-'+s.school;
    el.innerHTML='<h2></h2><dl><dt>statements</dt><dd class="statements"></dd><dt>learners</dt><dd class="learners"></dd>'+
      '<dt>courses</dt><dd class="courses"></dd><dt>active (last event hour)</dt><dd class="active"></dd>'+
      '<dt>latest event</dt><dd class="latest"></dd></dl>';
    el.querySelector('h2').textContent=s.school; document.getElementById('schools').appendChild(el);}
  el.querySelector('.statements').textContent=fmt(s.statements);
  el.querySelector('.learners').textContent=fmt(s.learners);
  el.querySelector('.courses').textContent=fmt(s.courses);
  el.querySelector('.active').textContent=fmt(s.active_last_hour);
  el.querySelector('.latest').textContent=s.latest.slice(0,19);
  el.dataset.statements=s.statements;
  const grew = prev[s.school]!==undefined && s.statements>prev[s.school];
  el.classList.toggle('hot', grew); prev[s.school]=s.statements;
}
async function tick(){
  const st=document.getElementById('status');
  try{
    const r=await fetch('api/summary',{cache:'no-store'}); if(!r.ok) throw new Error(r.status);
    const rows=await r.json(); let total=0, learners=0;
    for(const s of rows){card(s); total+=s.statements; learners+=s.learners;}
    const now=performance.now();
    if(prevTotal!==null){document.getElementById('k-rate').textContent=fmt(Math.round((total-prevTotal)/((now-prevAt)/1000)));}
    prevTotal=total; prevAt=now;
    document.getElementById('k-statements').textContent=fmt(total);
    document.getElementById('k-schools').textContent=fmt(rows.length);
    document.getElementById('k-learners').textContent=fmt(learners);
    st.textContent='updated '+new Date().toLocaleTimeString(); st.className='dim';
  }catch(e){st.textContent='no answer from the server ('+e.message+')'; st.className='down';}
}
setInterval(tick,2000); tick();
</script></body></html>"""


def add_dashboard_routes(app: web.Application, ch: ClickHouse) -> None:
    """Mount the page on ``/`` and its JSON API on ``/api/…`` of ``app``."""

    async def summary(_request: web.Request) -> web.Response:
        rows = await asyncio.to_thread(school_summaries, ch)
        return web.json_response([asdict(r) for r in rows], headers={"Cache-Control": "no-store"})

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_get("/api/summary", summary)
