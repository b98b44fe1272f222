// Click a heading of a sortable table to sort its rows by that column (numbers first). The
// sorted column carries aria-sort (ascending/descending) and an arrow; a table arrives sorted
// by its first column (the rank), so that one starts as ascending and a click reverses it.
// A first click sorts numbers from the highest, text from A.
document.querySelectorAll("table.sortable").forEach(table => {
  const heads = Array.from(table.tHead.rows[0].cells);
  heads.forEach((th, i) => th.setAttribute("aria-sort", i === 0 ? "ascending" : "none"));
  heads.forEach(th => {
    const column = th.cellIndex;  // within its own table: a report may hold several rankings
    th.title = "click to sort";
    th.tabIndex = 0;
    const sort = () => {
      const body = table.tBodies[0];
      const key = row => {
        const text = row.cells[column].textContent.trim();
        const number = parseFloat(text.replace(/,/g, ""));
        return Number.isNaN(number) ? text : number;
      };
      const numeric = Array.from(body.rows).some(row => typeof key(row) === "number");
      const now = th.getAttribute("aria-sort");
      const down = now === "none" ? numeric : now === "ascending";
      heads.forEach(h => h.setAttribute("aria-sort", "none"));
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      const rows = Array.from(body.rows).sort((a, b) => {
        const x = key(a), y = key(b);
        if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
        const order = x < y ? -1 : x > y ? 1 : 0;
        return down ? -order : order;
      });
      rows.forEach(row => body.appendChild(row));
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", e => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });
});
