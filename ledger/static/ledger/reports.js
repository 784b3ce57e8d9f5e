/* GreenGate finance reports: draws the charts from the page's json_script data. No inline script needed. */
(function () {
  "use strict";

  function daily(canvasId, label, unit, color, values, low, high) {
    const canvas = document.getElementById(canvasId);
    if (!canvas) return;
    const datasets = [];
    if (low && high) {
      // The estimate's range as a band: the max line filled down to the min line.
      datasets.push({label: label + " max", data: high, borderWidth: 0, pointRadius: 0,
                     backgroundColor: color + "33", fill: "+1"});
      datasets.push({label: label + " min", data: low, borderWidth: 0, pointRadius: 0, fill: false});
    }
    datasets.push({label: label + " (" + unit + ")", data: values, borderColor: color,
                   backgroundColor: color, pointRadius: 2, tension: 0.2});
    new Chart(canvas, {
      type: "line",
      data: {labels: window.ggReport.days, datasets: datasets},
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: {mode: "index", intersect: false},
        plugins: {legend: {labels: {filter: (item) => !/ (min|max)$/.test(item.text)}}},
        scales: {y: {beginAtZero: true, title: {display: true, text: unit}}},
      },
    });
  }

  function breakdown(canvasId, data) {
    const canvas = document.getElementById(canvasId);
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [
          {label: "energy %", data: data.energy, backgroundColor: "#2e7d32"},
          {label: "carbon %", data: data.co2e, backgroundColor: "#6d4c41"},
          {label: "cost %", data: data.cost, backgroundColor: "#1565c0"},
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: "y",
        scales: {x: {beginAtZero: true, max: 100, title: {display: true, text: "share of the total (%)"}}},
      },
    });
  }

  function start() {
    const data = document.getElementById("gg-report-data");
    if (data && window.Chart) {
      window.ggReport = JSON.parse(data.textContent);
      daily("gg-chart-energy", "energy", "J", "#2e7d32",
            window.ggReport.energy, window.ggReport.energy_min, window.ggReport.energy_max);
      daily("gg-chart-co2e", "carbon", "gCO2e", "#6d4c41",
            window.ggReport.co2e, window.ggReport.co2e_min, window.ggReport.co2e_max);
      daily("gg-chart-cost", "cost", "USD", "#1565c0", window.ggReport.cost);
      breakdown("gg-chart-breakdown", window.ggReport.breakdown);
    }
    for (const button of document.querySelectorAll("[data-gg-print]")) {
      button.addEventListener("click", () => window.print());
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
