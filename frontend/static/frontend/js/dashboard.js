/*
 * Draws the dashboard's charts with the vendored Chart.js (frontend/vendor/chart.umd.min.js) from the
 * JSON data island the server renders (<script id="dashboard-data" type="application/json">), and draws
 * them again after htmx swaps in a newer stored report or restores a page from history.
 *
 * Each <canvas data-chart="..."> names its chart below; it carries its own text alternative (role="img"
 * and an aria-label summary) and sits beside a table with every number, so nothing depends on this file.
 * Undefined statistics arrive as null and are drawn as gaps, never as zero.
 */
(function () {
  "use strict";

  var firstDraw = true;

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  // "#1d4ed8" -> "rgba(29, 78, 216, 0.15)": the interval band under a line.
  function translucent(color, alpha) {
    var hex = /^#([0-9a-f]{6})$/i.exec(color);
    if (!hex) {
      return color;
    }
    var n = parseInt(hex[1], 16);
    return "rgba(" + (n >> 16) + ", " + ((n >> 8) & 255) + ", " + (n & 255) + ", " + alpha + ")";
  }

  function fmt(value) {
    return value === null || value === undefined ? "n/a" : Number(value).toFixed(3);
  }

  function lowestOf(arrays) {
    var lowest = 0;
    arrays.forEach(function (values) {
      (values || []).forEach(function (v) {
        if (v !== null && v !== undefined && v < lowest) {
          lowest = v;
        }
      });
    });
    return Math.floor(lowest * 10) / 10;
  }

  // The alert threshold as a dashed line across the value axis.
  var thresholdLine = {
    id: "thresholdLine",
    afterDatasetsDraw: function (chart, args, options) {
      if (options.value === null || options.value === undefined) {
        return;
      }
      var horizontal = chart.options.indexAxis === "y";
      var scale = horizontal ? chart.scales.x : chart.scales.y;
      var area = chart.chartArea;
      var at = scale.getPixelForValue(options.value);
      var ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = options.color;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      if (horizontal) {
        ctx.moveTo(at, area.top);
        ctx.lineTo(at, area.bottom);
      } else {
        ctx.moveTo(area.left, at);
        ctx.lineTo(area.right, at);
      }
      ctx.stroke();
      ctx.restore();
    },
  };

  // Confidence-interval whiskers on a horizontal bar chart: dataset.ciLow[i] .. dataset.ciHigh[i].
  var intervalWhiskers = {
    id: "intervalWhiskers",
    afterDatasetsDraw: function (chart, args, options) {
      var ctx = chart.ctx;
      var x = chart.scales.x;
      chart.data.datasets.forEach(function (dataset, index) {
        if (!dataset.ciLow) {
          return;
        }
        chart.getDatasetMeta(index).data.forEach(function (bar, i) {
          var low = dataset.ciLow[i];
          var high = dataset.ciHigh[i];
          if (low === null || high === null || low === undefined || high === undefined) {
            return;
          }
          var y = bar.y;
          var cap = Math.max(3, (bar.height || 10) * 0.3);
          var x1 = x.getPixelForValue(low);
          var x2 = x.getPixelForValue(high);
          ctx.save();
          ctx.strokeStyle = options.color;
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.moveTo(x1, y);
          ctx.lineTo(x2, y);
          ctx.moveTo(x1, y - cap);
          ctx.lineTo(x1, y + cap);
          ctx.moveTo(x2, y - cap);
          ctx.lineTo(x2, y + cap);
          ctx.stroke();
          ctx.restore();
        });
      });
    },
  };

  function baseOptions() {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: firstDraw && !window.matchMedia("(prefers-reduced-motion: reduce)").matches ? { duration: 300 } : false,
      plugins: {
        legend: { labels: { boxWidth: 12, boxHeight: 12 } },
        thresholdLine: { value: null, color: css("--chart-alert", "#b42318") },
        intervalWhiskers: { color: css("--text", "#1b1f24") },
      },
      scales: {},
    };
  }

  function alphaChart(data) {
    var alpha = data.alpha;
    var threshold = data.threshold;
    var stage1 = css("--chart-1", "#1d4ed8");
    var stage2 = css("--chart-3", "#0f766e");
    var alert = css("--chart-alert", "#b42318");
    var colors = alpha.values.map(function (v, i) {
      var enough = !alpha.alerting || alpha.alerting[i];
      if (v !== null && threshold !== null && v < threshold && enough) {
        return alert;
      }
      return alpha.groups[i].indexOf("Stage 2") === 0 ? stage2 : stage1;
    });
    // An undefined alpha has no bar: its tick says so, with the reason ("no variation", ...).
    var labels = alpha.labels.map(function (label, i) {
      return alpha.values[i] === null ? label + " (n/a: " + (alpha.reasons[i] || "not enough data") + ")" : label;
    });
    var options = baseOptions();
    options.indexAxis = "y";
    options.plugins.legend = { display: false };
    options.plugins.thresholdLine.value = threshold;
    options.plugins.tooltip = {
      callbacks: {
        label: function (item) {
          var i = item.dataIndex;
          var text = "alpha " + fmt(alpha.values[i]);
          if (alpha.low[i] !== null && alpha.high[i] !== null) {
            text += " (95% interval " + fmt(alpha.low[i]) + " to " + fmt(alpha.high[i]) + ")";
          }
          return text;
        },
      },
    };
    options.scales = {
      x: {
        min: lowestOf([alpha.values, alpha.low]),
        max: 1,
        title: { display: true, text: "Krippendorff's alpha" },
        grid: { color: css("--chart-grid", "rgba(0,0,0,0.1)") },
      },
      y: { grid: { display: false }, ticks: { autoSkip: false } },
    };
    return {
      type: "bar",
      data: {
        labels: labels,
        datasets: [
          {
            label: "alpha",
            data: alpha.values,
            ciLow: alpha.low,
            ciHigh: alpha.high,
            backgroundColor: colors.map(function (c) {
              return translucent(c, 0.75);
            }),
            borderColor: colors,
            borderWidth: 1,
            barPercentage: 0.7,
          },
        ],
      },
      options: options,
      plugins: [thresholdLine, intervalWhiskers],
    };
  }

  function labelsPerHourChart(data) {
    var hours = data.labels_per_hour;
    var options = baseOptions();
    options.plugins.legend.position = "bottom";
    options.scales = {
      x: { stacked: true, grid: { display: false }, ticks: { maxTicksLimit: 8, maxRotation: 0 } },
      y: { stacked: true, beginAtZero: true, ticks: { precision: 0, maxTicksLimit: 4 }, grid: { color: css("--chart-grid", "rgba(0,0,0,0.1)") } },
    };
    return {
      type: "bar",
      data: {
        labels: hours.labels,
        datasets: [
          { label: "Stage 1", data: hours.stage1, backgroundColor: css("--chart-1", "#1d4ed8") },
          { label: "Stage 2", data: hours.stage2, backgroundColor: css("--chart-2", "#c2410c") },
        ],
      },
      options: options,
    };
  }

  function overTimeChart(series, threshold) {
    var c1 = css("--chart-1", "#1d4ed8");
    var options = baseOptions();
    options.spanGaps = false;
    options.plugins.thresholdLine.value = threshold;
    options.plugins.legend.position = "bottom";
    options.plugins.legend.labels.filter = function (item) {
      return item.text !== "_low";
    };
    options.plugins.tooltip = {
      filter: function (item) {
        return item.dataset.label !== "_low" && item.dataset.label !== "Is safe · 95% interval";
      },
      callbacks: {
        label: function (item) {
          return item.dataset.label + ": " + fmt(item.raw);
        },
      },
    };
    options.interaction = { mode: "index", intersect: false };
    options.scales = {
      // offset: the first and last points sit inside the plot, not on its edge.
      x: { offset: true, grid: { display: false } },
      y: {
        min: lowestOf([series.is_safe, series.is_safe_low, series.better, series.safer]),
        max: 1,
        title: { display: true, text: "alpha" },
        grid: { color: css("--chart-grid", "rgba(0,0,0,0.1)") },
      },
    };
    var point = { pointRadius: 3, pointHoverRadius: 5, borderWidth: 2, tension: 0.2 };
    return {
      type: "line",
      data: {
        labels: series.labels,
        datasets: [
          Object.assign({}, point, { label: "Is safe", data: series.is_safe, borderColor: c1, backgroundColor: c1 }),
          Object.assign({}, point, { label: "Better", data: series.better, borderColor: css("--chart-2", "#c2410c"), backgroundColor: css("--chart-2", "#c2410c") }),
          Object.assign({}, point, { label: "Safer", data: series.safer, borderColor: css("--chart-3", "#0f766e"), backgroundColor: css("--chart-3", "#0f766e") }),
          // The interval band: the high line filled down to the low line, both invisible.
          { label: "Is safe · 95% interval", data: series.is_safe_high, borderWidth: 0, pointRadius: 0, fill: "+1", backgroundColor: translucent(c1, 0.14), borderColor: "transparent" },
          { label: "_low", data: series.is_safe_low, borderWidth: 0, pointRadius: 0, fill: false, borderColor: "transparent" },
        ],
      },
      options: options,
      plugins: [thresholdLine],
    };
  }

  var builders = {
    alpha: function (data) {
      return alphaChart(data);
    },
    labels_per_hour: function (data) {
      return labelsPerHourChart(data);
    },
    by_day: function (data) {
      return overTimeChart(data.by_day, data.threshold);
    },
    by_version: function (data) {
      return overTimeChart(data.by_version, data.threshold);
    },
  };

  function readData() {
    var island = document.getElementById("dashboard-data");
    if (!island) {
      return null;
    }
    try {
      return JSON.parse(island.textContent);
    } catch (error) {
      return null;
    }
  }

  // Draw every chart canvas that has none yet (a fresh page, a swapped-in report, a restored page).
  function drawCharts() {
    if (!window.Chart) {
      return;
    }
    var canvases = document.querySelectorAll("canvas[data-chart]");
    if (!canvases.length) {
      return;
    }
    var data = readData();
    if (!data) {
      return;
    }
    var family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.font.family = family;
    window.Chart.defaults.color = css("--muted", "#525a66");
    canvases.forEach(function (canvas) {
      var build = builders[canvas.getAttribute("data-chart")];
      if (!build || window.Chart.getChart(canvas)) {
        return;
      }
      new window.Chart(canvas, build(data));
    });
    firstDraw = false;
  }

  // A swap replaces the canvases: free the charts on the old ones first (they hold resize observers).
  function destroyChartsIn(root) {
    if (!window.Chart || !root || !root.querySelectorAll) {
      return;
    }
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var chart = window.Chart.getChart(canvas);
      if (chart) {
        chart.destroy();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", drawCharts);
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.shouldSwap !== false) {
      destroyChartsIn(event.detail.target);
    }
  });
  document.addEventListener("htmx:afterSettle", drawCharts);
  document.addEventListener("htmx:historyRestore", drawCharts);
})();
