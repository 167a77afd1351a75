/* The dashboard's numbers, tables and lists: formatting, and drawing the JSON answers into the page with
   textContent only (aliases and ids are user input). Loaded before dashboard.js, which draws the charts,
   fetches the data and calls these through window.GatehouseDashboardPanels. */
(function () {
  "use strict";

  // Set by dashboard.js: called with (keyId, teamId) when a "filter" link of the top keys table is clicked.
  var filterHandler = function () {};

  // -- formatting --------------------------------------------------------------------------------

  var integerFormat = new Intl.NumberFormat();
  var compactFormat = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  function formatInteger(value) {
    return integerFormat.format(value || 0);
  }

  function formatUsd(value) {
    var amount = value || 0;
    var digits = amount !== 0 && Math.abs(amount) < 0.01 ? 6 : 2;
    return "$" + amount.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function formatPercent(ratio) {
    return ratio === null || ratio === undefined ? "–" : (ratio * 100).toFixed(ratio < 0.001 && ratio > 0 ? 2 : 1) + "%";
  }

  function formatMs(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    return value >= 1000 ? (value / 1000).toFixed(2) + " s" : Math.round(value) + " ms";
  }

  function formatLabel(label, span) {
    if (span === "day") {
      var day = new Date(label + "T00:00:00Z");
      return day.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
    }
    var moment = new Date(label);
    if (span === "hour") {
      return moment.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
    }
    return moment.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  // -- DOM helpers ---------------------------------------------------------------------------------

  function element(tag, options, children) {
    var node = document.createElement(tag);
    options = options || {};
    if (options.text !== undefined && options.text !== null) {
      node.textContent = String(options.text);
    }
    if (options.className) {
      node.className = options.className;
    }
    if (options.href) {
      node.setAttribute("href", options.href);
    }
    if (options.title) {
      node.setAttribute("title", options.title);
    }
    (children || []).forEach(function (child) {
      if (child) {
        node.appendChild(child);
      }
    });
    return node;
  }

  function cell(content, className) {
    var td = element("td", { className: className });
    if (content instanceof Node) {
      td.appendChild(content);
    } else {
      td.textContent = content === null || content === undefined ? "–" : String(content);
    }
    return td;
  }

  function emptyRow(tbody, columns, message) {
    var row = element("tr", { className: "gh-empty" });
    var td = element("td", { text: message });
    td.setAttribute("colspan", String(columns));
    row.appendChild(td);
    tbody.replaceChildren(row);
  }

  function filterButton(label, field, value) {
    var button = element("button", { text: label, className: "gh-link-button", title: "Show only this " + field });
    button.type = "button";
    button.addEventListener("click", function () {
      filterHandler(field === "key" ? value : null, field === "team" ? value : null);
    });
    return button;
  }

  // -- tables and lists ----------------------------------------------------------------------------

  function drawTotals(root, totals) {
    var shown = {
      requests: formatInteger(totals.requests),
      errors: formatInteger(totals.errors),
      error_rate: formatPercent(totals.error_rate),
      tokens: compactFormat.format(totals.tokens || 0),
      cost: formatUsd(totals.cost),
    };
    Object.keys(shown).forEach(function (name) {
      var target = root.querySelector('[data-total="' + name + '"]');
      if (target) {
        target.textContent = shown[name];
      }
    });
  }

  function drawTopKeys(keys) {
    var tbody = document.querySelector("#top-keys tbody");
    var keyOptions = document.getElementById("gh-key-options");
    var teamOptions = document.getElementById("gh-team-options");
    if (!keys.length) {
      emptyRow(tbody, 6, "No traffic in this range.");
      return;
    }
    var teams = {};
    tbody.replaceChildren.apply(tbody, keys.map(function (key) {
      var name = key.master_key ? "master key" : key.key_alias || key.key_id;
      var label = key.admin_url ? element("a", { text: name, href: key.admin_url, title: key.key_id })
        : element("span", { text: name, title: key.key_id });
      var keyCell = element("span", {}, [label, key.master_key ? null : filterButton("filter", "key", key.key_id)]);
      var teamCell = key.team_id ? element("span", {}, [element("span", { text: key.team_id }),
        filterButton("filter", "team", key.team_id)]) : element("span", { text: "–", className: "gh-muted" });
      if (key.team_id) {
        teams[key.team_id] = true;
      }
      var row = element("tr", {}, [cell(keyCell), cell(teamCell), cell(formatInteger(key.requests), "gh-number"),
        cell(formatInteger(key.errors), "gh-number"), cell(formatInteger(key.tokens), "gh-number"),
        cell(formatUsd(key.cost), "gh-number")]);
      row.setAttribute("data-key-id", key.key_id);
      return row;
    }));
    keyOptions.replaceChildren.apply(keyOptions, keys.filter(function (key) { return !key.master_key; })
      .map(function (key) {
        var option = element("option", { text: key.key_alias || key.key_id });
        option.value = key.key_id;
        return option;
      }));
    teamOptions.replaceChildren.apply(teamOptions, Object.keys(teams).map(function (team) {
      var option = element("option");
      option.value = team;
      return option;
    }));
  }

  function statusBadge(deployment) {
    if (deployment.cooldown_seconds !== null) {
      return element("span", { className: "gh-badge gh-cooling",
                               text: "cooling down " + Math.ceil(deployment.cooldown_seconds) + " s" });
    }
    if (!deployment.in_registry) {
      return element("span", { className: "gh-badge", text: "removed" });
    }
    return element("span", { className: "gh-badge gh-serving", text: "serving" });
  }

  function drawDeployments(report) {
    var tbody = document.querySelector("#deployment-health tbody");
    if (!report.deployments.length) {
      emptyRow(tbody, 9, "No deployments, and no traffic in this range.");
      return;
    }
    tbody.replaceChildren.apply(tbody, report.deployments.map(function (deployment) {
      var name = deployment.admin_url ? element("a", { text: deployment.deployment_id, href: deployment.admin_url })
        : element("span", { text: deployment.deployment_id });
      var row = element("tr", {}, [cell(name), cell(deployment.model_group), cell(deployment.provider),
        cell(formatInteger(deployment.requests), "gh-number"), cell(formatPercent(deployment.error_rate), "gh-number"),
        cell(formatMs(deployment.latency_mean_ms), "gh-number"), cell(formatMs(deployment.latency_p50_ms), "gh-number"),
        cell(formatMs(deployment.latency_p95_ms), "gh-number"), cell(statusBadge(deployment))]);
      row.setAttribute("data-deployment-id", deployment.deployment_id);
      return row;
    }));
  }

  function drawCooldowns(report) {
    var list = document.getElementById("cooldowns");
    if (!report.cooldowns.length) {
      list.replaceChildren(element("li", { className: "gh-empty", text: "Every deployment is serving." }));
      return;
    }
    list.replaceChildren.apply(list, report.cooldowns.map(function (cooling) {
      var item = element("li", {}, [
        element("strong", { text: cooling.deployment_id }),
        element("span", { className: "gh-muted", text: " " + cooling.model_group + " · " + cooling.provider + " · " }),
        element("span", { className: "gh-badge gh-cooling", text: Math.ceil(cooling.seconds_left) + " s left" }),
      ]);
      item.setAttribute("data-deployment-id", cooling.deployment_id);
      return item;
    }));
  }

  function drawBatches(report) {
    var list = document.getElementById("batches-in-progress");
    if (!report.batches.length) {
      list.replaceChildren(element("li", { className: "gh-empty", text: "No batch is running." }));
      return;
    }
    list.replaceChildren.apply(list, report.batches.map(function (batch) {
      var bar = element("progress");
      bar.max = Math.max(batch.total, 1);
      if (batch.total) {
        bar.value = Math.min(batch.completed + batch.failed, batch.total);
      }
      var counts = batch.total ? formatInteger(batch.completed + batch.failed) + " / " + formatInteger(batch.total)
        + (batch.failed ? " (" + formatInteger(batch.failed) + " failed)" : "") : "counting lines…";
      bar.setAttribute("aria-label", "Progress of " + batch.id + ": " + counts);
      var item = element("li", {}, [
        element("a", { text: batch.id, href: batch.admin_url, className: "gh-batch-id", title: batch.id }),
        element("span", { text: batch.model || "–" }),
        element("span", { className: "gh-badge", text: batch.status.replace("_", " ") }),
        bar,
        element("span", { className: "gh-muted", text: counts }),
      ]);
      item.setAttribute("data-batch-id", batch.id);
      return item;
    }));
  }

  window.GatehouseDashboardPanels = {
    compactFormat: compactFormat,
    formatInteger: formatInteger,
    formatUsd: formatUsd,
    formatLabel: formatLabel,
    drawTotals: drawTotals,
    drawTopKeys: drawTopKeys,
    drawDeployments: drawDeployments,
    drawCooldowns: drawCooldowns,
    drawBatches: drawBatches,
    onFilter: function (handler) {
      filterHandler = handler;
    },
  };
})();
