"""The drill-down pages: a school's cohorts, a cohort's learners. Each fills itself from the
dashboard's API (reporting/dashboard.py), so it shows exactly what the API lets its reader see.

A page for a school or cohort outside the reader's scope is a 403 page, never the page.
"""

from __future__ import annotations

import html

from .mastery_panels import heatmap_panel, mastery_time_panel
from .trend_panel import trend_panel

_STYLE = """<style>
:root{--bg:#0f1720;--card:#17212b;--fg:#e6edf3;--dim:#8b98a5;--bad:#f85149;--line:#58a6ff}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:1.5em;align-items:baseline;padding:1em 1.5em;border-bottom:1px solid #26313c}
h1{font-size:18px;margin:0}main{padding:1.5em}a{color:var(--line)}.dim{color:var(--dim);font-size:12px}
table{width:100%;border-collapse:collapse;background:var(--card)}th,td{padding:.35em .5em;border-bottom:1px solid #26313c;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.flag{color:var(--bad)}
.tools{display:flex;gap:1em;align-items:center;margin-bottom:1em}input,button{font:inherit;padding:.3em .5em}
h2{font-size:15px;margin:0 0 .5em}.panel{background:var(--card);border-radius:8px;padding:1em;margin-bottom:1.5em}
</style>"""

_HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>learnpulse — {title}</title>""" + _STYLE

_SCHOOL_PAGE = _HEAD + """</head><body>
<header><h1><a href="/">schools</a> › <span id="school"></span></h1><span id="status" class="dim">loading…</span><!--viewer--></header>
<main>
<!--trends-->
<h2>Courses and cohorts</h2>
<div class="tools"><label>search <input id="q" type="search" placeholder="course or cohort"></label>
 <button id="prev" type="button">‹ previous</button><span id="page" class="dim"></span><button id="next" type="button">next ›</button>
 <a id="csv" href="#">CSV</a></div>
<table><thead><tr><th>course</th><th>cohort</th><th class="n">statements</th><th class="n">learners</th>
<th class="n">active learners, 7 days</th><th class="n">active time, 7 days</th><th>active learners per day, 14 days</th>
<th class="n">mean P(mastery)</th><th class="n">disengaged</th><th class="n">open alerts</th><th>latest event</th></tr></thead>
<tbody id="cohorts"></tbody></table>
<p id="through" class="dim"></p>
<p id="empty" class="dim" hidden>No cohorts here yet: nothing has arrived for this school in your scope.</p>
</main>
<script>
const school = decodeURIComponent(location.pathname.split('/')[2]);
const enc = encodeURIComponent, LIMIT = 50; let offset = 0;
document.getElementById('school').textContent = school;
const pct = x => x===null ? '–' : (100*x).toFixed(0)+'%';
const hours = ms => (ms/3600000).toFixed(1)+' h';
// A sparkline of [day, active learners] over the 14 days; its label says every figure.
function spark(points){
  const svg=document.createElementNS('http://www.w3.org/2000/svg','svg'); svg.setAttribute('viewBox','0 0 100 24');
  svg.setAttribute('width','100'); svg.setAttribute('height','24'); svg.setAttribute('role','img');
  svg.setAttribute('aria-label', points.length ? 'active learners per day: '+points.map(p=>p[1]).join(', ') : 'no activity');
  if(points.length){ const t0=points[0][0], span=Math.max(points[points.length-1][0]-t0,1), max=Math.max(...points.map(p=>p[1]),1);
    const path=document.createElementNS('http://www.w3.org/2000/svg','polyline');
    path.setAttribute('points', points.map(p=>(100*(p[0]-t0)/span).toFixed(1)+','+(22-20*p[1]/max).toFixed(1)).join(' '));
    path.setAttribute('fill','none'); path.setAttribute('stroke','#58a6ff'); path.setAttribute('stroke-width','1.5'); svg.appendChild(path);}
  return svg;
}
function api(extra){ const q=document.getElementById('q').value;
  return '/api/schools/'+enc(school)+'?q='+enc(q)+'&offset='+offset+'&limit='+LIMIT+(extra||''); }
async function load(){
  const st=document.getElementById('status');
  try{
    const r=await fetch(api(),{cache:'no-store'}); if(r.status===401){location.reload();return;}
    if(!r.ok) throw new Error(r.status);
    const body=await r.json(), tb=document.getElementById('cohorts'); tb.innerHTML='';
    for(const c of body.cohorts){ const tr=document.createElement('tr');
      const link=document.createElement('a'); link.href='/cohorts/'+enc(school)+'/'+enc(c.course)+'/'+enc(c.cohort);
      link.textContent=c.cohort;
      const cells=[c.course, link, c.statements, c.learners, c.active_learners_7d, hours(c.active_ms_7d), spark(c.trend),
                   c.mastery_mean===null?'–':pct(c.mastery_mean), c.share===null?'–':pct(c.share)+' of '+c.health_learners,
                   c.open_alerts, c.latest.slice(0,16)];
      cells.forEach((v,i)=>{const td=document.createElement('td'); if(v instanceof Node) td.appendChild(v); else td.textContent=v;
        if(i>=2&&i<=9&&i!==6) td.className='n'; tr.appendChild(td);});
      tb.appendChild(tr);}
    document.getElementById('empty').hidden = body.total>0;
    document.getElementById('through').textContent = body.through_day ? 'weeks and trends end on '+body.through_day+
      ' (UTC), the newest day with activity in your scope' : '';
    document.getElementById('page').textContent = body.total ? (offset+1)+'–'+(offset+body.cohorts.length)+' of '+body.total : '';
    document.getElementById('prev').disabled = offset===0;
    document.getElementById('next').disabled = offset+LIMIT>=body.total;
    document.getElementById('csv').href = api('&format=csv');
    st.textContent='updated '+new Date().toLocaleTimeString(); st.className='dim';
  }catch(e){st.textContent='no answer from the server ('+e.message+')';}
}
document.getElementById('q').addEventListener('input',()=>{offset=0;load();});
document.getElementById('prev').addEventListener('click',()=>{offset=Math.max(0,offset-LIMIT);load();});
document.getElementById('next').addEventListener('click',()=>{offset+=LIMIT;load();});
load(); setInterval(load, 5000);
</script></body></html>"""
SCHOOL_PAGE = _SCHOOL_PAGE.replace("<!--trends-->", trend_panel(for_school=True))

COHORT_PAGE = _HEAD + """</head><body>
<header><h1><a href="/">schools</a> › <a id="school-link"></a> › <span id="cohort"></span></h1>
<span id="median" class="dim"></span><span id="status" class="dim">loading…</span><!--viewer--></header>
<main>
<div class="tools"><label>search <input id="q" type="search" placeholder="name or pseudonym"></label><a id="csv" href="#">CSV</a></div>
<table><thead><tr><th>learner</th><th>last seen</th><th class="n">days since</th>
<th class="n">active time, 7 days</th><th class="n">vs median</th><th class="n">sessions, 7 days</th><th>why flagged</th></tr></thead>
<tbody id="learners"></tbody></table>
<p id="empty" class="dim" hidden>No learners here yet: no engagement has been computed for this cohort.</p>
<!--heatmap-->
</main>
<script>
const parts = location.pathname.split('/').slice(2).map(decodeURIComponent), [school, course, cohort] = parts;
const enc = encodeURIComponent, url = '/api/cohorts/'+parts.map(enc).join('/');
const sl=document.getElementById('school-link'); sl.textContent=school; sl.href='/schools/'+enc(school);
document.getElementById('cohort').textContent = course.split('/').filter(Boolean).slice(-1)[0]+' · '+cohort;
document.getElementById('csv').href = url+'?format=csv';
document.getElementById('heatmap-csv').href = url+'?format=csv&table=mastery';
const hours = ms => (ms/3600000).toFixed(1)+' h';
const skillName = s => String(s).split('/').filter(Boolean).slice(-1)[0] || s;
function why(flags){ return flags.map(f => f.rule==='inactive' ? 'inactive '+f.days.toFixed(1)+' days'
  : f.rule==='mastery_stalled' ? 'mastery stalled: '+f.skills.map(k=>skillName(k.skill)+' '+k.p_mastery.toFixed(2)+
      ' (was '+k.was.toFixed(2)+', '+k.attempts_since+' attempts ago)').join(', ')
  : 'active time '+(100*f.fraction_of_median).toFixed(0)+'% of the median (below '+(100*f.threshold_fraction).toFixed(0)+'%)').join('; '); }
let last = null;
function render(){
  if(!last) return; const q=document.getElementById('q').value.toLowerCase(), tb=document.getElementById('learners'); tb.innerHTML='';
  // A learner's name (the school's directory; only readers of this cohort get it), else the pseudonym.
  const found = x => x.learner.toLowerCase().includes(q) || (x.name||'').toLowerCase().includes(q);
  for(const x of last.learners.filter(found)){ const tr=document.createElement('tr');
    const link=document.createElement('a'); link.className='learner-name'; link.textContent=x.name || x.learner.slice(0,16)+'…';
    link.title=x.learner; link.href=location.pathname+'/learners/'+enc(x.learner);
    const cells=[link, x.last_seen.slice(0,16), x.days_since_seen.toFixed(1), hours(x.active_ms_7d),
                 x.vs_median===null?'–':x.vs_median.toFixed(2)+'×', x.sessions_7d, why(x.flags)];
    cells.forEach((v,i)=>{const td=document.createElement('td'); if(v instanceof Node) td.appendChild(v); else td.textContent=v;
      if(i>=2&&i<=5) td.className='n'; if(i===6&&v) td.className='flag'; tr.appendChild(td);});
    tr.dataset.learner=x.learner; tb.appendChild(tr);}
  document.getElementById('empty').hidden = last.learners.length>0;
  fillHeatmap({skills:last.skills, learners:last.learners.filter(found)}, x=>{const a=document.createElement('a');
    a.textContent=x.name || x.learner.slice(0,16)+'…'; a.title=x.learner; a.href=location.pathname+'/learners/'+enc(x.learner); return a;});
  document.getElementById('median').textContent = last.median_active_ms_7d===null ? '' :
    'cohort median: '+hours(last.median_active_ms_7d)+' in the 7 days to '+last.through_day;
}
async function load(){
  const st=document.getElementById('status');
  try{ const r=await fetch(url,{cache:'no-store'}); if(r.status===401){location.reload();return;}
    if(!r.ok) throw new Error(r.status); last=await r.json(); render();
    st.textContent='updated '+new Date().toLocaleTimeString(); st.className='dim';
  }catch(e){st.textContent='no answer from the server ('+e.message+')';}
}
document.getElementById('q').addEventListener('input', render);
load(); setInterval(load, 5000);
</script></body></html>"""

LEARNER_PAGE = _HEAD + """</head><body>
<header><h1><a href="/">schools</a> › <a id="cohort-link"></a> › learner <span id="learner"></span></h1>
<span id="status" class="dim">loading…</span><!--viewer--></header>
<main>
<h2>Days</h2>
<table><thead><tr><th>day</th><th class="n">statements</th><th class="n">sessions</th><th class="n">active time</th><th>active</th></tr></thead>
<tbody id="days"></tbody></table>
<h2>Mastery now</h2>
<table><thead><tr><th>skill</th><th class="n">P(mastery)</th><th class="n">answers</th><th class="n">correct</th><th>updated</th></tr></thead>
<tbody id="mastery"></tbody></table>
<p id="no-mastery" class="dim" hidden>No mastery estimates yet.</p>
<!--mastery-time-->
<h2>Newest statements</h2>
<table><thead><tr><th>when</th><th>verb</th><th>object</th><th>success</th><th class="n">score</th></tr></thead>
<tbody id="statements"></tbody></table>
<p id="missing" class="dim" hidden>Nothing for this learner in this cohort.</p>
</main>
<script>
const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
const [school, course, cohort, learner] = [parts[1], parts[2], parts[3], parts[5]], enc = encodeURIComponent;
const url = '/api/cohorts/'+[school, course, cohort].map(enc).join('/')+'/learners/'+enc(learner);
const cl=document.getElementById('cohort-link'); cl.textContent=cohort; cl.href='/cohorts/'+[school, course, cohort].map(enc).join('/');
document.getElementById('learner').textContent = learner.slice(0,16)+'…';
document.getElementById('learner').title = learner;
const short = iri => String(iri).split('/').filter(Boolean).slice(-1)[0] || iri;
function fill(id, rows, cols, numeric){ const tb=document.getElementById(id); tb.innerHTML='';
  for(const r of rows){ const tr=document.createElement('tr');
    cols(r).forEach((v,i)=>{const td=document.createElement('td'); td.textContent=v; if(numeric.includes(i)) td.className='n'; tr.appendChild(td);});
    tb.appendChild(tr);} }
async function load(){
  const st=document.getElementById('status');
  try{ const r=await fetch(url,{cache:'no-store'}); if(r.status===401){location.reload();return;}
    if(r.status===404){document.getElementById('missing').hidden=false; st.textContent=''; return;}
    if(!r.ok) throw new Error(r.status); const b=await r.json();
    if(b.name) document.getElementById('learner').textContent = b.name;
    const top=Math.max(1,...b.days.map(d=>d.active_ms));
    fill('days', b.days, d=>[d.day, d.statements, d.sessions, (d.active_ms/60000).toFixed(0)+' min', '█'.repeat(Math.round(20*d.active_ms/top))], [1,2,3]);
    fill('mastery', b.mastery, m=>[m.skill, m.p_mastery.toFixed(2), m.observations, m.correct, m.updated.slice(0,16)], [1,2,3]);
    document.getElementById('no-mastery').hidden = b.mastery.length>0;
    fillMasteryOverTime(b.mastery_history);
    fill('statements', b.statements, s=>[s.timestamp.slice(0,19), short(s.verb), short(s.object),
      s.success===null?'–':(s.success?'yes':'no'), s.score_scaled===null?'–':s.score_scaled.toFixed(2)], [4]);
    st.textContent='updated '+new Date().toLocaleTimeString(); st.className='dim';
  }catch(e){st.textContent='no answer from the server ('+e.message+')';}
}
// After the deferred chart library: DOMContentLoaded comes once it ran.
window.addEventListener('DOMContentLoaded', load); setInterval(load, 10000);
</script></body></html>"""

# Mastery: the cohort's heatmap, a learner's estimates over time (reporting/mastery_panels.py).
COHORT_PAGE = COHORT_PAGE.replace("<!--heatmap-->", heatmap_panel())
LEARNER_PAGE = LEARNER_PAGE.replace("<!--mastery-time-->", mastery_time_panel())

ALERTS_PAGE = _HEAD + """</head><body>
<header><h1><a href="/">schools</a> › alerts</h1><span id="status" class="dim">loading…</span><!--viewer--></header>
<main>
<form class="tools" id="filters"><label><input id="open" type="checkbox"> open only</label>
 <label>fired from <input id="from" type="date"></label><label>to <input id="to" type="date"></label>
 <label>search <input id="q" type="search" placeholder="school, course or cohort"></label>
 <button type="submit">show</button>
 <button id="prev" type="button">‹ previous</button><span id="page" class="dim"></span><button id="next" type="button">next ›</button>
 <a id="csv" href="/api/alerts?format=csv">CSV</a></form>
<table><thead><tr><th>cohort</th><th>state</th><th>fired</th><th>last change</th><th class="n">disengaged</th>
<th>disengaged learners</th><th>acknowledged</th><th>acknowledge</th></tr></thead><tbody id="alerts"></tbody></table>
<p id="empty" class="dim" hidden>No alerts in your scope match.</p>
</main>
<script>
const enc = encodeURIComponent, short = iri => String(iri).split('/').filter(Boolean).slice(-1)[0] || iri;
const csrf = () => document.querySelector('#viewer input[name=csrf]').value;
async function ack(id, input){
  const note=input.value.trim(); if(!note) return;
  const r=await fetch('/api/alerts/'+enc(id)+'/acknowledgements',{method:'POST',
    headers:{'Content-Type':'application/json','X-CSRF-Token':csrf()},body:JSON.stringify({note})});
  document.getElementById('status').textContent = r.ok ? 'acknowledged' : 'not recorded ('+r.status+')';
  if(r.ok){input.value=''; load();}
}
const LIMIT=50; let offset=0;
function api(extra){
  const p=new URLSearchParams(), v=id=>document.getElementById(id).value;
  if(document.getElementById('open').checked) p.set('open','1');
  if(v('from') && v('to')){p.set('from',v('from')); p.set('to',v('to'));}
  if(v('q')) p.set('q',v('q'));
  p.set('offset',offset); p.set('limit',LIMIT); return '/api/alerts?'+p.toString()+(extra||'');
}
async function load(){
  const st=document.getElementById('status');
  try{ const r=await fetch(api(),{cache:'no-store'}); if(r.status===401){location.reload();return;}
    const b=await r.json(), tb=document.getElementById('alerts');
    if(!r.ok){ st.textContent=b.error||('no answer ('+r.status+')'); st.className=''; return; }
    document.getElementById('page').textContent = b.total ? (offset+1)+'–'+(offset+b.alerts.length)+' of '+b.total : '';
    document.getElementById('prev').disabled = offset===0;
    document.getElementById('next').disabled = offset+LIMIT>=b.total;
    document.getElementById('csv').href = api('&format=csv');
    if(document.activeElement && document.activeElement.tagName==='INPUT' && document.activeElement.type==='text') return;
    tb.innerHTML='';
    for(const a of b.alerts){ const tr=document.createElement('tr'); tr.dataset.alert=a.alert_id;
      const cells=[a.school+' · '+short(a.course)+' · '+short(a.cohort), a.state, a.fired_at.slice(0,16), a.changed_at.slice(0,16),
        (100*a.share).toFixed(0)+'% of '+a.learners,
        a.disengaged_learners.map(x=>x.name || x.learner.slice(0,12)+'…').join(', '),
        a.acknowledgements.map(k=>k.operator+' ('+k.at.slice(0,16)+'): '+k.note).join('; ')];
      cells.forEach((v,i)=>{const td=document.createElement('td'); td.textContent=v; if(i===4) td.className='n';
        if(i===5) td.className='named'; if(i===6) td.className='acks'; tr.appendChild(td);});
      const td=document.createElement('td'), input=document.createElement('input'), btn=document.createElement('button');
      input.type='text'; input.placeholder='note'; input.maxLength=1000; input.setAttribute('aria-label','note');
      btn.type='button'; btn.textContent='acknowledge'; btn.addEventListener('click',()=>ack(a.alert_id,input));
      td.append(input,btn); tr.appendChild(td); tb.appendChild(tr);}
    document.getElementById('empty').hidden = b.alerts.length>0;
    st.textContent='updated '+new Date().toLocaleTimeString(); st.className='dim';
  }catch(e){st.textContent='no answer from the server ('+e.message+')';}
}
document.getElementById('open').addEventListener('change', ()=>{offset=0; load();});
document.getElementById('filters').addEventListener('submit', ev=>{ev.preventDefault(); offset=0; load();});
document.getElementById('prev').addEventListener('click',()=>{offset=Math.max(0,offset-LIMIT);load();});
document.getElementById('next').addEventListener('click',()=>{offset+=LIMIT;load();});
load(); setInterval(load, 10000);
</script></body></html>"""

FORBIDDEN_PAGE = _HEAD.replace("{title}", "not yours") + """</head><body><header><h1><a href="/">schools</a></h1></header>
<main><p id="forbidden"><!--what--> is outside what you may see (<!--rule-->).</p></main></body></html>"""


def forbidden_page(what: str, rule: str) -> str:
    return FORBIDDEN_PAGE.replace("<!--what-->", html.escape(what)).replace("<!--rule-->", html.escape(rule))


def page(template: str, title: str, viewer_bar: str) -> str:
    return template.replace("{title}", html.escape(title), 1).replace("<!--viewer-->", viewer_bar)
