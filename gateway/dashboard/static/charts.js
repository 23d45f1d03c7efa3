// Small SVG charts for the operations dashboard: no library, no build step.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function svgNode(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clip(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  // A horizontal bar chart in `container`: one bar per item ({label, value, text}), longest
  // first as given. `value` is the number drawn (kept in data-value), `text` how it reads.
  function barChart(container, items, options) {
    const opts = Object.assign({ title: "", empty: "Nothing to show." }, options || {});
    container.replaceChildren();
    if (!items.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = opts.empty;
      container.append(p);
      return;
    }
    const width = 720;
    const row = 26;
    const labelWidth = 250;
    const valueWidth = 110;
    const barMax = width - labelWidth - valueWidth;
    const height = items.length * row + 6;
    const max = Math.max(...items.map((i) => i.value), 0) || 1;
    const svg = svgNode("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width: "100%",
      role: "img",
      "aria-label": opts.title,
      class: "bars",
    });
    svg.append(svgNode("title", {}, opts.title));
    items.forEach((item, index) => {
      const y = index * row + 3;
      const length = item.value > 0 ? Math.max((item.value / max) * barMax, 2) : 0;
      const group = svgNode("g", {
        class: "bar",
        "data-label": item.label,
        "data-value": item.value,
      });
      group.append(svgNode("title", {}, `${item.label}: ${item.text}`));
      group.append(
        svgNode("text", { x: labelWidth - 8, y: y + row / 2, class: "label", "text-anchor": "end",
          "dominant-baseline": "middle" }, clip(item.label, 34)),
      );
      group.append(svgNode("rect", { x: labelWidth, y: y + 2, width: length, height: row - 8, rx: 3,
        class: item.kind ? `fill-${item.kind}` : "fill" }));
      group.append(
        svgNode("text", { x: labelWidth + length + 6, y: y + row / 2, class: "value",
          "dominant-baseline": "middle" }, item.text),
      );
      svg.append(group);
    });
    container.append(svg);
  }

  window.SyncmeshCharts = { barChart };
})();
