"""The status page's style sheet: one inline ``<style>`` (the page loads no external asset).

``PAGE_CSS`` is the text of that element; the page's Content-Security-Policy names its
sha256 (``probed.statuspage``), so any change here changes the policy with it. Colours follow
the reader's light or dark preference; the components' and recommendations' colours key
on the ``data-state`` and ``data-severity`` attributes the renderers write.

The page never scrolls sideways, down to a 360 px phone: every table sits in a
``div.scroll`` that scrolls on its own, component cards take the full width when 220 px
do not fit twice, long words (names, hashes, URLs) break outside tables, and under 600 px
the paddings shrink (tests/test_status_page.py measures it in Chromium).
"""

from __future__ import annotations

__all__ = ["PAGE_CSS"]

PAGE_CSS = """\
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--card:#f6f8fa;--ok:#1a7f37;--degraded:#9a6700;--down:#cf222e;--unknown:#6e7781;--line-chart:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#3d444d;--card:#151b23;--ok:#3fb950;--degraded:#d29922;--down:#f85149;--unknown:#9198a1;
--line-chart:#4493f8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px;overflow-wrap:anywhere}
h1{margin:0;font-size:22px}h2{font-size:16px;margin:24px 0 8px}h3{font-size:15px;margin:0 0 4px}
p{margin:4px 0}
header.top{border:1px solid var(--line);border-left:10px solid var(--unknown);border-radius:8px;
padding:12px 16px;background:var(--card)}
header.top[data-state="OK"]{border-left-color:var(--ok)}
header.top[data-state="DEGRADED"]{border-left-color:var(--degraded)}
header.top[data-state="DOWN"]{border-left-color:var(--down)}
p.state[data-healthy="false"],p.config[data-ok="false"]{color:var(--down);font-weight:700}
#overall{display:inline-block;padding:1px 12px;border-radius:6px;color:#fff;
background:var(--unknown);letter-spacing:.04em}
#overall[data-state="OK"]{background:var(--ok)}
#overall[data-state="DEGRADED"]{background:var(--degraded)}
#overall[data-state="DOWN"]{background:var(--down)}
.where{font-weight:400;color:var(--muted)}
.meta{color:var(--muted);font-size:13px}
#refresh[data-error="true"]{color:var(--down);font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(220px,100%),1fr));gap:12px}
.component{border:1px solid var(--line);border-top:6px solid var(--unknown);border-radius:8px;
padding:10px 12px;background:var(--card)}
.component .state{font-weight:700;color:var(--unknown)}
.component[data-state="OK"]{border-top-color:var(--ok)}
.component[data-state="OK"] .state{color:var(--ok)}
.component[data-state="DEGRADED"]{border-top-color:var(--degraded)}
.component[data-state="DEGRADED"] .state{color:var(--degraded)}
.component[data-state="DOWN"]{border-top-color:var(--down)}
.component[data-state="DOWN"] .state{color:var(--down)}
.component .detail,.component .healthy,.since,.empty,.muted{color:var(--muted)}
.component[data-monitored="false"]{border-style:dashed;border-top-style:solid;
border-top-color:var(--line);background:var(--bg)}
.component[data-monitored="false"] .state{color:var(--muted);font-weight:400}
.ts,time,.evidence td:nth-child(4),tr.history td:first-child{white-space:nowrap}
.failing{color:var(--down)}
.recommendation{border:1px solid var(--line);border-left:6px solid var(--degraded);
border-radius:8px;padding:10px 16px;margin:0 0 12px;background:var(--card)}
.recommendation[data-severity="Sev-1"]{border-left-color:var(--down)}
.recommendation[data-state="pending"]{opacity:.7}
.sev{display:inline-block;padding:0 8px;border-radius:4px;background:var(--degraded);color:#fff}
.recommendation[data-severity="Sev-1"] .sev{background:var(--down)}
.rstate,.routing{font-weight:400;color:var(--muted);font-size:13px}
.actions{margin:6px 0;padding-left:22px}
.scroll{max-width:100%;overflow-x:auto;margin:4px 0}
table{border-collapse:collapse;width:100%;overflow-wrap:normal}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
th{font-size:12px;font-weight:600;color:var(--muted);text-transform:uppercase}
.num{text-align:right;font-variant-numeric:tabular-nums}
td.bad{color:var(--down);font-weight:600}
tr.probe .name,tr.stream .name{font-weight:600}
tr.probe[data-ok="true"] .result{color:var(--ok)}
tr.probe[data-ok="false"] .result{color:var(--down);font-weight:700}
tr.stream[data-connected="false"] .name{color:var(--down)}
tr.stream .hint{font-weight:400;font-size:.85em;color:var(--degraded);max-width:40em}
td.chart{width:170px}
.spark{display:block}
.spark polyline{fill:none;stroke:var(--line-chart);stroke-width:1.5;
vector-effect:non-scaling-stroke}
.spark .fail{fill:var(--down)}
a{color:var(--line-chart)}
@media (max-width:600px){main{padding:8px 8px 32px}h1{font-size:19px}h2{margin:18px 0 6px}
header.top{padding:8px 10px;border-left-width:6px}.recommendation{padding:8px 10px}
.cards{gap:8px}th,td{padding:4px 6px}}
"""
