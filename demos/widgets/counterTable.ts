// CounterTable: sys.stats() as a table that can refresh while a demo runs. Zero counters are
// hidden until they move, and a counter that changed since the last refresh is highlighted.

export class CounterTable {
  private last: Record<string, number> = {};

  constructor(private readonly table: HTMLTableElement) {}

  /** Show one column of counters (or several, for before/after comparisons). */
  show(columns: [string, Record<string, number>][]): void {
    const names = [...new Set(columns.flatMap(([, c]) => Object.keys(c).filter((k) => c[k] !== 0)))].sort();
    const head = document.createElement('tr');
    head.append(cell('th', 'counter'), ...columns.map(([label]) => cell('th', label, 'num')));
    const latest = columns[columns.length - 1]?.[1] ?? {};
    const rows = names.map((name) => {
      const tr = document.createElement('tr');
      if ((latest[name] ?? 0) !== (this.last[name] ?? 0)) tr.className = 'changed';
      tr.append(cell('td', name), ...columns.map(([, c]) => cell('td', (c[name] ?? 0).toLocaleString('en-US'), 'num')));
      return tr;
    });
    this.last = { ...latest };
    let thead = this.table.tHead;
    if (!thead) thead = this.table.createTHead();
    thead.replaceChildren(head);
    const tbody = this.table.tBodies[0] ?? this.table.createTBody();
    tbody.replaceChildren(...rows);
  }
}

function cell(tag: 'td' | 'th', text: string, className?: string): HTMLElement {
  const e = document.createElement(tag);
  e.textContent = text;
  if (className) e.className = className;
  return e;
}
