/*
 * The training job page's loss and accuracy charts, drawn with the vendored Chart.js
 * (frontend/vendor/chart.umd.min.js) from the JSON data island the server renders inside the polled
 * status section (<script id="training-chart-data" type="application/json">). When htmx swaps in a
 * fresh status section, the charts take the new points in place (no flicker, no re-animation).
 *
 * The canvases carry a text alternative and sit above a table with every number, so nothing depends
 * on this file; without Chart.js it does nothing.
 */
(function () {
  "use strict";

  var charts = {};
  // A policy job's charts (PPO-Lag and its baselines): one series each, the cost with its threshold.
  var POLICY = {
    reward: { label: "Reward (reward model)", axis: "reward" },
    cost: { label: "Cost (cost model)", axis: "cost", color: "danger" },
    unsafe_share: { label: "Unsafe share (cost > 0)", axis: "share", color: "danger", unit: true },
    lambda: { label: "Lagrange multiplier", axis: "lambda" },
    kl: { label: "KL to the initial policy", axis: "KL (nats)" },
  };

  function yScale(name) {
    if (name === "loss") {
      return { title: { display: true, text: "loss" } };
    }
    if (POLICY[name]) {
      var scale = { title: { display: true, text: POLICY[name].axis } };
      if (POLICY[name].unit) {
        scale.min = 0;
        scale.max = 1;
      }
      return scale;
    }
    return { min: 0, max: 1, title: { display: true, text: "accuracy" } };
  }

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function readData() {
    var island = document.getElementById("training-chart-data");
    if (!island) {
      return null;
    }
    try {
      return JSON.parse(island.textContent);
    } catch (e) {
      return null;
    }
  }

  function dataset(label, points, color, dashed) {
    return {
      label: label,
      data: points || [],
      borderColor: color,
      backgroundColor: color,
      borderWidth: 2,
      borderDash: dashed ? [6, 4] : [],
      pointRadius: dashed ? 3 : 0,
      pointStyle: "line",
      showLine: true,
      tension: 0.15,
      spanGaps: true,
    };
  }

  function datasetsFor(name, data) {
    var accent = css("--accent", "#1d4ed8");
    var ok = css("--ok", "#0f7a3d");
    var warn = css("--warn", "#8a5a00");
    var danger = css("--danger", "#b42318");
    if (name === "loss") {
      return [dataset("Training loss", data.loss, accent), dataset("Test loss", data.eval_loss, danger, true)];
    }
    if (POLICY[name]) {
      var series = [dataset(POLICY[name].label, data[name], POLICY[name].color === "danger" ? danger : accent)];
      var points = data[name] || [];
      if (name === "cost" && data.threshold !== null && data.threshold !== undefined && points.length) {
        // The constraint PPO-Lag keeps the cost under, drawn across the steps so far.
        var first = points[0].x, last = points[points.length - 1].x;
        series.push(dataset("Threshold", [{ x: first, y: data.threshold }, { x: last, y: data.threshold }], warn, true));
      }
      return series;
    }
    var sets = [
      dataset("Training accuracy", data.accuracy, accent),
      dataset("Test accuracy", data.eval_accuracy, ok, true),
    ];
    if ((data.sign_accuracy || []).length || (data.eval_sign_accuracy || []).length) {
      sets.push(dataset("Training sign accuracy", data.sign_accuracy, warn));
      sets.push(dataset("Test sign accuracy", data.eval_sign_accuracy, danger, true));
    }
    return sets;
  }

  function draw() {
    if (typeof window.Chart === "undefined") {
      return;
    }
    var data = readData();
    if (!data) {
      return;
    }
    document.querySelectorAll("canvas[data-training-chart]").forEach(function (canvas) {
      var name = canvas.getAttribute("data-training-chart");
      var sets = datasetsFor(name, data);
      var chart = charts[name];
      if (chart && chart.canvas === canvas) {
        chart.data.datasets = sets;
        chart.update("none");
        return;
      }
      charts[name] = new window.Chart(canvas, {
        type: "scatter",
        data: { datasets: sets },
        options: {
          animation: false,
          maintainAspectRatio: false,
          parsing: false,
          scales: {
            x: { type: "linear", title: { display: true, text: "step" } },
            y: yScale(name),
          },
          plugins: { legend: { position: "bottom", labels: { usePointStyle: true } } },
        },
      });
    });
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "job-status") {
      draw();
    }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      draw();
    }
  });
})();
