// Progressive enhancement only: every form also works as a plain POST without this file.
// - form[data-optimistic]: the change shows at once, the form goes out with fetch, and a refusal
//   rolls the change back with the server's message next to the fields it names.
// - select[data-autosubmit]: the workspace switcher follows the choice.
// - [data-live]: the region re-reads itself from the server every N seconds.
(() => {
  'use strict';

  const flash = (text, kind) => {
    const el = document.getElementById('flash');
    if (!el) return;
    el.textContent = text;
    el.className = kind || '';
  };

  const clearErrors = (form) => {
    form.querySelectorAll('.field-error').forEach((p) => { p.hidden = true; p.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((i) => i.removeAttribute('aria-invalid'));
    const top = form.querySelector('[data-form-error]');
    if (top) { top.hidden = true; top.textContent = ''; }
  };

  const showErrors = (form, message, fields) => {
    let first = null;
    Object.entries(fields || {}).forEach(([name, msg]) => {
      const input = form.elements[name];
      const p = form.querySelector(`#f-${name}-error`);
      if (input && p) {
        p.textContent = msg; p.hidden = false;
        input.setAttribute('aria-invalid', 'true');
        first = first || input;
      }
    });
    const top = form.querySelector('[data-form-error]');
    if (top) { top.textContent = message; top.hidden = false; } else { flash(message, 'error'); }
    (first || top || form).focus?.();
  };

  const text = (form, name) => (form.elements[name] ? form.elements[name].value : '');

  // Each mode applies its change and returns how to undo it and what to do on success.
  const modes = {
    remove(form) {
      const item = form.closest('[data-item]');
      if (item) item.hidden = true;
      return {
        undo() { if (item) item.hidden = false; },
        done() { if (item) item.remove(); flash('Deleted.'); },
      };
    },
    create(form) {
      const list = document.querySelector(form.dataset.list);
      const li = document.createElement('li');
      li.className = 'pending';
      li.setAttribute('data-item', '');
      const name = document.createElement('span');
      name.textContent = text(form, 'name');
      const state = document.createElement('span');
      state.className = 'hint';
      state.textContent = ' saving…';
      li.append(name, state);
      if (list) list.prepend(li);
      return {
        undo() { li.remove(); },
        done(body) {
          li.className = '';
          const a = document.createElement('a');
          a.href = body.url;
          a.textContent = name.textContent;
          name.replaceWith(a);
          state.textContent = ' created';
          form.reset();
          flash(`Created “${a.textContent}”.`);
        },
      };
    },
    edit(form) {
      const bound = [...document.querySelectorAll('[data-bind]')].map((el) => [el, el.textContent]);
      bound.forEach(([el]) => { el.textContent = text(form, el.dataset.bind); });
      return {
        undo() { bound.forEach(([el, old]) => { el.textContent = old; }); },
        done() { flash('Saved.'); },
      };
    },
  };

  document.addEventListener('submit', async (ev) => {
    const form = ev.target;
    const mode = modes[form.dataset.optimistic];
    if (!mode) return;
    ev.preventDefault();
    clearErrors(form);
    const change = mode(form);
    const button = form.querySelector('[type=submit]');
    if (button) button.disabled = true;
    let res = null;
    let body = {};
    try {
      res = await fetch(form.action, {
        method: 'POST',
        body: new URLSearchParams(new FormData(form)),
        credentials: 'same-origin',
        headers: { 'x-requested-with': 'fetch', accept: 'application/json', 'x-csrf-token': text(form, 'csrf_token') },
      });
      body = await res.json().catch(() => ({}));
    } catch (_) {
      res = null;
    }
    if (button) button.disabled = false;
    if (res && res.ok) {
      if (form.elements.version && body.version) form.elements.version.value = body.version;
      change.done(body);
      return;
    }
    if (res && res.status === 401) { window.location.assign('/login?expired=1'); return; }
    change.undo();
    if (form.elements.version && body.version) form.elements.version.value = body.version;
    showErrors(form, body.message || 'The server could not be reached; nothing was changed.', body.fields);
  });

  document.addEventListener('change', (ev) => {
    if (ev.target.matches('select[data-autosubmit]')) ev.target.form.requestSubmit();
  });

  document.querySelectorAll('[data-live]').forEach((region) => {
    const every = Math.max(2, Number(region.dataset.live) || 10) * 1000;
    const tick = async () => {
      try {
        const res = await fetch(window.location.href, { credentials: 'same-origin', headers: { accept: 'text/html' } });
        if (res.ok) {
          const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
          const fresh = doc.getElementById(region.id);
          if (fresh) region.replaceChildren(...fresh.childNodes);
        }
      } catch (_) { /* the next tick tries again */ }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  });
})();
