"""Mastery on the operators' pages: the cohort's heatmap (learners × skills) and a learner's
mastery over time. Both fill themselves from the page's own API answer (``mastery`` and
``skills`` of the cohort answer, ``mastery_history`` of the learner answer, reporting/mastery.py).

The heatmap is a table: each cell says its P(mastery) as text (read by screen readers, and
reached with the table's keyboard navigation), and its background is one of five steps of
viridis, a colour-blind-safe sequential scale, with black or white text chosen per step for
contrast. Mastery over time is an Observable Plot chart (reporting/assets.py), one Okabe–Ito
colour and dot shape per skill, focusable dots, and the same points as a table under it.
"""

from __future__ import annotations

from .assets import CHART_TAGS

MASTERY_STYLE = """<style>
#heatmap td.cell{text-align:center;font-variant-numeric:tabular-nums;min-width:3.5em}
#heatmap th.skill{font-size:12px;writing-mode:horizontal-tb;max-width:8em;overflow-wrap:anywhere}
.legend{display:flex;gap:.3em;align-items:center;font-size:12px;margin:.5em 0}.legend span{padding:.1em .5em}
#mastery-chart svg{background:#fff;color:#1b1f24;border-radius:6px}#mastery-chart svg [tabindex]:focus{outline:3px solid #0072B2}
</style>"""

# Viridis in five steps (0–0.2, …, 0.8–1) with the text colour readable on each (WCAG AA).
_STEPS = """const STEPS=[['#440154','#fff'],['#3b528b','#fff'],['#21918c','#000'],['#5ec962','#000'],['#fde725','#000']];
const step = p => STEPS[Math.min(4, Math.floor(p*5))];"""

HEATMAP_PANEL = """<section aria-labelledby="heatmap-h"><h2 id="heatmap-h">Mastery per skill</h2>
<p class="legend" aria-hidden="true">P(mastery): <span id="heatmap-legend"></span></p>
<div style="overflow-x:auto"><table id="heatmap"><caption class="dim">Each learner's current P(mastery) per skill of the
course (– : no attempt yet)</caption><thead><tr id="heatmap-head"></tr></thead><tbody id="heatmap-rows"></tbody></table></div>
<p><a id="heatmap-csv" href="#">CSV</a></p>
<p id="no-heatmap" class="dim" hidden>No mastery estimates for these learners yet.</p></section>"""

# fillHeatmap(answer, label): label(learner row) gives the learner's link or text.
HEATMAP_SCRIPT = "<script>" + _STEPS + """
(function(){ const lg=document.getElementById('heatmap-legend');
  STEPS.forEach(([bg,fg],i)=>{const s=document.createElement('span'); s.style.background=bg; s.style.color=fg;
    s.textContent=(i/5).toFixed(1)+'–'+((i+1)/5).toFixed(1); lg.appendChild(s);}); })();
function fillHeatmap(body, label){
  const head=document.getElementById('heatmap-head'), tb=document.getElementById('heatmap-rows');
  head.innerHTML=''; tb.innerHTML='';
  const th0=document.createElement('th'); th0.scope='col'; th0.textContent='learner'; head.appendChild(th0);
  const short = s => String(s).split('/').filter(Boolean).slice(-1)[0] || s;
  for(const s of body.skills){ const th=document.createElement('th'); th.scope='col'; th.className='skill';
    th.textContent=short(s); th.title=s; head.appendChild(th); }
  const rows=body.learners.filter(x=>Object.keys(x.mastery).length);
  for(const x of rows){ const tr=document.createElement('tr'); tr.dataset.learner=x.learner;
    const th=document.createElement('th'); th.scope='row'; th.appendChild(label(x)); tr.appendChild(th);
    for(const s of body.skills){ const td=document.createElement('td'); td.className='cell'; td.dataset.skill=s;
      const p=x.mastery[s];
      if(p===undefined){ td.textContent='–'; }
      else { const [bg,fg]=step(p); td.style.background=bg; td.style.color=fg; td.textContent=p.toFixed(2);
        td.dataset.p=String(p); }
      tr.appendChild(td);}
    tb.appendChild(tr);}
  document.getElementById('no-heatmap').hidden = rows.length>0;
}
</script>"""

MASTERY_TIME_PANEL = """<h2 id="mastery-time-h">Mastery over time</h2>
<figure aria-labelledby="mastery-time-h" style="margin:0 0 1em"><div id="mastery-chart"></div></figure>
<details><summary>the same estimates as a table</summary><table><thead><tr><th>skill</th><th>when (UTC)</th>
<th class="n">P(mastery)</th><th class="n">attempts</th></tr></thead><tbody id="mastery-points"></tbody></table></details>
<p id="no-mastery-time" class="dim" hidden>No estimates kept for this learner yet.</p>"""

MASTERY_TIME_SCRIPT = """<script>
// Okabe & Ito's palette: told apart with every common colour-vision deficiency.
const SKILL_COLOURS=['#0072B2','#E69F00','#009E73','#CC79A7','#56B4E9','#D55E00','#F0E442','#000000'];
function fillMasteryOverTime(history){
  const short = s => String(s).split('/').filter(Boolean).slice(-1)[0] || s;
  const rows=history.flatMap(h=>h.points.map(p=>({...p, skill:short(h.skill), t:new Date(p.at_ms)})));
  const tb=document.getElementById('mastery-points'); tb.innerHTML='';
  for(const r of rows){ const tr=document.createElement('tr'); tr.dataset.skill=r.skill;
    [r.skill, r.t.toISOString().slice(0,19).replace('T',' '), r.p_mastery.toFixed(2), r.observations].forEach((v,i)=>{
      const td=document.createElement('td'); td.textContent=v; if(i>=2) td.className='n'; tr.appendChild(td);});
    tb.appendChild(tr);}
  document.getElementById('no-mastery-time').hidden = rows.length>0;
  const el=document.getElementById('mastery-chart'); el.innerHTML='';
  if(!rows.length) return;
  if(!window.Plot){ el.textContent='Charts are not installed on this server (make setup); the table below has every estimate.'; return; }
  const skills=[...new Set(rows.map(r=>r.skill))].sort();
  const out=Plot.plot({width:Math.max(320,el.clientWidth||640), height:220, marginLeft:48,
    ariaLabel:'P(mastery) over time for '+skills.join(', '),
    x:{type:'utc', label:null}, y:{domain:[0,1], grid:true, label:'P(mastery)'},
    color:{domain:skills, range:SKILL_COLOURS, legend:skills.length>1}, symbol:{domain:skills, legend:false},
    marks:[Plot.lineY(rows,{x:'t', y:'p_mastery', stroke:'skill', curve:'step-after'}),
           Plot.dot(rows,{x:'t', y:'p_mastery', stroke:'skill', symbol:'skill',
             title:r=>r.skill+', '+r.t.toISOString().slice(0,16).replace('T',' ')+': P '+r.p_mastery.toFixed(2)+
               ' after '+r.observations+' attempts'})]});
  out.querySelectorAll('g[aria-label]').forEach(g=>g.setAttribute('role','group'));
  out.querySelectorAll('g[aria-label="dot"] > *').forEach(e=>{e.setAttribute('tabindex','0'); e.setAttribute('role','img');
    const t=e.querySelector('title'); if(t) e.setAttribute('aria-label', t.textContent);});
  el.appendChild(out);
}
</script>"""


def heatmap_panel() -> str:
    """The cohort page's heatmap section with its style and script (defines ``fillHeatmap``)."""
    return MASTERY_STYLE + HEATMAP_PANEL + HEATMAP_SCRIPT


def mastery_time_panel() -> str:
    """The learner page's mastery-over-time section, the chart library and its script (``fillMasteryOverTime``)."""
    return MASTERY_STYLE + CHART_TAGS + MASTERY_TIME_PANEL + MASTERY_TIME_SCRIPT
