// The report page's charts (Apache ECharts, vendored): data from the page's JSON, no inline script.
(function () {
  "use strict";
  var el = document.getElementById("report-data");
  if (!el || !window.echarts) return;
  var d = JSON.parse(el.textContent), r = d.report, zh = d.lang === "zh";
  var T = function (a, b) { return zh ? a : b; };
  var yuan = function (fen) { return Math.round(fen) / 100; };
  var label = function (s) { return d.labels[s] || s || "-"; };
  var col = function (name, rows, columns) { var i = (columns || r.columns).indexOf(name); return (rows || r.rows).map(function (x) { return x[i]; }); };
  var base = { animation: false, tooltip: { trigger: "axis" }, grid: { left: 60, right: 20, top: 40, bottom: 40 },
               textStyle: { fontFamily: "Noto Sans CJK SC, WenQuanYi Micro Hei, sans-serif" } };
  function bar(title, cats, series, stack) {
    return Object.assign({}, base, { title: { text: title, textStyle: { fontSize: 14 } }, legend: { top: 0, right: 10 },
      // few categories (kiosks, services, hours): every label, cut to its bar's width; days: as many as fit
      xAxis: { type: "category", data: cats, axisLabel: cats.length <= 24 ?
               { interval: 0, width: Math.max(24, 560 / cats.length), overflow: "truncate" } : {} },
      yAxis: { type: "value" },
      series: series.map(function (s) { return { name: s.name, type: s.type || "bar", stack: stack ? "all" : undefined, data: s.data }; }) });  // straight lines: a smoothed one dipped below 0 between days
  }
  function pie(title, names, values) {
    return Object.assign({}, base, { title: { text: title, textStyle: { fontSize: 14 } }, tooltip: { trigger: "item" },
      legend: { orient: "vertical", left: "left", top: 30 },
      series: [{ type: "pie", radius: ["35%", "65%"], center: ["60%", "55%"],
                 data: names.map(function (n, i) { return { name: n, value: values[i] }; }) }] });
  }
  var a, b, ch = r.charts || {};
  switch (d.family) {
    case "daily":
      a = bar(T("每日金额（元）按业务", "Amount per day (¥) by service"), ch.days,
              Object.keys(ch.series).map(function (s) { return { name: label(s), data: ch.series[s].map(yuan) }; }), true);
      b = bar(T("每日合计（元）", "Total per day (¥)"), ch.days, [{ name: T("合计", "Total"), type: "line",
              data: ch.days.map(function (_, i) { return yuan(Object.keys(ch.series).reduce(function (t, s) { return t + ch.series[s][i]; }, 0)); }) }]);
      break;
    case "profile":
      a = bar(T("时段笔数", "Count by hour of day"), col("hour"), [{ name: T("笔数", "Count"), data: col("count") }]);
      b = bar(T("每月各日金额（元）", "Amount by day of month (¥)"), col("day_of_month", r.rows2, r.columns2),
              [{ name: T("金额", "Amount"), type: "line", data: col("amount_fen", r.rows2, r.columns2).map(yuan) }]);
      break;
    case "monthly":
      a = bar(T("本月与上月金额（元）", "This month against last (¥)"), col("kiosk"),
              [{ name: r.months[0], data: col("amount_fen").map(yuan) }, { name: r.months[1], data: col("last_amount_fen").map(yuan) }]);
      b = pie(T("本月各终端占比", "This month's share by kiosk"), col("kiosk"), col("amount_fen").map(yuan));
      break;
    case "prepaid":
      a = pie(T("预存与欠费缴费占比", "Prepaid against arrears"), col("service").map(label), col("amount_fen").map(yuan));
      b = bar(T("每日金额（元）", "Amount per day (¥)"), ch.days,
              col("service").map(function (s) { return { name: label(s), type: "line", data: ch.series[s].map(yuan) }; }));
      break;  // the table's order, so each service has the pie's colour (the JSON's keys come sorted)
    case "services":
      a = pie(T("各类业务金额占比", "Amount by service"), col("service").map(label), col("amount_fen").map(yuan));
      b = bar(T("各类业务笔数", "Count by service"), col("service").map(label), [{ name: T("笔数", "Count"), data: col("count") }]);
      break;
    case "brackets":
      a = bar(T("缴费区间笔数（元）", "Payments by bracket (¥)"), col("bracket_yuan"), [{ name: T("笔数", "Count"), data: col("count") }]);
      b = pie(T("各区间金额占比", "Amount by bracket"), col("bracket_yuan"), col("amount_fen").map(yuan));
      break;
  }
  [["chart-a", a], ["chart-b", b]].forEach(function (p) {
    var box = document.getElementById(p[0]);
    if (!box || !p[1]) return;
    var chart = echarts.init(box, null, { renderer: "canvas" });
    chart.on("finished", function () { box.setAttribute("data-drawn", String(chart.getOption().series.length)); });
    chart.setOption(p[1]);
    window.addEventListener("resize", function () { chart.resize(); });
  });
})();
