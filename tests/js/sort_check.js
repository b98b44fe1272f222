// Click the sortable leaderboard's headings in a DOM (jsdom) and print the column orders.
// Usage: node sort_check.js report.html   (jsdom must be resolvable, e.g. via NODE_PATH)
const { JSDOM } = require("jsdom");
const fs = require("fs");
const errors = [];
const dom = new JSDOM(fs.readFileSync(process.argv[2], "utf8"), { runScripts: "dangerously" });
dom.window.addEventListener("error", (e) => errors.push(e.message));
const table = dom.window.document.querySelector("table.sortable");
const heads = Array.from(table.tHead.rows[0].cells);
const column = (name) => heads.findIndex((c) => c.textContent.startsWith(name));
const values = (i) => Array.from(table.tBodies[0].rows).map((r) => r.cells[i].textContent);
const out = { errors, "rank at start": heads[0].getAttribute("aria-sort") };
for (const name of ["reg", "val acc", "seeds"]) {
  const i = column(name);
  heads[i].click();
  out[`${name} first click`] = values(i);
  heads[i].click();
  out[`${name} second click`] = values(i);
}
const sorted = heads.filter((h) => h.getAttribute("aria-sort") !== "none");
out["sorted by"] = sorted.length === 1 ? [sorted[0].textContent.split(" ")[0], sorted[0].getAttribute("aria-sort")] : sorted.map((h) => h.textContent);
console.log(JSON.stringify(out));
