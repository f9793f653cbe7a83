// Renders /openapi.json as a list of operations grouped by tag. Plain DOM, no dependencies.
(async function () {
  const root = document.getElementById('spec');
  const spec = await (await fetch('/openapi.json')).json();
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    kids.forEach(k => e.append(k));
    return e;
  };
  const groups = {};
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tag = (op.tags && op.tags[0]) || 'other';
      (groups[tag] = groups[tag] || []).push({ path, method: method.toUpperCase(), op });
    }
  }
  for (const [tag, ops] of Object.entries(groups)) {
    root.append(el('h2', {}, tag));
    for (const { path, method, op } of ops) {
      const body = el('div', {});
      if (op.description) body.append(el('p', {}, op.description));
      body.append(el('pre', {}, JSON.stringify({ parameters: op.parameters, requestBody: op.requestBody, responses: op.responses }, null, 2)));
      root.append(el('details', {}, el('summary', {}, el('span', { class: 'm ' + method }, method), ' ' + path), body));
    }
  }
})();
