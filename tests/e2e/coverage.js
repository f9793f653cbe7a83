// Line coverage of the shipped script (app.js) from Chromium's V8 block coverage (taken by the
// page fixture in specs/helpers.js), written as Cobertura to target/ci/coverage-frontend.xml
// for the score. The script is served byte for byte from crates/web/assets/app.js.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '../..');
const dir = path.join(root, 'target/e2e/coverage');
const source = path.join(root, 'crates/web/assets/app.js');

/** Keeps one test's V8 entries for app.js. */
function save(entries, name) {
  const mine = entries.filter((e) => e.url.includes('/static/app.js'));
  if (mine.length === 0) return;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${name.replace(/[^a-z0-9]+/gi, '-')}.json`), JSON.stringify(mine));
}

/** Per-character execution counts of one V8 entry: later (inner) ranges override outer ones. */
function counts(entry, length) {
  const c = new Array(length).fill(0);
  for (const fn of entry.functions) {
    for (const r of fn.ranges) c.fill(r.count, r.startOffset, r.endOffset);
  }
  return c;
}

/** Merges every saved run into Cobertura: a code line is covered when any run executed it. */
function report() {
  const text = fs.readFileSync(source, 'utf8');
  const lines = text.split('\n');
  const hits = new Array(lines.length).fill(0);
  const files = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  for (const f of files) {
    for (const entry of JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))) {
      const c = counts(entry, text.length);
      let offset = 0;
      lines.forEach((line, i) => {
        const first = line.search(/\S/);
        if (first >= 0 && c[offset + first] > 0) hits[i] += 1;
        offset += line.length + 1;
      });
    }
  }
  const code = lines
    .map((l, i) => ({ i, l: l.trim() }))
    .filter(({ l }) => l && !l.startsWith('//') && !/^[\])};,]+$/.test(l));
  const covered = code.filter(({ i }) => hits[i] > 0).length;
  const rate = code.length ? covered / code.length : 0;
  const xmlLines = code.map(({ i }) => `<line number="${i + 1}" hits="${hits[i]}"/>`).join('');
  const xml = `<?xml version="1.0"?>
<coverage lines-covered="${covered}" lines-valid="${code.length}" line-rate="${rate.toFixed(4)}" branch-rate="0" version="1" timestamp="${Date.now()}">
<sources><source>crates/web/assets</source></sources>
<packages><package name="web" line-rate="${rate.toFixed(4)}" branch-rate="0" complexity="0"><classes>
<class name="app.js" filename="app.js" line-rate="${rate.toFixed(4)}" branch-rate="0" complexity="0"><methods/><lines>${xmlLines}</lines></class>
</classes></package></packages>
</coverage>
`;
  fs.mkdirSync(path.join(root, 'target/ci'), { recursive: true });
  fs.writeFileSync(path.join(root, 'target/ci/coverage-frontend.xml'), xml);
  return { covered, valid: code.length, rate };
}

module.exports = { save, report, dir };
