// The operator page: polls the status API's JSON endpoints and renders them as text.
// No external asset, nothing stored in the browser: the token (when typed in) lives in the
// variable `token` below only, is sent in the Authorization header only, never in the URL.
(function () {
  "use strict";

  var REFRESH_MS = 4000;
  var token = null;
  var needToken = false; // the data endpoints answered 401: the API listens off loopback
  var timer = null;
  var busy = false;
  var again = false; // asked to refresh while a refresh was out: do it as soon as it is back

  function $(id) { return document.getElementById(id); }

  // ------------------------------------------------------------ DOM helpers (text only)
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function kv(dl, pairs) {
    clear(dl);
    pairs.forEach(function (p) {
      dl.appendChild(el("dt", null, p[0]));
      var dd = el("dd", p[2] || null, p[1]);
      dl.appendChild(dd);
    });
  }
  function table(headers, rows, empty) {
    var t = el("table", "grid");
    var tr = el("tr");
    headers.forEach(function (h) { tr.appendChild(el("th", null, h)); });
    var thead = el("thead");
    thead.appendChild(tr);
    t.appendChild(thead);
    var tb = el("tbody");
    rows.forEach(function (r) {
      var row = el("tr");
      r.forEach(function (c) {
        var cell = Array.isArray(c) ? el("td", c[1], c[0]) : el("td", null, c);
        row.appendChild(cell);
      });
      tb.appendChild(row);
    });
    t.appendChild(tb);
    if (!rows.length) {
      var none = el("tr");
      var td = el("td", "empty", empty || "none yet");
      td.colSpan = headers.length;
      none.appendChild(td);
      tb.appendChild(none);
    }
    return t;
  }

  // ------------------------------------------------------------ formatting
  function num(v, digits) {
    if (v === null || v === undefined || v === "" || isNaN(Number(v))) { return "\u2014"; }
    return Number(v).toLocaleString("en-US", {minimumFractionDigits: digits,
                                             maximumFractionDigits: digits});
  }
  function price(v) {
    if (v === null || v === undefined || v === "" || isNaN(Number(v))) { return "\u2014"; }
    return String(Number(Number(v).toPrecision(6)));
  }
  function pct(v) {
    return (v === null || v === undefined || !isFinite(v)) ? "\u2014" : (v * 100).toFixed(2) + " %";
  }
  function when(t) {
    if (!t) { return "\u2014"; }
    return String(t).replace("T", " ").replace(/:\d\d(\.\d+)?(Z|\+00:00)$/, "Z");
  }
  function dur(s) {
    if (s === null || s === undefined || !isFinite(s)) { return "\u2014"; }
    var a = Math.abs(s), sign = s < 0 ? "-" : "";
    if (a < 90) { return sign + Math.round(a) + " s"; }
    if (a < 5400) { return sign + Math.round(a / 60) + " min"; }
    if (a < 172800) { return sign + (a / 3600).toFixed(1) + " h"; }
    return sign + (a / 86400).toFixed(1) + " d";
  }
  function side(units) { return units > 0 ? "long" : (units < 0 ? "short" : "flat"); }
  function compact(v) {
    if (v === null || v === undefined) { return "\u2014"; }
    if (typeof v === "object") { return JSON.stringify(v); }
    return String(v);
  }

  // ------------------------------------------------------------ requests
  function getJSON(path, withToken) {
    var headers = {"Accept": "application/json"};
    if (withToken) { headers.Authorization = "Bearer " + withToken; }
    return fetch(path, {headers: headers, cache: "no-store", credentials: "omit",
                        redirect: "error"}).then(function (r) {
      if (r.status === 401) {
        var e = new Error("the status API needs the token");
        e.status = 401;
        throw e;
      }
      if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
      return r.json();
    });
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    again = false;
    if (timer) { clearTimeout(timer); timer = null; }
    var used = token; // the answers below belong to this token (it may change meanwhile)
    Promise.all([getJSON("/api/status", used), getJSON("/api/signals?limit=300", used),
                 getJSON("/api/trades?limit=60", used), getJSON("/api/equity?limit=2000", used),
                 getJSON("/api/feed", used)])
      .then(function (got) {
        render(got[0], got[1].signals || [], got[2], got[3].equity || [], got[4]);
        $("updated").textContent = "updated " + new Date().toLocaleTimeString();
        document.body.dataset.state = "ready";
      })
      .catch(function (e) {
        if (e.status === 401) {
          needToken = true;
          if (used !== token) { again = true; return; } // a new token: ask again with it
          if (token) { token = null; setAuthNote("that token was refused", "bad"); }
          showToken();
          document.body.dataset.state = "auth";
          $("updated").textContent = "waiting for the status token";
        } else {
          document.body.dataset.state = "error";
          $("updated").textContent = "update failed (" + e.message + "); retrying";
        }
      })
      .then(function () {
        busy = false;
        timer = setTimeout(refresh, again ? 0 : REFRESH_MS);
      });
  }

  // ------------------------------------------------------------ token and actions
  function setAuthNote(text, cls) {
    var n = $("auth-note");
    n.textContent = text;
    n.className = cls || "muted";
  }
  function showToken() {
    var panel = $("auth");
    panel.className = "panel auth" + (needToken && !token ? " needed" : "");
    $("auth-why").textContent = needToken
      ? "This status API listens off loopback: its data needs the status token."
      : "Halt, resume and reload need the status token.";
    $("forget").hidden = !token;
    $("actions").hidden = !token;
  }
  function useToken(ev) {
    ev.preventDefault();
    var f = $("token");
    var v = f.value.trim();
    f.value = "";
    token = v || null;
    setAuthNote(token ? "token in use (this page's memory only)" :
                "kept in this page's memory only: never stored, never in the address");
    showToken();
    refresh();
  }
  function forget() {
    token = null;
    setAuthNote("token forgotten");
    showToken();
    refresh();
  }
  function post(name, body) {
    if (!token) { return; }
    var out = $("action-result");
    out.textContent = name + "\u2026";
    fetch("/api/" + name, {method: "POST", cache: "no-store", credentials: "omit",
                           redirect: "error",
                           headers: {"Authorization": "Bearer " + token,
                                     "Content-Type": "application/json"},
                           body: JSON.stringify(body || {})})
      .then(function (r) {
        return r.text().then(function (t) {
          if (r.status === 401) { token = null; showToken(); setAuthNote("that token was refused", "bad"); }
          out.textContent = name + ": HTTP " + r.status + " " + t;
        });
      })
      .catch(function (e) { out.textContent = name + " failed: " + e.message; })
      .then(refresh);
  }

  // ------------------------------------------------------------ rendering
  function render(st, signals, trades, equity, feed) {
    $("service").textContent = st.service || "SEP runner";
    document.title = (st.service || "SEP runner") + " \u2014 " + (st.mode || "");
    var mode = $("mode");
    mode.textContent = st.mode || "";
    mode.className = "badge " + (st.mode || "");
    $("clock").textContent = "runner clock " + when(st.now) + (st.version ? "  \u00b7  v" + st.version : "");
    var market = $("market");
    market.textContent = st.market_open ? "market open" : "market closed";
    market.className = "badge " + (st.market_open ? "open" : "closed");

    var risk = st.risk || {};
    var banner = $("halted");
    banner.hidden = !risk.halted;
    banner.textContent = risk.halted ? "Trading is halted: " + (risk.halt_reason || "no reason given") : "";
    renderRisk(st, risk);
    renderAccount(st);
    renderEquity(equity, st);
    renderInstruments(st, signals, trades.decisions || [], feed);
    renderDecisions(trades.decisions || []);
    renderFeed(feed);
  }

  function renderRisk(st, risk) {
    var a = st.account || {};
    var dayStart = Number(risk.day_start_equity);
    var peak = Number(risk.peak_equity);
    var pnl = Number(st.pnl_today);
    var dd = (isFinite(peak) && peak > 0 && a.nav !== undefined) ? (a.nav - peak) / peak : null;
    var blocked = risk.blocked || {};
    var blockedText = Object.keys(blocked).map(function (k) {
      return k + " " + (blocked[k] > 0 ? "long" : "short") + " blocked";
    }).join(", ") || "none";
    kv($("risk"), [
      ["halted", risk.halted ? "yes: " + (risk.halt_reason || "") : "no", risk.halted ? "bad" : "good"],
      ["cooldown", risk.cooldown_until ? "until " + when(risk.cooldown_until) : "none",
       risk.cooldown_until ? "warn" : null],
      ["losses in a row", risk.consecutive_losses === undefined ? "\u2014" : risk.consecutive_losses],
      ["P&L today", num(pnl, 2) + (isFinite(dayStart) && dayStart > 0 ? "  (" + pct(pnl / dayStart) + ")" : ""),
       pnl < 0 ? "bad" : null],
      ["day start equity", num(dayStart, 2) + (risk.day ? "  (" + risk.day + ")" : "")],
      ["peak equity", num(peak, 2)],
      ["drawdown from peak", pct(dd), dd !== null && dd < 0 ? "warn" : null],
      ["after a stop", blockedText]
    ]);
  }

  function renderAccount(st) {
    var a = st.account || {};
    var rz = st.realized || {};
    var cur = a.currency ? " " + a.currency : "";
    var models = st.model_id || {};
    kv($("account"), [
      ["mode", st.mode || "\u2014"],
      ["balance", num(a.balance, 2) + cur],
      ["NAV", num(a.nav, 2) + cur],
      ["unrealised", num(a.unrealized, 2) + cur, a.unrealized < 0 ? "bad" : null],
      ["realised (trades)", num(rz.trades, 2) + cur, rz.trades < 0 ? "bad" : null],
      ["financing", num(rz.financing, 2) + cur, rz.financing < 0 ? "bad" : null],
      ["realised net", num(rz.net, 2) + cur, rz.net < 0 ? "bad" : null],
      ["open positions", (st.open_positions || []).length],
      ["models", Object.keys(models).map(function (k) { return models[k]; }).join(", ") || "\u2014"]
    ]);
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function renderEquity(rows, st) {
    var box = $("equity-chart");
    clear(box);
    var pts = rows.map(function (r) { return [Date.parse(r.time), Number(r.nav), r.time]; })
      .filter(function (p) { return isFinite(p[0]) && isFinite(p[1]); });
    var a = st.account;
    if (a && isFinite(Number(a.nav)) && st.now && isFinite(Date.parse(st.now))) {
      var t = Date.parse(st.now);
      if (!pts.length || t > pts[pts.length - 1][0]) { pts.push([t, Number(a.nav), st.now]); }
    }
    if (pts.length < 2) {
      box.appendChild(el("p", "empty", "not enough equity snapshots yet (" + pts.length + ")"));
      box.dataset.points = String(pts.length);
      return;
    }
    var W = 1000, H = 220, L = 78, R = 12, T = 12, B = 28;
    var t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    var lo = Math.min.apply(null, pts.map(function (p) { return p[1]; }));
    var hi = Math.max.apply(null, pts.map(function (p) { return p[1]; }));
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    var pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    var x = function (v) { return L + (t1 > t0 ? (v - t0) / (t1 - t0) : 0.5) * (W - L - R); };
    var y = function (v) { return T + (1 - (v - lo) / (hi - lo)) * (H - T - B); };
    var s = svg("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "equity curve"});
    s.appendChild(svg("line", {"class": "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}));
    s.appendChild(svg("line", {"class": "axis", x1: L, y1: T, x2: L, y2: H - B}));
    var line = pts.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); });
    s.appendChild(svg("polygon", {"class": "area", points: x(t0).toFixed(1) + "," + (H - B) + " " +
                                  line.join(" ") + " " + x(t1).toFixed(1) + "," + (H - B)}));
    s.appendChild(svg("polyline", {"class": "line", points: line.join(" ")}));
    var last = pts[pts.length - 1];
    s.appendChild(svg("circle", {"class": "dot", cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 3.5}));
    s.appendChild(svg("text", {x: L - 6, y: T + 10, "text-anchor": "end"}, num(hi - pad, 2)));
    s.appendChild(svg("text", {x: L - 6, y: H - B, "text-anchor": "end"}, num(lo + pad, 2)));
    s.appendChild(svg("text", {x: L, y: H - 8}, when(pts[0][2])));
    s.appendChild(svg("text", {x: W - R, y: H - 8, "text-anchor": "end"},
                      when(last[2]) + "  NAV " + num(last[1], 2)));
    box.appendChild(s);
    box.dataset.points = String(pts.length);
  }

  function renderInstruments(st, signals, decisions, feed) {
    var box = $("instruments");
    clear(box);
    var positions = st.open_positions || [];
    var policies = st.policy || {};
    var lags = (feed && feed.instruments) || {};
    var gran = (feed && feed.granularity_s) || 0;
    (st.instruments || []).forEach(function (inst) {
      var card = el("article", "card");
      card.dataset.instrument = inst;
      var head = el("div", "card-head");
      head.appendChild(el("h3", null, inst));
      head.appendChild(el("span", "muted", (st.model_id || {})[inst] || ""));
      card.appendChild(head);

      // position
      card.appendChild(el("h4", null, "Position"));
      var mine = positions.filter(function (p) { return p.instrument === inst; });
      if (!mine.length) {
        card.appendChild(el("p", "position flat", "flat"));
      }
      mine.forEach(function (p) {
        var line = el("p", "position " + side(p.units));
        line.dataset.tradeId = p.trade_id;
        line.textContent = side(p.units) + " " + Math.abs(p.units) + " @ " + price(p.entry_price) +
          "  SL " + price(p.stop_loss) + "  TP " + price(p.take_profit) +
          (p.financing ? "  financing " + num(p.financing, 2) : "") + "  since " +
          when(p.opened_at) + "  trade " + p.trade_id + (p.origin && p.origin !== "runner" ? "  (" + p.origin + ")" : "");
        card.appendChild(line);
      });

      // policy (when the runner reports it)
      var pol = policies[inst];
      if (pol !== undefined && pol !== null) {
        card.appendChild(el("h4", null, "Policy in force"));
        var dl = el("dl", "kv policy");
        kv(dl, typeof pol === "object" && !Array.isArray(pol)
          ? Object.keys(pol).map(function (k) { return [k, compact(pol[k])]; })
          : [["policy", compact(pol)]]);
        card.appendChild(dl);
      }

      // candle and feed lag
      var lc = (st.last_candle || {})[inst] || {};
      var lag = lags[inst] || {};
      var late = lag.candle_age_s !== null && lag.candle_age_s !== undefined && gran > 0 && lag.candle_age_s > gran;
      var fdl = el("dl", "kv feed");
      kv(fdl, [
        ["last candle", when(lc.time) + "  close " + price(lc.close)],
        ["since its close", dur(lag.candle_age_s) + (late ? "  (next candle late)" : ""), late ? "warn" : null],
        ["last price", when(lag.quote_time) + (lag.quote_age_s !== null && lag.quote_age_s !== undefined ? "  (" + dur(lag.quote_age_s) + " old)" : "")]
      ]);
      card.appendChild(fdl);

      // signals
      card.appendChild(el("h4", null, "Last signals"));
      var sig = signals.filter(function (s) { return s.instrument === inst; }).slice(0, 8);
      var srows = sig.map(function (s) {
        var cls = s.target > 0 ? "long" : (s.target < 0 ? "short" : "flat");
        return [when(s.candle_time), [s.action, cls], [s.target, cls],
                s.confidence === null || s.confidence === undefined ? "\u2014" : Number(s.confidence).toFixed(3)];
      });
      var st1 = table(["candle", "signal", "target", "confidence"], srows, "no signal yet");
      st1.className = "grid signals";
      card.appendChild(st1);

      // decisions
      card.appendChild(el("h4", null, "Last decisions"));
      var dec = decisions.filter(function (d) { return d.instrument === inst; }).slice(0, 8);
      var dt = table(["candle", "kind", "taken", "rule", "reason"], dec.map(decisionCells), "no decision yet");
      dt.className = "grid decisions";
      card.appendChild(dt);
      box.appendChild(card);
    });
  }

  function decisionCells(d) {
    return [when(d.candle_time || d.time), d.kind,
            d.taken ? ["taken", "good"] : ["refused", "bad"], d.rule || "\u2014", [d.reason, "reason"]];
  }

  function renderDecisions(decisions) {
    var tb = $("decisions").tBodies[0];
    clear(tb);
    decisions.slice(0, 25).forEach(function (d) {
      var row = el("tr");
      var cells = [when(d.time), d.candle_time ? when(d.candle_time) : "\u2014",
                   d.instrument || "\u2014"].concat(decisionCells(d).slice(1));
      cells.forEach(function (c) {
        row.appendChild(Array.isArray(c) ? el("td", c[1], c[0]) : el("td", null, c));
      });
      tb.appendChild(row);
    });
    if (!decisions.length) {
      var none = el("tr");
      var td = el("td", "empty", "no decision yet");
      td.colSpan = 7;
      none.appendChild(td);
      tb.appendChild(none);
    }
  }

  var FEED_KEYS = [["stream_reconnects", "stream reconnects"], ["stream_stalls", "stream stalls"],
                   ["stream_connects", "stream connects"], ["candle_requests", "candle requests"],
                   ["pricing_requests", "price requests"], ["backfilled", "candles backfilled"],
                   ["incomplete_dropped", "incomplete candles dropped"]];

  function renderFeed(feed) {
    var stats = (feed && feed.stats) || {};
    var pairs = FEED_KEYS.filter(function (k) { return stats[k[0]] !== undefined; })
      .map(function (k) {
        var bad = k[0] === "stream_reconnects" || k[0] === "stream_stalls";
        return [k[1], num(stats[k[0]], 0), bad && stats[k[0]] > 0 ? "warn" : null];
      });
    if (!pairs.length) { pairs.push(["counters", "none from this feed (a replayed file has none)"]); }
    kv($("feed"), pairs);
    var c = (feed && feed.counters) || {};
    var names = Object.keys(c).sort();
    kv($("counters"), names.length ? names.map(function (k) {
      var bad = /error|refused|ambiguous|429|5xx/.test(k);
      return [k.replace(/_/g, " "), num(c[k], 0), bad && c[k] > 0 ? "warn" : null];
    }) : [["events", "none yet"]]);
  }

  // ------------------------------------------------------------ start
  document.addEventListener("DOMContentLoaded", function () {
    $("token-form").addEventListener("submit", useToken);
    $("forget").addEventListener("click", forget);
    $("halt-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var reason = $("halt-reason").value.trim();
      if (window.confirm("Halt trading (no new positions)?")) {
        post("halt", reason ? {reason: reason} : {});
      }
    });
    $("resume").addEventListener("click", function () {
      if (window.confirm("Resume trading?")) { post("resume", {}); }
    });
    $("reload").addEventListener("click", function () {
      if (window.confirm("Verify the model artifacts on disk again and swap them in?")) { post("reload", {}); }
    });
    showToken();
    refresh();
  });
})();
