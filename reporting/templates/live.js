(function () {
  "use strict";
  var live = window.brunoLive = {measurements: [], byId: {}, received: {}, lastId: 0, state: null, events: 0};
  var VIRIDIS = ["#440154", "#482777", "#3f4a8a", "#31678e", "#26838f", "#1f9d8a", "#6cce5a", "#b6de2b", "#fee825"];
  var RDBU = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#f7f7f7", "#f4a582", "#d6604d", "#b2182b", "#67001f"];
  function $(id) { return document.getElementById(id); }
  function fmt(x) {
    if (x === null || x === undefined || !isFinite(x)) { return "–"; }
    if (Math.abs(x) < 1e-5) { return "0"; }
    var d = 2 - Math.floor(Math.log10(Math.abs(x)));
    return d <= 0 ? Math.round(x).toString() : x.toFixed(d);
  }
  function duration(s) {
    if (s === null || s === undefined) { return "–"; }
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + sec + " s";
  }
  function ramp(colors, t) {
    t = Math.min(1, Math.max(0, t));
    return colors[Math.round(t * (colors.length - 1))];
  }
  function median(a) { a = a.slice().sort(function (x, y) { return x - y; }); var n = a.length; return n ? (n % 2 ? a[(n - 1) / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2])) : NaN; }

  function merge(doc) {
    if (doc.reset) { live.measurements = []; live.byId = {}; live.lastId = 0; }
    var now = Date.now();
    (doc.measurements || []).forEach(function (m) {
      if (live.byId[m.id]) { return; }
      live.byId[m.id] = m;
      live.received[m.id] = now;
      live.measurements.push(m);
      live.lastId = Math.max(live.lastId, m.id);
    });
    live.state = doc;
  }

  function scalarChoice(doc) {
    var sel = $("scalar"), keys = Object.keys(doc.scalars || {}).sort();
    if (sel.options.length !== keys.length) {
      var cur = sel.value || doc.default_scalar;
      sel.innerHTML = "";
      keys.forEach(function (k) { var o = document.createElement("option"); o.value = k; o.textContent = doc.scalars[k].label + (doc.scalars[k].unit ? " (" + doc.scalars[k].unit + ")" : ""); sel.appendChild(o); });
      var want = keys.indexOf(cur) >= 0 ? cur : (keys.filter(function (k) { return !/^(n_|formed)/.test(k.split(":")[1]); })[0] || keys[0]);
      if (want) { sel.value = want; }
    }
    return sel.value;
  }

  function drawWafer(doc) {
    var svg = $("wafer"), dies = doc.dies || [];
    if (!dies.length) { svg.innerHTML = ""; return; }
    var key = scalarChoice(doc), info = (doc.scalars || {})[key] || {factor: 1, unit: ""};
    var proto = key ? key.split(":")[0] : "", name = key ? key.split(":").slice(1).join(":") : "";
    var per = {}, done = {}, failed = {};
    live.measurements.forEach(function (m) {
      var d = m.die[0] + "," + m.die[1];
      done[d] = (done[d] || 0) + 1;
      if (m.status !== "ok") { (failed[d] = failed[d] || []).push(m.die_label + "/" + m.site + " " + m.protocol + ": " + (m.error || m.status)); }
      if (m.protocol === proto && m.scalars && m.scalars[name] !== undefined) { (per[d] = per[d] || {})[m.site] = m.scalars[name] * info.factor; }
    });
    var vals = {}, all = [];
    Object.keys(per).forEach(function (d) { var v = median(Object.values(per[d])); vals[d] = v; all.push(v); });
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    if (info.diverging) { var mm = Math.max(Math.abs(lo), Math.abs(hi)) || 1; lo = -mm; hi = mm; }
    var xs = dies.map(function (d) { return d.col; }), ys = dies.map(function (d) { return d.row; });
    var cx = (Math.min.apply(null, xs) + Math.max.apply(null, xs)) / 2, cy = (Math.min.apply(null, ys) + Math.max.apply(null, ys)) / 2;
    var r = 0;
    dies.forEach(function (d) { r = Math.max(r, Math.hypot(Math.abs(d.col - cx) + 0.5, Math.abs(d.row - cy) + 0.5)); });
    r = r * 1.04 + 0.25;
    var pad = 0.3, x0 = cx - r - pad, y0 = cy - r - pad, size = 2 * (r + pad);
    svg.setAttribute("viewBox", x0 + " " + y0 + " " + size + " " + size);
    var depth = 0.06, dd = r * (1 - depth), half = Math.acos(dd / r), pts = [];
    for (var i = 0; i <= 160; i++) { var a = Math.PI / 2 + half + i * (2 * Math.PI - 2 * half) / 160; pts.push((cx + r * Math.cos(a)).toFixed(3) + "," + (cy + r * Math.sin(a)).toFixed(3)); }
    var here = doc.bench && doc.bench.prober ? doc.bench.prober.col + "," + doc.bench.prober.row : "";
    var running = doc.run && doc.run.status === "running";
    var parts = ['<path d="M ' + pts.join(" L ") + ' Z" fill="#fbfbfb" stroke="#333" stroke-width="0.05"/>'];
    dies.forEach(function (d) {
      var k = d.col + "," + d.row, v = vals[k], cls = "die";
      if (d.planned) { cls += " planned"; }
      if (failed[k]) { cls += " failed"; }
      if (running && k === here) { cls += " here"; }
      var fill = v !== undefined && isFinite(v) ? ramp(info.diverging ? RDBU : VIRIDIS, hi > lo ? (v - lo) / (hi - lo) : 0.5) : (done[k] ? "#d9d9d9" : (d.planned ? "#ffffff" : "#eeeeee"));
      var tip = "die " + d.label + " (col " + d.col + ", row " + d.row + ")\n" + (done[k] || 0) + (d.planned ? " of " + d.planned : "") + " measurements" + (v !== undefined ? "\n" + fmt(v) + " " + info.unit : "") + (failed[k] ? "\nfailed:\n" + failed[k].slice(0, 4).join("\n") : "");
      var dark = v !== undefined && (info.diverging ? Math.abs((v - lo) / (hi - lo) - 0.5) > 0.3 : (v - lo) / ((hi - lo) || 1) < 0.55);
      parts.push('<g class="' + cls + '" data-die="' + k + '" data-done="' + (done[k] || 0) + '" data-value="' + (v === undefined ? "" : v) + '"><title>' + tip.replace(/&/g, "&amp;").replace(/</g, "&lt;") + '</title>' +
        '<rect x="' + (d.col - 0.47) + '" y="' + (d.row - 0.47) + '" width="0.94" height="0.94" fill="' + fill + '"/>' +
        (v !== undefined ? '<text x="' + d.col + '" y="' + d.row + '" fill="' + (dark ? "#fff" : "#000") + '">' + fmt(v) + '</text>' : "") + (failed[k] ? '<text x="' + (d.col + 0.33) + '" y="' + (d.row - 0.32) + '" fill="#d62728" style="font-size:0.3px;font-weight:700">!</text>' : "") + '</g>');
    });
    svg.innerHTML = parts.join("");
    var leg = $("legend");
    leg.innerHTML = all.length ? '<span>' + fmt(lo) + '</span><span class="ramp" style="background:linear-gradient(to right,' + (info.diverging ? RDBU : VIRIDIS).join(",") + ')"></span><span>' + fmt(hi) + " " + info.unit + "</span><span>· blue frame: prober here · red: a failure</span>" : "<span>no value of this quantity yet</span>";
  }

  function drawProgress(p, run) {
    p = p || {};
    $("done").textContent = p.done || 0;
    $("total").textContent = p.total === null || p.total === undefined ? "?" : p.total;
    $("failed").textContent = p.failed || 0;
    $("bar").firstElementChild.style.width = p.total ? Math.min(100, 100 * p.done / p.total) + "%" : "0";
    $("eta").textContent = run && run.status === "running" ? duration(p.eta_s) : "–";
    $("last-commit").textContent = p.last_commit_s_ago === null || p.last_commit_s_ago === undefined ? "–" : duration(p.last_commit_s_ago) + " ago";
    $("stalled").classList.toggle("show", !!p.stalled);
    $("runner").textContent = p.runner ? p.runner + (p.heartbeat_s_ago !== null && p.heartbeat_s_ago !== undefined ? " · heartbeat " + duration(p.heartbeat_s_ago) + " ago" : "") : "–";
    var fin = $("finished"), st = run && run.status;
    fin.classList.toggle("show", !!st && st !== "running");
    fin.textContent = st && st !== "running" ? "Run " + st + (run.finished_at ? " at " + run.finished_at.replace("T", " ").slice(0, 19) + " UTC" : "") + "." : "";
  }

  function drawBench(b, run) {
    var rows = [];
    var st = run && run.status;
    if (b && st && st !== "running") {
      // the snapshot is the latest commit's: after the run ended it is history, not the bench now
      rows.push('<tr class="bench-ended"><td colspan="3" style="color:#8a5a00">As at the run\'s last commit; the run is ' + st + ", so this is not the bench now (a runner that ends cleanly leaves outputs off).</td></tr>");
    }
    if (b && b.prober) { rows.push("<tr><td>prober</td><td>die " + b.prober.die + ", site " + b.prober.site + " (" + b.prober.protocol + ")</td></tr>"); }
    ["smu", "awg", "scope"].forEach(function (role) {
      var e = b && b[role]; if (!e) { return; }
      var out = e.output ? ' output <span class="' + e.output + '">' + e.output + "</span>" : "";
      var extra = [];
      if (e.source_voltage_v !== undefined) { extra.push(fmt(e.source_voltage_v) + " V"); }
      if (e.current_limit_a !== undefined) { extra.push("limit " + fmt(e.current_limit_a * 1e6) + " µA"); }
      if (e.amplitude_vpp !== undefined) { extra.push(fmt(e.amplitude_vpp) + " Vpp"); }
      rows.push("<tr><td>" + role + "</td><td>" + out + (extra.length ? " · " + extra.join(", ") : "") + '</td><td style="color:#888">' + e.idn.split(",").slice(0, 2).join(" ") + "</td></tr>");
    });
    $("bench").innerHTML = rows.join("") || "<tr><td>–</td></tr>";
  }

  function drawFailures() {
    var f = live.measurements.filter(function (m) { return m.status !== "ok"; });
    $("n-failures").textContent = f.length;
    $("failures").innerHTML = f.map(function (m) {
      return '<li class="failure" data-mid="' + m.id + '"><b>' + m.die_label + "/" + m.site + "</b> " + m.protocol + ": " + String(m.error || m.status).replace(/&/g, "&amp;").replace(/</g, "&lt;") + "</li>";
    }).join("");
  }

  var drawn = {};
  function drawCurves(curves) {
    var box = $("curves");
    Object.keys(curves || {}).sort().forEach(function (p) {
      var c = curves[p], id = "curve-" + p, div = $(id);
      if (!div) { div = document.createElement("div"); div.className = "curve"; div.id = id; box.appendChild(div); }
      if (drawn[p] === c.measurement_id || !window.Plotly) { return; }
      drawn[p] = c.measurement_id;
      div.dataset.mid = c.measurement_id;
      var data = c.ys.map(function (y) { return {type: "scatter", mode: c.mode, x: c.x, y: y.y, name: y.name, marker: {size: 5}, line: {width: 1.5}}; });
      var layout = {title: {text: p + " · " + c.device, font: {size: 13}, x: 0.02, xanchor: "left"}, height: 270, margin: {l: 60, r: 12, t: 34, b: 44}, showlegend: c.ys.length > 1,
        xaxis: {title: {text: c.x_label}, type: c.x_log ? "log" : "linear", exponentformat: c.x_log ? "SI" : "none"},
        yaxis: {title: {text: c.y_label}, type: c.y_log ? "log" : "linear", exponentformat: c.y_log ? "SI" : "none"}};
      Plotly.react(div, data, layout, {displaylogo: false, responsive: true, displayModeBar: false});
    });
  }

  function render() {
    var doc = live.state; if (!doc) { return; }
    var run = doc.run || {};
    $("run-id").textContent = run.id === undefined ? "–" : run.id;
    $("run-plan").textContent = run.plan || "–";
    $("run-purpose").textContent = run.purpose || "–";
    $("run-status").textContent = run.status || "–";
    var err = $("db-error"); err.classList.toggle("show", !!doc.error); err.textContent = doc.error || "";
    drawProgress(doc.progress, run);
    drawWafer(doc);
    drawBench(doc.bench, run);
    drawFailures();
    drawCurves(doc.curves);
    document.body.dataset.version = doc.version;
  }

  $("scalar").addEventListener("change", function () { drawWafer(live.state); });
  var es = new EventSource("/api/events?after=0");
  es.addEventListener("state", function (e) { live.events += 1; merge(JSON.parse(e.data)); render(); });
  es.addEventListener("tick", function (e) { if (live.state) { live.state.progress = JSON.parse(e.data).progress; drawProgress(live.state.progress, live.state.run); } });
  es.onopen = function () { var c = $("conn"); c.textContent = "live"; c.classList.remove("down"); };
  es.onerror = function () { var c = $("conn"); c.textContent = "reconnecting"; c.classList.add("down"); };
})();
