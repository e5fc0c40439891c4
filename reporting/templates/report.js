(function () {
  "use strict";
  var config = {responsive: true, displaylogo: false, toImageButtonOptions: {format: "png", scale: 2}};
  var drawing = {};  // figure id -> the promise of its plot (drawn once, awaited by all)
  function draw(div) {
    var id = div.dataset.fig;
    if (!drawing[id]) {
      var fig = JSON.parse(document.getElementById("data-" + id).textContent);
      drawing[id] = Plotly.newPlot(div, fig.data, fig.layout, config);
      div.dataset.drawn = "1";
    }
    return drawing[id];
  }
  var plots = document.querySelectorAll("div.plot[data-fig]");
  if ("IntersectionObserver" in window) {
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { draw(e.target); io.unobserve(e.target); } });
    }, {rootMargin: "600px"});
    plots.forEach(function (d) { io.observe(d); });
  } else {
    plots.forEach(draw);
  }
  window.brunoDrawAll = function () { return Promise.all(Array.prototype.map.call(plots, draw)); };
  var curves = document.getElementById("device-curves");
  if (!curves) { return; }
  var devices = JSON.parse(curves.textContent);
  var select = document.getElementById("device-select");
  function show(id) {
    var d = devices[id];
    if (!d) { return; }
    select.value = id;
    document.getElementById("device-caption").textContent = d.caption;
    Plotly.react("device-plot", d.data, d.layout, config);
  }
  select.addEventListener("change", function () { window.location.hash = "device-" + select.value; });
  function fromHash() {
    var m = /^#device-(\d+)$/.exec(window.location.hash);
    if (m) { show(m[1]); document.getElementById("device-viewer").scrollIntoView(); }
  }
  window.addEventListener("hashchange", fromHash);
  if (!/^#device-/.test(window.location.hash)) { show(select.value); } else { fromHash(); }
})();
