"""The trends panel of the network and school pages: a time range, two charts, the same figures as a table.

Charts are Observable Plot (reporting/assets.py); the page draws nothing by hand. Each school
has an Okabe–Ito colour and its own dot shape, so no reader needs to tell colours apart; each
dot is focusable and carries its figures as a title; the table under the charts holds every
figure, for screen readers and for a browser without the library. With no range chosen the
panel follows the newest days and refreshes itself every minute.
"""

from __future__ import annotations

from .assets import CHART_TAGS

TREND_STYLE = """<style>
#trends form{display:flex;flex-wrap:wrap;gap:1em;align-items:end;margin-bottom:.8em}#trends label{display:flex;flex-direction:column;font-size:12px}
#trends input,#trends select,#trends button{font:inherit;padding:.25em .4em}#trends figure{margin:0 0 1em}
#trends figcaption{font-size:12px;color:var(--dim);margin-bottom:.3em}#trends svg{background:#fff;color:#1b1f24;border-radius:6px}
#trends svg [tabindex]:focus{outline:3px solid #0072B2}#trends details table{font-size:12px}
</style>"""

# {scope_note}: what the figures cover (all schools in scope / one school).
TREND_PANEL = """<section class="panel" id="trends" aria-labelledby="trends-h"><h2 id="trends-h">Trends</h2>
<form id="trend-range"><label>from<input type="date" name="from"></label><label>to<input type="date" name="to"></label>
<label>periods<select name="grain"><option value="day">days</option><option value="hour">hours</option></select></label>
<button type="submit">show</button><button type="button" id="trend-newest">newest days</button>
<a id="trend-csv" href="#">CSV</a></form>
<figure><figcaption>Learning statements per period, {scope_note}</figcaption><div id="chart-statements"></div></figure>
<figure><figcaption>Share of learners disengaged (cohorts' last snapshot in the period), {scope_note}</figcaption>
<div id="chart-share"></div></figure>
<details><summary>the same figures as a table</summary><table><thead><tr><th>school</th><th>period</th>
<th class="n">statements</th><th class="n">active learners</th><th class="n">active time</th><th class="n">sessions</th>
<th class="n">disengaged</th></tr></thead><tbody id="trend-rows"></tbody></table></details>
<p id="trend-note" class="dim"></p></section>"""

TREND_SCRIPT = """<script>
(function(){
// The school page's school (its URL: /schools/{school}); the network page: every school in scope.
const TREND_SCHOOL=FOR_SCHOOL ? decodeURIComponent(location.pathname.split('/')[2]) : '';
// Okabe & Ito's palette: told apart with every common colour-vision deficiency.
const OKABE_ITO=['#0072B2','#E69F00','#009E73','#CC79A7','#56B4E9','#D55E00','#F0E442','#000000'];
const form=document.getElementById('trend-range'), note=document.getElementById('trend-note');
let chosen=null;  // null: follow the newest days
function query(extra){
  const p=new URLSearchParams(); if(TREND_SCHOOL) p.set('school',TREND_SCHOOL);
  if(chosen){p.set('from',chosen.from);p.set('to',chosen.to);}
  p.set('grain',form.grain.value); return '/api/trends?'+p.toString()+(extra||'');
}
function label(d){ return d.school+', '+d.period.slice(0,16).replace('T',' ')+': '+d.statements+' statements, '+
  d.active_learners+' active learners'+(d.share===null?'':', '+(100*d.share).toFixed(0)+'% disengaged'); }
function chart(el, body, y, yLabel, percent){
  const data=body.points;
  el.innerHTML='';
  if(!window.Plot){ el.textContent='Charts are not installed on this server (make setup); the table below has every figure.'; return; }
  const rows=data.filter(d=>d[y]!==null).map(d=>({...d, t:new Date(d.period)}));
  if(!rows.length){ el.textContent='No figures in this range.'; return; }
  const schools=[...new Set(rows.map(d=>d.school))].sort();
  const out=Plot.plot({width:Math.max(320,el.clientWidth||640), height:220, marginLeft:56,
    ariaLabel:yLabel+' per period for '+schools.join(', '),
    // The whole chosen range, from the first day's start to the end of the last.
    x:{type:'utc', label:null, domain:[new Date(body.from+'T00:00:00Z'), new Date(Date.parse(body.to+'T00:00:00Z')+86400000)]},
    y:{grid:true, label:yLabel, percent:percent, zero:true},
    color:{domain:schools, range:OKABE_ITO, legend:schools.length>1},
    symbol:{domain:schools, legend:false},
    marks:[Plot.ruleY([0]), Plot.lineY(rows,{x:'t', y:y, stroke:'school'}),
           Plot.dot(rows,{x:'t', y:y, stroke:'school', symbol:'school', title:label})]});
  // Plot names its marks' groups (aria-label); a named group needs its role said.
  out.querySelectorAll('g[aria-label]').forEach(g=>g.setAttribute('role','group'));
  // Keyboard: each dot takes focus and says its figures (its title).
  out.querySelectorAll('g[aria-label="dot"] > *').forEach(e=>{e.setAttribute('tabindex','0'); e.setAttribute('role','img');
    const t=e.querySelector('title'); if(t) e.setAttribute('aria-label', t.textContent);});
  el.appendChild(out);
}
function table(points){
  const tb=document.getElementById('trend-rows'); tb.innerHTML='';
  for(const d of points){ const tr=document.createElement('tr');
    [d.school, d.period.slice(0,16).replace('T',' '), d.statements, d.active_learners, (d.active_ms/3600000).toFixed(1)+' h',
     d.sessions, d.share===null?'–':(100*d.share).toFixed(0)+'% of '+d.learners].forEach((v,i)=>{
      const td=document.createElement('td'); td.textContent=v; if(i>=2) td.className='n'; tr.appendChild(td);});
    tb.appendChild(tr);}
}
async function loadTrends(){
  try{ const r=await fetch(query(),{cache:'no-store'}); if(r.status===401){location.reload();return;}
    const body=await r.json();
    if(!r.ok){ note.textContent=body.error||('no answer ('+r.status+')'); return; }
    if(!chosen){ form.from.value=body.from; form.to.value=body.to; }
    chart(document.getElementById('chart-statements'), body, 'statements', 'statements', false);
    chart(document.getElementById('chart-share'), body, 'share', 'disengaged (%)', true);
    table(body.points);
    document.getElementById('trend-csv').href=query('&format=csv');
    note.textContent=body.points.length ? body.from+' to '+body.to+' (UTC), per '+body.grain+
      (chosen?'':'; following the newest days') : 'Nothing in '+body.from+' to '+body.to+' yet.';
  }catch(e){ note.textContent='no answer from the server ('+e.message+')'; }
}
form.addEventListener('submit', ev=>{ev.preventDefault(); chosen={from:form.from.value, to:form.to.value}; loadTrends();});
document.getElementById('trend-newest').addEventListener('click', ()=>{chosen=null; loadTrends();});
form.grain.addEventListener('change', ()=>{ if(!chosen) loadTrends(); });
window.addEventListener('DOMContentLoaded', loadTrends);
setInterval(()=>{ if(!chosen) loadTrends(); }, 60000);
})();
</script>"""


def trend_panel(for_school: bool) -> str:
    """The panel, its style, the chart library and its script; ``for_school``: on a school's page."""
    note = "this school (in your scope)" if for_school else "per school in your scope"
    script = TREND_SCRIPT.replace("FOR_SCHOOL", "true" if for_school else "false")
    return TREND_STYLE + CHART_TAGS + TREND_PANEL.replace("{scope_note}", note) + script
