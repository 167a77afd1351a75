/* The operator dashboard on the admin index: fetches the JSON endpoints named on #gatehouse-dashboard, draws
   the charts with the vendored Chart.js and hands the rest to dashboard_panels.js (tables and lists). No
   framework, no build step, nothing loaded from the network but this gateway.

   Contract with the page's tests: each chart is a <canvas data-chart="name">, marked data-drawn="true" once
   Chart.js has drawn the data of the current range and filters (the mark is removed while a new range loads). */
(function () {
  "use strict";

  var root = document.getElementById("gatehouse-dashboard");
  var panels = window.GatehouseDashboardPanels;
  if (!root || typeof window.Chart === "undefined" || !panels) {
    return;
  }
  var Chart = window.Chart;
  var compactFormat = panels.compactFormat;
  var formatInteger = panels.formatInteger;
  var formatUsd = panels.formatUsd;

  var RANGES = ["hour", "day", "30d"];
  var DEFAULT_RANGE = root.dataset.range || "day";
  // Seconds between refreshes of the range's charts and tables; live panels (cooldowns, batches) every 10 s.
  var REFRESH_SECONDS = { hour: 30, day: 60, "30d": 300 };
  var LIVE_REFRESH_SECONDS = 10;
  // Readable on the admin's light and dark backgrounds alike; "(other groups)" is drawn in grey.
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#3ba7c9"];
  var OTHER_GROUPS = "(other groups)";
  var OTHER_COLOR = "#9a9a9a";

  var state = { range: DEFAULT_RANGE, keyId: "", teamId: "", trafficToken: 0 };
  var charts = {};
  var groupColors = {};
  var timers = { range: null, live: null };

  // -- theme: the admin's CSS variables, read again whenever the theme changes ------------------------

  function cssVariable(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function theme() {
    return {
      text: cssVariable("--body-quiet-color", "#666"),
      grid: cssVariable("--hairline-color", "#e8e8e8"),
      border: cssVariable("--border-color", "#ccc"),
      error: cssVariable("--error-fg", "#ba2121"),
      background: cssVariable("--body-bg", "#fff"),
    };
  }

  function applyTheme(chart) {
    var colors = theme();
    var scales = chart.options.scales;
    Object.keys(scales).forEach(function (axis) {
      scales[axis].ticks.color = colors.text;
      scales[axis].grid.color = colors.grid;
      scales[axis].border = { color: colors.border };
    });
    chart.options.plugins.legend.labels.color = colors.text;
    chart.data.datasets.forEach(function (dataset) {
      if (dataset.isErrors) {
        dataset.borderColor = colors.error;
        dataset.backgroundColor = colors.error;
      }
    });
  }

  function rethemeAll() {
    Object.keys(charts).forEach(function (name) {
      applyTheme(charts[name]);
      charts[name].update("none");
    });
  }

  // -- charts ------------------------------------------------------------------------------------

  // Marks a canvas once Chart.js has painted the data the dashboard gave it.
  var drawnMarker = {
    id: "gatehouseDrawn",
    afterRender: function (chart) {
      if (chart.$gatehouseLoaded) {
        chart.canvas.setAttribute("data-drawn", "true");
      }
    },
  };

  function colorFor(group) {
    if (group === OTHER_GROUPS) {
      return OTHER_COLOR;
    }
    if (!(group in groupColors)) {
      groupColors[group] = PALETTE[Object.keys(groupColors).length % PALETTE.length];
    }
    return groupColors[group];
  }

  function makeChart(name, valueFormat) {
    var canvas = root.querySelector('canvas[data-chart="' + name + '"]');
    if (!canvas) {
      return null;
    }
    var chart = new Chart(canvas, {
      type: "bar",
      data: { labels: [], datasets: [] },
      plugins: [drawnMarker],
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 200 },
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 }, grid: { display: false } },
          y: { stacked: true, beginAtZero: true, ticks: { callback: valueFormat.axis }, grid: {} },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (context) {
                return context.dataset.label + ": " + valueFormat.tooltip(context.parsed.y);
              },
            },
          },
        },
      },
    });
    applyTheme(chart);
    return chart;
  }

  function groupDataset(series, metric) {
    var color = colorFor(series.model_group);
    return { label: series.model_group, data: series[metric], backgroundColor: color, borderColor: color,
             stack: "groups", borderWidth: 0 };
  }

  function errorsDataset(traffic) {
    var errors = traffic.labels.map(function (_, index) {
      return traffic.series.reduce(function (sum, series) { return sum + series.errors[index]; }, 0);
    });
    var color = theme().error;
    return { type: "line", label: "errors", data: errors, isErrors: true, stack: "errors", order: -1,
             borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: 0, tension: 0.2 };
  }

  function drawTraffic(traffic) {
    var labels = traffic.labels.map(function (label) { return panels.formatLabel(label, traffic.span); });
    var datasets = {
      requests: traffic.series.map(function (series) { return groupDataset(series, "requests"); })
        .concat([errorsDataset(traffic)]),
      spend: traffic.series.map(function (series) { return groupDataset(series, "cost"); }),
      tokens: traffic.series.map(function (series) { return groupDataset(series, "tokens"); }),
    };
    Object.keys(datasets).forEach(function (name) {
      var chart = charts[name];
      if (!chart) {
        return;
      }
      chart.data.labels = labels;
      chart.data.datasets = datasets[name];
      chart.$gatehouseLoaded = true;
      applyTheme(chart);
      chart.update();
    });
  }

  function unmarkCharts() {
    Object.keys(charts).forEach(function (name) {
      charts[name].$gatehouseLoaded = false;
      charts[name].canvas.removeAttribute("data-drawn");
    });
  }

  // -- fetching ------------------------------------------------------------------------------------

  function setStatus(message, isError) {
    var status = document.getElementById("dashboard-status");
    status.textContent = message || "";
    status.classList.toggle("gh-error", Boolean(isError));
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") === -1) {
        // A redirect to the login page: the admin session ended.
        throw new Error("Your admin session has ended: reload the page to log in again.");
      }
      return response.json().then(function (body) {
        if (!response.ok) {
          throw new Error((body.error && body.error.message) || "The dashboard could not be loaded.");
        }
        return body;
      });
    });
  }

  function query(extra) {
    var params = new URLSearchParams({ range: state.range });
    Object.keys(extra || {}).forEach(function (name) {
      if (extra[name]) {
        params.set(name, extra[name]);
      }
    });
    return "?" + params.toString();
  }

  function loadRange() {
    var token = ++state.trafficToken;
    var trafficUrl = root.dataset.trafficUrl + query({ key_id: state.keyId, team_id: state.teamId });
    var deploymentsUrl = root.dataset.deploymentsUrl + query();
    return Promise.all([getJson(trafficUrl), getJson(deploymentsUrl)]).then(function (answers) {
      if (token !== state.trafficToken) {
        return; // a newer range or filter was asked for meanwhile
      }
      drawTraffic(answers[0]);
      panels.drawTotals(root, answers[0].totals);
      panels.drawTopKeys(answers[0].top_keys);
      panels.drawDeployments(answers[1]);
      setStatus("Updated " + new Date().toLocaleTimeString());
    }).catch(function (error) {
      if (token === state.trafficToken) {
        setStatus(error.message, true);
      }
    });
  }

  function loadLive() {
    return Promise.all([getJson(root.dataset.cooldownsUrl), getJson(root.dataset.batchesUrl)]).then(function (answers) {
      panels.drawCooldowns(answers[0]);
      panels.drawBatches(answers[1]);
    }).catch(function (error) {
      setStatus(error.message, true);
    });
  }

  function schedule() {
    clearInterval(timers.range);
    clearInterval(timers.live);
    timers.range = setInterval(function () {
      if (!document.hidden) {
        loadRange();
      }
    }, REFRESH_SECONDS[state.range] * 1000);
    timers.live = setInterval(function () {
      if (!document.hidden) {
        loadLive();
      }
    }, LIVE_REFRESH_SECONDS * 1000);
  }

  // -- state: range and filters, kept in the address so a reload or a shared link shows the same -----

  function remember() {
    var params = new URLSearchParams(window.location.search);
    ["range", "key_id", "team_id"].forEach(function (name) { params.delete(name); });
    if (state.range !== DEFAULT_RANGE) {
      params.set("range", state.range);
    }
    if (state.keyId) {
      params.set("key_id", state.keyId);
    }
    if (state.teamId) {
      params.set("team_id", state.teamId);
    }
    var search = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
  }

  function showState() {
    root.dataset.range = state.range;
    root.querySelectorAll("button[data-range]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
    });
    var form = document.getElementById("dashboard-filter");
    form.elements.key_id.value = state.keyId;
    form.elements.team_id.value = state.teamId;
  }

  function changed() {
    showState();
    remember();
    unmarkCharts();
    setStatus("Loading…");
    loadRange();
    schedule();
  }

  function setRange(range) {
    if (RANGES.indexOf(range) === -1) {
      return;
    }
    state.range = range;
    changed();
  }

  function setFilters(keyId, teamId) {
    state.keyId = (keyId || "").trim();
    state.teamId = (teamId || "").trim();
    changed();
  }

  function start() {
    var params = new URLSearchParams(window.location.search);
    state.range = RANGES.indexOf(params.get("range")) === -1 ? DEFAULT_RANGE : params.get("range");
    state.keyId = params.get("key_id") || "";
    state.teamId = params.get("team_id") || "";

    charts.requests = makeChart("requests", { axis: compactFormat.format, tooltip: formatInteger });
    charts.spend = makeChart("spend", { axis: function (value) { return formatUsd(value); }, tooltip: formatUsd });
    charts.tokens = makeChart("tokens", { axis: compactFormat.format, tooltip: formatInteger });
    Object.keys(charts).forEach(function (name) {
      if (!charts[name]) {
        delete charts[name];
      }
    });

    panels.onFilter(function (keyId, teamId) {
      // A key's filter keeps the team's, and the other way round.
      setFilters(keyId === null ? state.keyId : keyId, teamId === null ? state.teamId : teamId);
    });
    root.querySelectorAll("button[data-range]").forEach(function (button) {
      button.addEventListener("click", function () { setRange(button.dataset.range); });
    });
    var form = document.getElementById("dashboard-filter");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      setFilters(form.elements.key_id.value, form.elements.team_id.value);
    });
    form.addEventListener("reset", function (event) {
      event.preventDefault();
      setFilters("", "");
    });

    new MutationObserver(rethemeAll).observe(document.documentElement, { attributes: true,
                                                                         attributeFilter: ["data-theme"] });
    if (window.matchMedia) {
      window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", rethemeAll);
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        loadRange();
        loadLive();
      }
    });

    changed();
    loadLive();
  }

  start();
})();
