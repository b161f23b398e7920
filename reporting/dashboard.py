"""The live dashboard: one page for operators, fed by a JSON API over ClickHouse.

Served by the process that owns ClickHouse access (in embedded mode the only process that
can read chDB). Every figure on the page comes from :mod:`reporting` queries, so what an
operator sees is what a researcher gets with the documented SQL. Every answer is scoped to
the signed-in operator (reporting/scope.py); the sign-in itself is the web app's
(learnpulse/signin.py).
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import logging
from collections.abc import Callable
from dataclasses import asdict

from aiohttp import web

from schemas.clickhouse.engine import ClickHouse, ClickHouseError, ClickHouseUnavailable

from .progress import consistent_through
from .alerts import MAX_ALERTS, MAX_NOTE, AlertQuery, acknowledge, alert_cohort, alert_history, alert_page
from .drilldown import MAX_PAGE, FlagRules, cohort_learners, school_cohorts
from .learner import learner_timeline
from .mastery import MASTERED, heatmap_rows
from .pages import ALERTS_PAGE, COHORT_PAGE, LEARNER_PAGE, SCHOOL_PAGE, forbidden_page, page
from .quarantine import refusals_per_school
from .scope import IN_SCOPE, LEARNER_IN_SCOPE, SCOPE_KEY, VIEWER_KEY, Scope
from .summary import school_summaries
from .assets import add_asset_routes
from .trend_panel import trend_panel
from .trends import TREND_CSV_COLUMNS, parse_days, parse_range, school_trends

log = logging.getLogger("learnpulse.dashboard")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>learnpulse — live</title>
<style>
:root{--bg:#0f1720;--card:#17212b;--fg:#e6edf3;--dim:#8b98a5;--hot:#2ea043;--warn:#d29922;--bad:#f85149;--line:#58a6ff}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:2em;align-items:baseline;padding:1em 1.5em;border-bottom:1px solid #26313c}
h1{font-size:18px;margin:0}a{color:var(--line)}h2{font-size:15px;margin:0 0 .5em}.kpi{display:flex;gap:2em;flex-wrap:wrap}.kpi div{display:flex;flex-direction:column}
.kpi b{font-size:22px;font-variant-numeric:tabular-nums}.kpi span,.dim{color:var(--dim);font-size:12px}
.wrap{display:grid;grid-template-columns:minmax(0,3fr) minmax(280px,1fr);gap:1.5em;padding:1.5em}
#schools{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1em;align-content:start}
.school,.panel{background:var(--card);border-radius:8px;padding:1em;border:2px solid transparent;transition:border-color .6s}
.school.hot{border-color:var(--hot)}.school.alerting h2::after{content:" ⚠";color:var(--bad)}
dl{display:grid;grid-template-columns:auto auto;gap:.2em 1em;margin:0}dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
svg.spark{width:100%;height:36px;margin-top:.6em}svg.spark path{fill:none;stroke:var(--line);stroke-width:1.5}
.panel{margin-bottom:1em}.panel ul{list-style:none;margin:0;padding:0}.panel li{padding:.4em 0;border-bottom:1px solid #26313c}
.alert b{color:var(--bad)}table{width:100%;border-collapse:collapse;font-size:12px}td{padding:.2em .3em;border-bottom:1px solid #26313c}
td.n{text-align:right;font-variant-numeric:tabular-nums}#status.down{color:var(--bad)}
.trend-wrap{padding:1.5em 1.5em 0}
</style></head><body>
<header><h1>learnpulse — schools live</h1>
<div class="kpi">
 <div><b id="k-statements">–</b><span>statements in ClickHouse</span></div>
 <div><b id="k-rate">–</b><span>statements/s (last update)</span></div>
 <div><b id="k-schools">–</b><span>schools</span></div>
 <div><b id="k-learners">–</b><span>learners</span></div>
 <div><b id="k-alerts">–</b><span>cohort alerts open</span></div>
 <div><b id="k-lag">–</b><span>seconds behind intake</span></div>
</div><span id="status" class="dim">connecting…</span><!--viewer--></header>
<div class="trend-wrap"><!--trends--></div>
<div class="wrap"><main id="schools"></main>
<aside>
 <section class="panel"><h2>Open cohort alerts <a class="dim" href="alerts">history, acknowledge</a></h2><ul id="alerts"><li class="dim">none</li></ul></section>
 <section class="panel"><h2>Cohorts most at risk</h2><table><tbody id="cohorts"></tbody></table>
  <p class="dim">share of learners disengaged (no activity for 7 days, or 7-day active time far below the cohort median)</p></section>
</aside></div>
<script>
const prev = {}; let prevTotal = null, prevAt = null;
const fmt = n => Number(n).toLocaleString('en-US');
const pct = x => x===null||x===undefined ? '–' : (100*x).toFixed(0)+'%';
const hours = ms => (ms/3600000).toFixed(1)+' h';
const short = iri => String(iri).split('/').filter(Boolean).slice(-1)[0] || iri;
function spark(points){
  if(points.length<2) return '';
  const max=Math.max(...points.map(p=>p[1]),1), t0=points[0][0], t1=points[points.length-1][0]||t0+1;
  const d=points.map((p,i)=>(i?'L':'M')+(100*(p[0]-t0)/Math.max(t1-t0,1)).toFixed(1)+','+(34-32*p[1]/max).toFixed(1)).join('');
  return '<svg class="spark" viewBox="0 0 100 36" preserveAspectRatio="none"><path d="'+d+'"/></svg>';
}
const FIELDS=[['statements','statements',fmt],['learners','learners',fmt],['active last hour','active_last_hour',fmt],
  ['active today','learners_today',fmt],['active 7 days','learners_7d',fmt],
  ['active time today','active_ms_today',hours],['sessions today','sessions_today',fmt],['mean P(mastery)','mastery_mean',pct],
  ['cohorts alerting','cohorts_alerting',(v)=>v],['refused (quarantine)','refused',fmt],
  ['latest event','latest',v=>String(v).slice(0,16)]];
function card(s){
  let el=document.getElementById('school-'+s.school);
  if(!el){el=document.createElement('section');el.className='school';el.id='school-'+s.school;
    el.innerHTML='<h2></h2><dl>'+FIELDS.map(f=>'<dt>'+f[0]+'</dt><dd class="'+f[1]+'"></dd>').join('')+'</dl><div class="sp"></div>';
    const a=document.createElement('a'); a.href='schools/'+encodeURIComponent(s.school); a.textContent=s.school;
    el.querySelector('h2').appendChild(a); document.getElementById('schools').appendChild(el);}
  for(const [,k,f] of FIELDS){el.querySelector('.'+k).textContent=f(s[k]);}
  el.querySelector('.sp').innerHTML=spark(s.hourly||[]);
  el.dataset.statements=s.statements;
  el.classList.toggle('hot', prev[s.school]!==undefined && s.statements>prev[s.school]);
  el.classList.toggle('alerting', s.cohorts_alerting>0);
  prev[s.school]=s.statements;
}
function alerts(list){
  const ul=document.getElementById('alerts'); ul.innerHTML='';
  if(!list.length){ul.innerHTML='<li class="dim">none</li>';return;}
  for(const a of list){const li=document.createElement('li');li.className='alert';
    li.innerHTML='<b></b><br><span class="dim"></span>';
    li.querySelector('b').textContent=a.school+' · '+short(a.course)+' · '+short(a.cohort);
    li.querySelector('span').textContent=pct(a.share)+' of '+a.learners+' learners disengaged (threshold '+pct(a.threshold)+'), since '+a.fired_at.slice(0,16)+
      (a.share_now===null ? '' : '; now '+pct(a.share_now)+' of '+a.learners_now);
    ul.appendChild(li);}
}
function cohorts(list){
  const tb=document.getElementById('cohorts'); tb.innerHTML='';
  for(const c of list){const tr=document.createElement('tr');
    for(const [v,cls] of [[c.school+' · '+short(c.course)+' · '+short(c.cohort),''],[pct(c.share),'n'],[c.disengaged+'/'+c.learners,'n']]){
      const td=document.createElement('td');
      if(!cls){const a=document.createElement('a');a.textContent=v;
        a.href='cohorts/'+[c.school,c.course,c.cohort].map(encodeURIComponent).join('/');td.appendChild(a);}
      else td.textContent=v;
      if(cls)td.className=cls;tr.appendChild(td);}
    tb.appendChild(tr);}
}
async function tick(){
  const st=document.getElementById('status');
  try{
    const r=await fetch('api/state',{cache:'no-store'});
    if(r.status===401){location.reload();return;}
    if(!r.ok) throw new Error(r.status);
    const state=await r.json(); let total=0, learners=0;
    for(const s of state.schools){card(s); total+=s.statements; learners+=s.learners;}
    alerts(state.alerts); cohorts(state.cohorts_at_risk);
    const now=performance.now();
    if(prevTotal!==null){document.getElementById('k-rate').textContent=fmt(Math.max(0,Math.round((total-prevTotal)/((now-prevAt)/1000))));}
    prevTotal=total; prevAt=now;
    document.getElementById('k-statements').textContent=fmt(total);
    document.getElementById('k-schools').textContent=fmt(state.schools.length);
    document.getElementById('k-learners').textContent=fmt(learners);
    document.getElementById('k-alerts').textContent=fmt(state.alerts.length);
    document.getElementById('k-lag').textContent=state.consistent_through ?
      Math.max(0,(Date.now()-Date.parse(state.consistent_through))/1000).toFixed(1) : '–';
    st.textContent='updated '+new Date().toLocaleTimeString(); st.className='dim';
  }catch(e){st.textContent='no answer from the server ('+e.message+')'; st.className='down';}
}
setInterval(tick,2000); tick();
</script></body></html>""".replace("<!--trends-->", trend_panel(for_school=False))


# -- queries -----------------------------------------------------------------------------
# Every count reads ReplacingMergeTree tables with FINAL (or argMax by version), so a
# replayed record is never counted twice; see reporting/README.md. Each reads only the rows
# in the reader's scope (reporting/scope.py), bound as query parameters. The newest day and
# hour come from engagement_periods (migration 0022: the periods engagement has rows in, per
# school), not from a scan of every engagement row.

# Active time and sessions on each school's newest event-time day.
ACTIVE_TODAY_SQL = """
SELECT school, sum(active_ms), sum(sessions), uniqExact(learner)
FROM {db}.engagement_by_time FINAL
WHERE grain = 'day' AND {in_scope}
  AND (school, period_start) IN (SELECT school, max(period_start) FROM {db}.engagement_periods WHERE grain = 'day' GROUP BY school)
GROUP BY school
""".replace("{in_scope}", IN_SCOPE)

# Learners active in the newest 7 event-time days (daily engagement; copies do not change a
# distinct count, so no FINAL).
ACTIVE_7D_SQL = """
SELECT school, uniqExact(learner)
FROM {db}.engagement_by_time
WHERE grain = 'day' AND {in_scope}
  AND period_start > (SELECT max(period_start) FROM {db}.engagement_periods WHERE grain = 'day') - INTERVAL 7 DAY
GROUP BY school
""".replace("{in_scope}", IN_SCOPE)

# Current BKT estimates: mean P(mastery) and the share of learner x skill pairs mastered.
MASTERY_SQL = """
SELECT school, avg(p_mastery), countIf(p_mastery >= {mastered:Float64}) / count()
FROM {db}.mastery FINAL
WHERE {learner_in_scope}
GROUP BY school
""".replace("{learner_in_scope}", LEARNER_IN_SCOPE)

# Latest health snapshot per cohort.
COHORTS_SQL = """
SELECT school, course, cohort, argMax(share, at), argMax(learners, at), argMax(disengaged, at), toString(max(at))
FROM {db}.cohort_health FINAL
WHERE {in_scope}
GROUP BY school, course, cohort
""".replace("{in_scope}", IN_SCOPE)

# Alert episodes whose latest state is "fired".
OPEN_ALERTS_SQL = """
SELECT alert_id, school, course, cohort, argMax(share, version), argMax(learners, version),
       argMax(disengaged, version), argMax(threshold, version), toString(min(fired_at))
FROM {db}.alerts FINAL
WHERE {in_scope}
GROUP BY alert_id, school, course, cohort
HAVING argMax(state, version) = 'fired'
ORDER BY min(fired_at) DESC
""".replace("{in_scope}", IN_SCOPE)

# Statements per event-time hour over the newest 24 hours (the sparkline), from hourly
# engagement: learning statements (voiding statements are bookkeeping, not activity).
# engagement_hourly (migration 0023) holds each cohort's hour of engagement FINAL, summed
# (recomputed by the engagement sink): the same sums over one row per cohort and hour.
HOURLY_SQL = """
SELECT school, toUnixTimestamp(period_start), sum(statements)
FROM {db}.engagement_hourly FINAL
WHERE {in_scope}
  AND period_start > (SELECT max(period_start) FROM {db}.engagement_periods WHERE grain = 'hour') - INTERVAL 24 HOUR
GROUP BY school, period_start
ORDER BY school, period_start
""".replace("{in_scope}", IN_SCOPE)

def dashboard_state(ch: ClickHouse, scope: Scope) -> dict:
    """Everything the page shows to a reader with ``scope``, in one JSON-ready dict."""
    p = scope.params()
    schools = {r.school: {**asdict(r), "active_ms_today": 0, "sessions_today": 0, "learners_today": 0, "learners_7d": 0,
                          "mastery_mean": None, "mastered_share": None, "cohorts": 0, "cohorts_alerting": 0,
                          "hourly": [], "refused": 0}
               for r in school_summaries(ch, scope)}
    for school, active_ms, sessions, learners in ch.query(ACTIVE_TODAY_SQL, p):
        if school in schools:
            schools[school].update(active_ms_today=int(active_ms), sessions_today=int(sessions),
                                   learners_today=int(learners))
    for school, learners in ch.query(ACTIVE_7D_SQL, p):
        if school in schools:
            schools[school]["learners_7d"] = int(learners)
    for school, mean, mastered in ch.query(MASTERY_SQL, {**p, "mastered": MASTERED}):
        if school in schools:
            schools[school].update(mastery_mean=float(mean), mastered_share=float(mastered))
    cohorts = [
        {"school": r[0], "course": r[1], "cohort": r[2], "share": float(r[3]), "learners": int(r[4]),
         "disengaged": int(r[5]), "at": str(r[6])}
        for r in ch.query(COHORTS_SQL, p)
    ]
    alerts = [
        {"alert_id": r[0], "school": r[1], "course": r[2], "cohort": r[3], "share": float(r[4]), "learners": int(r[5]),
         "disengaged": int(r[6]), "threshold": float(r[7]), "fired_at": str(r[8])}
        for r in ch.query(OPEN_ALERTS_SQL, p)
    ]
    latest = {(c["school"], c["course"], c["cohort"]): c for c in cohorts}
    for a in alerts:
        now = latest.get((a["school"], a["course"], a["cohort"]))
        a["share_now"] = now["share"] if now else None
        a["learners_now"] = now["learners"] if now else None
    for c in cohorts:
        if c["school"] in schools:
            schools[c["school"]]["cohorts"] += 1
    for a in alerts:
        if a["school"] in schools:
            schools[a["school"]]["cohorts_alerting"] += 1
    for school, hour, n in ch.query(HOURLY_SQL, p):
        if school in schools:
            schools[school]["hourly"].append([int(hour), int(n)])
    # Statements refused at the edge and not (yet) accepted by a re-drive (the quarantine):
    # a school-wide figure, for readers of whole schools only (none: no query).
    refusals = refusals_per_school(ch, scope=scope) if scope.every_school or scope.schools else {}
    for school, (_records, refused) in refusals.items():
        if school in schools:
            schools[school]["refused"] = refused
    cohorts.sort(key=lambda c: -c["share"])
    through = consistent_through(ch)
    return {
        "schools": list(schools.values()),
        "alerts": alerts,
        "cohorts_at_risk": cohorts[:10],
        # Every statement accepted before this time is in ClickHouse (sink progress).
        "consistent_through": through.isoformat() if through else None,
    }


def _refuse(status: int, rule: str, message: str) -> web.Response:
    return web.json_response({"error": f"{rule}: {message}", "rule": rule}, status=status,
                             headers={"Cache-Control": "no-store"})  # fmt: skip


COHORT_CSV_COLUMNS = ("course", "cohort", "statements", "learners", "active_learners_7d", "active_ms_7d", "mastery_mean",
                      "latest", "share", "health_learners", "disengaged", "open_alerts")  # fmt: skip
ALERT_CSV_COLUMNS = ("alert_id", "school", "course", "cohort", "state", "fired_at", "changed_at", "share", "learners",
                     "disengaged", "threshold", "acknowledgements", "disengaged_learners")  # fmt: skip
MASTERY_CSV_COLUMNS = ("learner", "name", "skill", "p_mastery")
LEARNER_CSV_COLUMNS = ("learner", "name", "last_seen", "days_since_seen", "active_ms_7d", "sessions_7d", "vs_median", "flags")


def to_csv(columns: tuple[str, ...], rows: list[dict]) -> str:
    """RFC 4180 CSV; a cell a spreadsheet would run as a formula gets a leading quote mark."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else _inert(str(row[c])) for c in columns])
    return out.getvalue()


def _inert(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(cell) else cell


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _whole(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise ValueError(f"dashboard.paging: {name} must be a whole number, got {text[:20]!r}")
    return int(text)


UNAUTHENTICATED = ("auth.required", "sign in first (POST /signin); every dashboard answer is scoped to its reader")


def add_dashboard_routes(
    app: web.Application, ch: ClickHouse, signin_path: str = "/signin",
    flag_rules: Callable[[str], FlagRules] = lambda _school: FlagRules(),
) -> None:  # fmt: skip
    """Mount the page on ``/`` and its JSON API on ``/api/…`` of ``app``.

    Every answer is for the reader the sign-in put on the request (``SCOPE_KEY``): none is
    401 (API) or a redirect to ``signin_path`` (page); a school or cohort outside the
    reader's scope is 403, and every query filters by the scope itself. ``flag_rules``: the
    disengagement thresholds of a school (the stream worker's), to say why a learner is flagged.
    """

    def scope_of(request: web.Request) -> Scope | None:
        scope = request.get(SCOPE_KEY)
        return scope if isinstance(scope, Scope) else None

    async def answer(fn, *args) -> web.Response:
        """``fn(*args)`` off the loop, as JSON; ClickHouse failing is a 503 naming the rule, never a 500."""
        try:
            body = await asyncio.to_thread(fn, *args)
        except (ClickHouseError, ClickHouseUnavailable) as err:
            log.warning("dashboard query failed: %s", err)
            return _refuse(503, "dashboard.unavailable", "ClickHouse did not answer; retry shortly")
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def summary(request: web.Request) -> web.Response:
        if (scope := scope_of(request)) is None:
            return _refuse(401, *UNAUTHENTICATED)
        return await answer(lambda: [asdict(r) for r in school_summaries(ch, scope)])

    async def state(request: web.Request) -> web.Response:
        if (scope := scope_of(request)) is None:
            return _refuse(401, *UNAUTHENTICATED)
        return await answer(dashboard_state, ch, scope)

    async def trends(request: web.Request) -> web.Response:
        if (scope := scope_of(request)) is None:
            return _refuse(401, *UNAUTHENTICATED)
        name = request.query.get("school", "")
        if name and not scope.touches_school(name):
            return _refuse(403, "scope.school", f"school {name[:200]!r} is outside what you may see")
        try:
            rng = parse_range(request.query)
        except ValueError as err:
            return _refuse(400, "dashboard.range", str(err))
        if request.query.get("format") == "csv":
            return await answer_csv("trends.csv", TREND_CSV_COLUMNS, lambda: school_trends(ch, scope, rng, name)["points"])
        return await answer(school_trends, ch, scope, rng, name)

    async def school(request: web.Request) -> web.Response:
        if (scope := scope_of(request)) is None:
            return _refuse(401, *UNAUTHENTICATED)
        name = request.match_info["school"]
        if not scope.touches_school(name):
            return _refuse(403, "scope.school", f"school {name!r} is outside what you may see")
        try:
            offset = _whole(request.query.get("offset", "0"), "offset")
            limit = _whole(request.query.get("limit", str(MAX_PAGE)), "limit")
        except ValueError as err:
            return _refuse(400, "dashboard.paging", str(err))
        search = request.query.get("q", "")[:200]
        if request.query.get("format") == "csv":
            return await answer_csv(f"{name}-cohorts.csv", COHORT_CSV_COLUMNS,
                                    lambda: school_cohorts(ch, scope, name, search, offset, limit)["cohorts"])  # fmt: skip
        return await answer(lambda: {"school": name, "whole_school": scope.whole_school(name),
                                     **school_cohorts(ch, scope, name, search, offset, limit)})  # fmt: skip

    def cohort_scope(request: web.Request) -> Scope | web.Response:
        """The reader's scope when it covers the cohort the URL names, else the 401 or 403 answer."""
        if (scope := scope_of(request)) is None:
            return _refuse(401, *UNAUTHENTICATED)
        m = request.match_info
        if not scope.allows_cohort(m["school"], m["course"], m["cohort"]):
            return _refuse(403, "scope.cohort", f"cohort {m['cohort']!r} of {m['course']!r} in {m['school']!r} is "
                           "outside what you may see")  # fmt: skip
        return scope

    async def cohort(request: web.Request) -> web.Response:
        if isinstance(scope := cohort_scope(request), web.Response):
            return scope
        m = request.match_info
        rules = flag_rules(m["school"])
        table = request.query.get("table", "learners")
        if request.query.get("format") == "csv" and table == "mastery":
            # The heatmap: one row per learner x skill with an estimate.
            return await answer_csv("cohort-mastery.csv", MASTERY_CSV_COLUMNS, lambda: heatmap_rows(
                cohort_learners(ch, scope, m["school"], m["course"], m["cohort"], rules)))  # fmt: skip
        if request.query.get("format") == "csv" and table != "learners":
            return _refuse(400, "dashboard.csv_table", "table must be learners or mastery")
        if request.query.get("format") == "csv":
            return await answer_csv("cohort-learners.csv", LEARNER_CSV_COLUMNS, lambda: [
                {**x, "flags": " ".join(f["rule"] for f in x["flags"])}
                for x in cohort_learners(ch, scope, m["school"], m["course"], m["cohort"], rules)["learners"]
            ])  # fmt: skip
        return await answer(cohort_learners, ch, scope, m["school"], m["course"], m["cohort"], rules)

    async def learner(request: web.Request) -> web.Response:
        if isinstance(scope := cohort_scope(request), web.Response):
            return scope
        m = request.match_info
        try:
            body = await asyncio.to_thread(learner_timeline, ch, scope, m["school"], m["course"], m["cohort"],
                                           m["learner"])  # fmt: skip
        except (ClickHouseError, ClickHouseUnavailable) as err:
            log.warning("dashboard query failed: %s", err)
            return _refuse(503, "dashboard.unavailable", "ClickHouse did not answer; retry shortly")
        if body is None:
            return _refuse(404, "dashboard.learner", "no such learner in this cohort")
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def alerts(request: web.Request) -> web.Response:
        if (scope := scope_of(request)) is None:
            return _refuse(401, *UNAUTHENTICATED)
        try:
            first, last = parse_days(request.query)
            which = AlertQuery(
                only_open=request.query.get("open", "") in ("1", "true"), first=first, last=last,
                search=request.query.get("q", "")[:200], offset=_whole(request.query.get("offset", "0"), "offset"),
                limit=_whole(request.query.get("limit", str(MAX_ALERTS)), "limit"),
            )  # fmt: skip
        except ValueError as err:
            rule = "dashboard.range" if str(err).startswith("dashboard.range") else "dashboard.paging"
            return _refuse(400, rule, str(err))
        if request.query.get("format") == "csv":
            return await answer_csv("alerts.csv", ALERT_CSV_COLUMNS, lambda: [
                {**a, "acknowledgements": " | ".join(f"{k['operator']} {k['at']}: {k['note']}" for k in a["acknowledgements"]),
                 "disengaged_learners": "; ".join(x["name"] or x["learner"] for x in a["disengaged_learners"])}
                for a in alert_history(ch, scope, which)
            ])  # fmt: skip
        return await answer(alert_page, ch, scope, which)

    async def acknowledge_alert(request: web.Request) -> web.Response:
        # The sign-in middleware let this POST through only with a session and its CSRF token.
        if (scope := scope_of(request)) is None:
            return _refuse(401, *UNAUTHENTICATED)
        alert_id = request.match_info["alert_id"]
        if request.content_type != "application/json":
            return _refuse(415, "alerts.content_type", 'send {"note": "…"} as application/json')
        try:
            doc = await request.json()
        except ValueError:
            return _refuse(400, "alerts.note", 'the body is not JSON; send {"note": "…"}')
        note = doc.get("note") if isinstance(doc, dict) else None
        if not isinstance(note, str) or not note.strip() or len(note) > MAX_NOTE:
            return _refuse(400, "alerts.note", f"a note of 1 to {MAX_NOTE} characters is required")
        try:
            cohort_of = await asyncio.to_thread(alert_cohort, ch, alert_id)
            if cohort_of is None:
                return _refuse(404, "alerts.unknown", f"no alert {alert_id[:64]!r}")
            if not scope.allows_cohort(*cohort_of):
                return _refuse(403, "scope.cohort", "this alert's cohort is outside what you may see")
            operator = request[VIEWER_KEY]["name"]
            ack = await asyncio.to_thread(acknowledge, ch, alert_id, cohort_of, operator, note.strip())
        except (ClickHouseError, ClickHouseUnavailable) as err:
            log.warning("alert acknowledgement failed: %s", err)
            return _refuse(503, "dashboard.unavailable", "ClickHouse did not answer; nothing was recorded, retry")
        log.info("alert %s acknowledged by %s", alert_id, operator)
        return web.json_response(ack, status=201, headers={"Cache-Control": "no-store"})

    async def answer_csv(filename: str, columns: tuple[str, ...], rows_of) -> web.Response:
        try:
            rows = await asyncio.to_thread(rows_of)
        except (ClickHouseError, ClickHouseUnavailable) as err:
            log.warning("dashboard query failed: %s", err)
            return _refuse(503, "dashboard.unavailable", "ClickHouse did not answer; retry shortly")
        return web.Response(text=to_csv(columns, rows), content_type="text/csv", charset="utf-8",
                            headers={"Cache-Control": "no-store",
                                     "Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip

    def viewer_bar(request: web.Request) -> str | None:
        viewer = request.get(VIEWER_KEY)
        if scope_of(request) is None or not isinstance(viewer, dict):
            return None
        return _VIEWER_BAR.format(name=html.escape(viewer["name"]), role=html.escape(viewer["role"]),
                                  csrf=html.escape(viewer["csrf"]), signout=html.escape(viewer.get("signout", "/signout")))  # fmt: skip

    def html_page(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def index(request: web.Request) -> web.Response:
        if (bar := viewer_bar(request)) is None:
            raise web.HTTPSeeOther(signin_path)
        return html_page(_PAGE.replace("<!--viewer-->", bar))

    async def school_page(request: web.Request) -> web.Response:
        if (bar := viewer_bar(request)) is None:
            raise web.HTTPSeeOther(signin_path)
        name = request.match_info["school"]
        if not scope_of(request).touches_school(name):
            return html_page(forbidden_page(f"School {name!r}", "scope.school"), 403)
        return html_page(page(SCHOOL_PAGE, name, bar))

    def cohort_page_refusal(request: web.Request) -> web.Response | None:
        """The 403 page when the reader's scope does not cover the cohort the URL names."""
        m = request.match_info
        if scope_of(request).allows_cohort(m["school"], m["course"], m["cohort"]):
            return None
        return html_page(forbidden_page(f"Cohort {m['cohort']!r} of {m['course']!r} in {m['school']!r}",
                                        "scope.cohort"), 403)  # fmt: skip

    async def cohort_page(request: web.Request) -> web.Response:
        if (bar := viewer_bar(request)) is None:
            raise web.HTTPSeeOther(signin_path)
        m = request.match_info
        if (refused := cohort_page_refusal(request)) is not None:
            return refused
        return html_page(page(COHORT_PAGE, m["cohort"], bar))

    async def alerts_page(request: web.Request) -> web.Response:
        if (bar := viewer_bar(request)) is None:
            raise web.HTTPSeeOther(signin_path)
        return html_page(page(ALERTS_PAGE, "alerts", bar))

    async def learner_page(request: web.Request) -> web.Response:
        if (bar := viewer_bar(request)) is None:
            raise web.HTTPSeeOther(signin_path)
        m = request.match_info
        if (refused := cohort_page_refusal(request)) is not None:
            return refused
        return html_page(page(LEARNER_PAGE, m["learner"][:12], bar))

    app.router.add_get("/", index)
    app.router.add_get("/alerts", alerts_page)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_post("/api/alerts/{alert_id}/acknowledgements", acknowledge_alert)
    app.router.add_get("/schools/{school}", school_page)
    app.router.add_get("/cohorts/{school}/{course}/{cohort}", cohort_page)
    app.router.add_get("/cohorts/{school}/{course}/{cohort}/learners/{learner}", learner_page)
    app.router.add_get("/api/summary", summary)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/trends", trends)
    add_asset_routes(app)
    app.router.add_get("/api/schools/{school}", school)
    app.router.add_get("/api/cohorts/{school}/{course}/{cohort}", cohort)
    app.router.add_get("/api/cohorts/{school}/{course}/{cohort}/learners/{learner}", learner)


# Who is signed in, and sign-out (a form POST carrying the session's CSRF token).
_VIEWER_BAR = (
    '<form id="viewer" method="post" action="{signout}" class="dim">signed in as <b id="viewer-name">{name}</b> '
    '(<span id="viewer-role">{role}</span>) <input type="hidden" name="csrf" value="{csrf}">'
    '<button type="submit">sign out</button></form>'
)
