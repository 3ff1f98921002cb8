"""The status page at ``/``: one self-contained HTML document, and its 10 s refresh.

The server renders the full page from the status document (``probed.status``):
``main#app`` holds ``probed.pagesections.page_app``. It has no external assets: inline
CSS (``probed.pagestyle``), inline SVG and one inline script, allowed by a
Content-Security-Policy that names their hashes and permits network access only to the
page's own origin. Every ``REFRESH_SECONDS`` the script fetches ``api/v1/status``
(relative, so a path prefix of a reverse proxy works) and re-renders ``main#app`` with
the same markup as the Python renderer (a browser test compares both).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from typing import Any

from probed.clockpage import CLOCK_JS
from probed.configstatus import CONFIG_LINE_JS
from probed.historypage import HISTORY_JS
from probed.maintenancepage import MAINTENANCE_JS
from probed.pagesections import page_app
from probed.pagestyle import PAGE_CSS
from probed.pageunits import UNITS_JS
from probed.statusfields import text

__all__ = ["REFRESH_SECONDS", "render_page"]

#: How often the status page re-fetches ``/api/v1/status``.
REFRESH_SECONDS = 10

# The script mirrors the Python renderer above function by function; keep them
# in step (tests/test_status_page.py compares both renderings in Chromium).
_SCRIPT = r"""
(() => {
  "use strict";
  const REFRESH_MS = __REFRESH__ * 1000;
  const ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"};
  const text = (v) => (v === null || v === undefined ? "" : String(v));
  const e = (v) => text(v).replace(/[&<>"']/g, (c) => ESC[c]);
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const isMap = (v) => Boolean(v) && typeof v === "object" && !Array.isArray(v);
  const items = (v) => (Array.isArray(v) ? v.filter(isMap) : []);
  const strs = (v) => (Array.isArray(v) ? v.map(text) : []);
  const map = (v) => (isMap(v) ? v : {});
__UNITS__
  const num = (v) => (isNum(v) ? trim(fixed(v, 3)) : "-");
  const int = (v) => (isNum(v) ? String(Math.trunc(v)) : "-");
  const iso = (v) => {
    if (!isNum(v)) return "-";
    return new Date(Math.floor(v) * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  };
  const age = (now, then) => {
    if (!(isNum(now) && isNum(then))) return "-";
    const a = Math.max(0, now - then);
    if (a < 120) return Math.floor(a) + " s ago";
    if (a < 7200) return Math.floor(a / 60) + " min ago";
    return Math.floor(a / 3600) + " h ago";
  };
  const span = (v) => {
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (v >= size) return Math.trunc(v / size) + unit;
    }
    return Math.trunc(v) + "s";
  };
  const ratioCell = (s, label) => {
    const ratio = map(s.ratio)[label];
    if (isNum(ratio)) return percent(ratio);
    const covered = map(s.coverage)[label];
    if (!map(s.events)[label] || !isNum(covered)) return "-";
    return `insufficient data (${span(covered)} of ${label})`;
  };
  const windowLabel = (v) => {
    if (!isNum(v)) return "-";
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (v >= size && v % size === 0) return Math.trunc(v / size) + unit;
    }
    return num(v) + "s";
  };
  const LINK = /^https?:\/\//i;
  const W = 1600, H = 280, PAD = 20;

  const spark = (points, what) => {
    if (!points.length) return '<span class="muted">-</span>';
    const peak = Math.max(...points.map((p) => p[0]));
    const top = peak > 0 ? peak : 1.0;
    const n = points.length;
    const coords = [];
    const marks = [];
    points.forEach(([value, ok, reason], i) => {
      const x = n > 1 ? PAD + i * (W - 2 * PAD) / (n - 1) : W / 2;
      const y = H - PAD - value / top * (H - 2 * PAD);
      const cx = Math.round(x), cy = Math.round(y);
      coords.push(cx + "," + cy);
      if (!ok) {
        marks.push(`<circle class="fail" cx="${cx}" cy="${cy}" r="28">` +
          `<title>${e(reason)}</title></circle>`);
      }
    });
    const label = `${what} of the last ${n}, max ${duration(peak)}`;
    return `<svg class="spark" viewBox="0 0 ${W} ${H}" width="160" height="28" ` +
      `role="img" aria-label="${e(label)}"><polyline points="${coords.join(" ")}"></polyline>` +
      `${marks.join("")}</svg>`;
  };

  const header = (doc) => {
    const state = text(doc.overall) || "UNKNOWN";
    const generated = iso(doc.generated_at);
    return `<header class="top" data-state="${e(state)}">` +
      `<h1><span id="overall" data-state="${e(state)}">${e(state)}</span> ` +
      `<span class="where">probed &middot; <span id="location">${e(doc.location)}` +
      "</span></span></h1>" +
      `<p class="meta">generated <time id="generated-at" datetime="${generated}">${generated}` +
      `</time> &middot; version <span id="version">${e(doc.version)}</span> &middot; ` +
      `<span id="refresh">auto-refresh every __REFRESH__ s</span></p>` +
      `${stateLine(doc)}${configPara(doc)}${maintenancePara(doc)}${skewPara(doc)}</header>`;
  };

  const stateLine = (doc) => {
    if (!isMap(doc.state)) return "";
    const state = doc.state;
    const healthy = state.healthy !== false;
    let line = `state saved in ${e(state.state_dir)}`;
    if (!healthy) {
      line = `state NOT saved since ${iso(state.since)} (${e(state.reason)})`;
      if (state.in_memory === true) line += ", kept in memory only";
    }
    return `<p class="state" id="state" data-healthy="${healthy ? "true" : "false"}">` +
      `${line}</p>`;
  };
__CONFIG_LINE__
__MAINTENANCE__
__HISTORY__
__CLOCK__
  const component = (c) => {
    const name = text(c.name);
    const state = text(c.state) || "UNKNOWN";
    const probes = strs(c.probes);
    const failing = strs(c.failing);
    const n = probes.length;
    const count = n === 0 ? "no probes" : n === 1 ? "1 probe" : `${n} probes`;
    const healthy = isNum(c.last_healthy) ? iso(c.last_healthy) : "unknown";
    const since = n ? `<p class="healthy">last healthy <span class="ts">${healthy}</span></p>` : "";
    const degraded = strs(c.degraded_by);
    const fail =
      (failing.length ? `<p class="failing">failing: ${e(failing.join(", "))}</p>` : "") +
      (degraded.length ? `<p class="degraded">degraded: ${e(degraded.join(", "))}</p>` : "");
    return `<div class="component" data-name="${e(name)}" data-state="${e(state)}" ` +
      `data-monitored="${n ? "true" : "false"}"><h3>${e(name)}</h3>` +
      `<p class="state">${n ? e(state) : "not monitored"}</p>` +
      `<p class="detail" title="${e(probes.join(", "))}">${count}</p>${since}${fail}</div>`;
  };

  const components = (doc) => {
    const list = items(doc.components);
    const body = list.length
      ? '<div class="cards">' + list.map(component).join("") + "</div>"
      : '<p class="empty">No evaluation yet: components appear after the first one.</p>';
    return `<section id="components"><h2>Components</h2>${body}</section>`;
  };

  const recommendation = (r) => {
    const severity = text(r.severity);
    const state = text(r.state);
    const parts = [
      `<article class="recommendation" data-scenario="${e(r.scenario)}" ` +
      `data-severity="${e(severity)}" data-state="${e(state)}">` +
      `<h3><span class="sev">${e(severity)}</span> ${e(r.title)} ` +
      `<span class="rstate">${e(state)}</span> <span class="routing">${e(r.routing)}</span></h3>` +
      `<p class="since">since ${iso(r.since)}</p>` +
      `<p class="summary">${e(r.summary)}</p>`,
    ];
    const actions = strs(r.actions);
    if (actions.length) {
      parts.push('<ol class="actions">' + actions.map((a) => `<li>${e(a)}</li>`).join("") +
        "</ol>");
    }
    if (r.rollback) {
      parts.push(`<p class="rollback"><strong>Rollback:</strong> ${e(r.rollback)}</p>`);
    }
    const evidence = items(r.evidence);
    if (evidence.length) {
      parts.push('<div class="scroll"><table class="evidence"><thead><tr><th>Signal</th>' +
        "<th>Value</th><th>Threshold</th><th>Since</th><th>Detail</th></tr></thead><tbody>");
      for (const ev of evidence) {
        parts.push(`<tr><td>${e(ev.signal)}</td>` +
          `<td class="num">${evidenceValue(ev.signal, ev.value)}</td>` +
          `<td class="num">${evidenceValue(ev.signal, ev.threshold)}</td>` +
          `<td>${iso(ev.since)}</td>` +
          `<td>${e(ev.detail)}</td></tr>`);
      }
      parts.push("</tbody></table></div>");
    }
    const url = text(r.runbook_url);
    if (url && LINK.test(url)) {
      parts.push(`<p class="runbook">Runbook: <a href="${e(url)}" rel="noopener noreferrer">` +
        `${e(url)}</a></p>`);
    } else if (url) {
      parts.push(`<p class="runbook">Runbook: ${e(url)}</p>`);
    }
    parts.push("</article>");
    return parts.join("");
  };

  const recommendations = (doc) => {
    const list = items(doc.recommendations);
    const body = list.length
      ? list.map(recommendation).join("")
      : '<p class="empty">No active recommendations.</p>';
    return `<section id="recommendations"><h2>Recommendations</h2>${body}</section>`;
  };

  const slos = (doc) => {
    const list = items(doc.slos);
    if (!list.length) {
      return '<section id="slos"><h2>SLOs</h2><p class="empty">No SLOs configured.</p></section>';
    }
    const rows = list.map((s) => {
      const burnRate = map(s.burn_rate);
      const budget = s.budget_remaining;
      const bad = isNum(budget) && budget < 0 ? " bad" : "";
      return `<tr class="slo" data-slo="${e(s.name)}"><td>${e(s.name)}</td>` +
        `<td>${e(s.sli)}</td><td class="num">${percent(s.objective)}</td>` +
        `<td class="num">${windowLabel(s.window)}</td>` +
        `<td class="num">${e(ratioCell(s, "1h"))}</td>` +
        `<td class="num">${e(ratioCell(s, "30d"))}</td>` +
        `<td class="num">${rate(burnRate["1h"])}</td>` +
        `<td class="num${bad}">${percent(budget)}</td></tr>`;
    });
    return '<section id="slos"><h2>SLOs</h2>' +
      '<div class="scroll"><table><thead><tr><th>SLO</th><th>SLI</th>' +
      '<th class="num">Objective</th><th class="num">Window</th><th class="num">Ratio 1h</th>' +
      '<th class="num">Ratio 30d</th><th class="num">Burn 1h</th>' +
      '<th class="num">Budget left</th></tr></thead><tbody>' + rows.join("") +
      "</tbody></table></div></section>";
  };

  const probe = (p, now) => {
    const name = text(p.probe);
    const last = p.last;
    let ok = "none", result = "never run", reason = "-", code = "-", took = "-";
    let when = "-", title = "";
    if (isMap(last)) {
      ok = last.success === true ? "true" : "false";
      result = ok === "true" ? "ok" : "FAIL";
      reason = text(last.reason) || "-";
      code = int(last.status_code);
      took = duration(last.duration_seconds);
      when = age(now, last.started_at);
      title = `run ${text(last.run_id)} trace ${text(last.trace_id)}`;
    }
    const points = items(p.recent).filter((r) => isNum(r.d))
      .map((r) => [r.d, r.ok === true, text(r.reason)]);
    return `<tr class="probe" data-probe="${e(name)}" data-ok="${ok}"><td class="name">${e(name)}` +
      `${maintenanceMark(p)}</td><td>${e(p.kind)}</td><td>${e(p.target)}</td>` +
      `<td class="result">${result}</td><td>${e(reason)}</td><td class="num">${code}</td>` +
      `<td class="num">${took}</td><td class="when" title="${e(title)}">${when}</td>` +
      `<td class="num">${int(p.runs)}</td><td class="num">${int(p.failures)}` +
      `</td><td class="chart">${spark(points, "latency")}</td></tr>`;
  };

  const probes = (doc) => {
    const list = items(doc.probes);
    if (!list.length) {
      return '<section id="probes"><h2>Probes</h2><p class="empty">No probes configured.</p>' +
        "</section>";
    }
    return '<section id="probes"><h2>Probes</h2>' +
      '<div class="scroll"><table><thead><tr><th>Probe</th><th>Kind</th>' +
      '<th>Target</th><th>Last</th><th>Reason</th><th class="num">HTTP</th>' +
      '<th class="num">Took</th><th>When</th><th class="num">Runs</th>' +
      '<th class="num">Failures</th><th>Latency</th></tr></thead><tbody>' +
      list.map((p) => probe(p, doc.generated_at)).join("") + "</tbody></table></div></section>";
  };

  const stream = (s) => {
    const name = text(s.stream);
    const connected = s.connected, subscribers = s.subscribers;
    const up = isNum(connected) && isNum(subscribers) && 0 < subscribers &&
      subscribers <= connected;
    const points = items(s.lag).filter((x) => isNum(x.lag)).map((x) => [x.lag, true, ""]);
    const hints = strs(s.hints).map((h) => `<div class="hint">${e(h)}</div>`).join("");
    const counts = ["received", "lost", "duplicated", "out_of_order", "late", "negative_lag"]
      .map((key) => `<td class="num">${int(s[key])}</td>`).join("");
    return `<tr class="stream" data-stream="${e(name)}" ` +
      `data-connected="${up ? "true" : "false"}">` +
      `<td class="name">${e(name)}${hints}</td><td>${e(s.target)}</td>` +
      `<td class="num">${int(connected)}/${int(subscribers)}</td>${counts}` +
      `<td class="num">${int(s.reconnects)}</td>` +
      `${clockCell(s)}` +
      `<td class="num">${duration(s.mean_lag_seconds)}</td>` +
      `<td class="chart">${spark(points, "worst delivery lag per slot")}</td></tr>`;
  };

  const streams = (doc) => {
    const list = items(doc.streams);
    if (!list.length) {
      return '<section id="streams"><h2>Streams</h2>' +
        '<p class="empty">No streams configured.</p></section>';
    }
    return '<section id="streams"><h2>Streams</h2>' +
      '<div class="scroll"><table><thead><tr><th>Stream</th>' +
      '<th>Target</th><th class="num">Connected</th><th class="num">Received</th>' +
      '<th class="num">Lost</th><th class="num">Duplicated</th><th class="num">Out of order</th>' +
      '<th class="num">Late</th><th class="num">Negative lag</th>' +
      '<th class="num">Reconnects</th><th class="num">Clock offset</th>' +
      '<th class="num">Mean lag</th><th>Lag</th></tr></thead><tbody>' +
      list.map(stream).join("") + "</tbody></table></div></section>";
  };

  const PARTS = [header, components, recommendations, slos, probes, streams, historySection];
  const renderApp = (doc) => PARTS.map((part) => part(doc)).join("");
  const pageTitle = (doc) =>
    `${text(doc.overall) || "UNKNOWN"} - probed status - ${text(doc.location)}`;

  const refresh = async () => {
    try {
      const resp = await fetch("api/v1/status", {
        cache: "no-store",
        headers: {Accept: "application/json"},
      });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const doc = await resp.json();
      const app = document.getElementById("app");
      app.innerHTML = renderApp(doc);
      app.setAttribute("data-rendered", "client");
      document.title = pageTitle(doc);
    } catch (err) {
      const el = document.getElementById("refresh");
      if (el) {
        const why = err && err.message ? err.message : String(err);
        el.textContent = `update failed (${why}); showing older data`;
        el.setAttribute("data-error", "true");
      }
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  };
  setTimeout(refresh, REFRESH_MS);
})();
""".replace("__REFRESH__", str(REFRESH_SECONDS)).replace("__CONFIG_LINE__", CONFIG_LINE_JS)
_SCRIPT = _SCRIPT.replace("__MAINTENANCE__", MAINTENANCE_JS).replace("__HISTORY__", HISTORY_JS)
_SCRIPT = _SCRIPT.replace("__CLOCK__", CLOCK_JS).replace("__UNITS__", UNITS_JS)


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


#: Only the page's own style and script run; network access only to its own origin.
_CSP = (
    f"default-src 'none'; style-src {_csp_hash(PAGE_CSS)}; script-src {_csp_hash(_SCRIPT)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return html.escape(text(value), quote=True)


def _page_title(doc: Mapping[str, Any]) -> str:
    return f"{text(doc.get('overall')) or 'UNKNOWN'} - probed status - {text(doc.get('location'))}"


def render_page(doc: Mapping[str, Any]) -> str:
    """The status page at ``/``: one self-contained HTML document rendered from ``doc``.

    Stable hooks for tests and scripts: ``#overall[data-state]``,
    ``.component[data-name][data-state][data-monitored]`` (``false``: no members),
    ``.recommendation[data-scenario][data-severity][data-state]`` (``.routing`` inside),
    ``p#state[data-healthy]``, ``p#config[data-ok]``, ``tr.slo[data-slo]``,
    ``tr.probe[data-probe][data-ok]`` (``true``, ``false`` or ``none``),
    ``tr.stream[data-stream][data-connected]``, ``tr.history[data-kind]`` and
    ``main#app[data-rendered]`` (``server``, or ``client`` after a refresh).
    """
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(_page_title(doc))}</title>\n"
        f"<style>{PAGE_CSS}</style>\n</head><body>\n"
        f'<main id="app" data-rendered="server">{page_app(doc, REFRESH_SECONDS)}</main>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
