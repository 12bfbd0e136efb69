// Labs: pick a built-in lab (GET /labs), run it (POST /labs/{name}/runs),
// open the session it ran in, and show each expectation as pass or fail in
// the Lab tab. A run creates one session per variant; the result is kept per
// session (and in sessionStorage, so a reload keeps it) so that switching
// between a lab's variant sessions shows each one's checks.

import { api } from './api.js';
import { el, fmtTime, setChildren } from './format.js';

const STORE = 'tcplab.lab.';
const results = new Map();   // session id -> { run, variant } (run: the POST reply)
let catalogue = [];          // GET /labs

/** The lab run a session came from, if this browser ran it. */
function resultFor(sid) {
  if (sid === null || sid === undefined) return null;
  if (results.has(sid)) return results.get(sid);
  try {
    const saved = sessionStorage.getItem(STORE + sid);
    if (saved) {
      const r = JSON.parse(saved);
      results.set(sid, r);
      return r;
    }
  } catch { /* storage unavailable: memory only */ }
  return null;
}

function remember(run) {
  for (const v of run.variants) {
    const r = { run, variant: v.variant };
    results.set(v.session_id, r);
    try { sessionStorage.setItem(STORE + v.session_id, JSON.stringify(r)); } catch { /* memory only */ }
  }
}

function verdict(passed) {
  // A word as well as a colour: readable for colour-blind viewers and in print.
  return el('span', { class: `verdict ${passed ? 'pass' : 'fail'}` }, passed ? '✓ PASS' : '✗ FAIL');
}

function checkItem(c) {
  return el('li', {
    class: `lab-check ${c.passed ? 'pass' : 'fail'}`, 'data-testid': 'lab-check', 'data-passed': String(c.passed),
    'data-kind': c.kind, 'data-line': c.line,
  },
  el('span', { class: 'lab-check-mark', 'aria-label': c.passed ? 'passed' : 'failed' }, c.passed ? '✓' : '✗'),
  el('div', { class: 'lab-check-body' },
    el('div', { class: 'lab-check-what' }, el('b', {}, c.what), el('span', { class: 'muted' }, ` · ${c.kind} · line ${c.line} · t=${fmtTime(Math.round(c.t_ms * 1e6))}`)),
    el('div', { class: 'lab-check-expected' }, el('span', { class: 'muted' }, 'expected '), c.expected),
    c.passed ? null : el('div', { class: 'lab-check-got', 'data-testid': 'lab-check-got' }, el('span', { class: 'muted' }, 'got '), c.got)));
}

/** The Lab tab for session `sid`: the run's variants and this session's checks. */
export function renderLab(box, sid, openSession) {
  const r = resultFor(sid);
  if (!r) {
    setChildren(box, el('p', { class: 'muted' }, 'Run a lab from the Labs panel on the left: it runs in a new session, and each of its expectations shows here as pass or fail.'));
    return;
  }
  const { run } = r;
  const mine = run.variants.find((v) => v.session_id === sid) ?? run.variants[0];
  const info = catalogue.find((l) => l.name === run.lab);
  const variants = run.variants.length > 1
    ? el('ul', { class: 'lab-variants', 'data-testid': 'lab-variants' }, run.variants.map((v) => el('li', {},
      el('button', {
        type: 'button', class: `lab-variant${v.session_id === sid ? ' current' : ''}`, 'data-testid': 'lab-variant',
        'data-variant': v.variant, 'data-passed': String(v.passed), onclick: () => openSession(v.session_id),
      }, verdict(v.passed), ` ${v.variant} `, el('span', { class: 'muted' }, `#${v.session_id}`)))))
    : null;
  const passed = mine.checks.filter((c) => c.passed).length;
  setChildren(box,
    el('div', { class: 'lab-head', 'data-testid': 'lab-result', 'data-lab': run.lab, 'data-variant': mine.variant, 'data-passed': String(mine.passed) },
      el('h3', {}, run.title),
      el('div', { class: 'lab-summary', 'data-testid': 'lab-summary' },
        verdict(mine.passed), ` ${passed}/${mine.checks.length} expectations`,
        run.variants.length > 1 ? ` · variant ${mine.variant}` : '')),
    variants,
    mine.description ? el('p', { class: 'note' }, mine.description) : null,
    mine.error ? el('p', { class: 'lab-error', 'data-testid': 'lab-error' }, `✗ step error: ${mine.error}`) : null,
    el('ol', { class: 'lab-checks', 'data-testid': 'lab-checks' }, mine.checks.map(checkItem)),
    info ? el('details', { class: 'lab-more' }, el('summary', {}, 'What this lab shows'), el('p', { class: 'lab-explanation' }, info.explanation)) : null,
    el('details', { class: 'lab-more' }, el('summary', {}, 'ASCII ladder (as tcplab lab run prints it)'),
      el('pre', { class: 'lab-ascii', 'data-testid': 'lab-ascii' }, mine.ladder)));
}

function fillVariants(form) {
  const lab = catalogue.find((l) => l.name === form.elements.namedItem('lab').value);
  const select = form.elements.namedItem('variant');
  const options = [el('option', { value: '' }, lab && lab.variants.length > 1 ? `all ${lab.variants.length} variants` : 'default')];
  if (lab && lab.variants.length > 1) for (const v of lab.variants) options.push(el('option', { value: v.name }, v.name));
  setChildren(select, options);
  select.disabled = !lab || lab.variants.length < 2;
  const title = document.getElementById('lab-title');
  title.textContent = lab ? lab.title : '';
  title.title = lab ? lab.explanation : '';
}

/**
 * Wires the Labs panel. `app`: toast(message, error), openSession(id),
 * showTab(name), refresh() after a run (the sessions list).
 */
export async function initLabs(app) {
  const form = document.getElementById('lab-form');
  const button = form.querySelector('button[type=submit]');
  form.elements.namedItem('lab').addEventListener('change', () => fillVariants(form));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = form.elements.namedItem('lab').value;
    if (!name) return;
    const variant = form.elements.namedItem('variant').value;
    button.disabled = true;
    try {
      const run = await api('POST', `/labs/${encodeURIComponent(name)}/runs`, variant ? { variant } : {});
      remember(run);
      const failed = run.variants.filter((v) => !v.passed).map((v) => v.variant);
      app.toast(run.passed
        ? `lab ${run.lab}: every expectation passed (${run.variants.length > 1 ? `${run.variants.length} sessions` : `session #${run.session_id}`})`
        : `lab ${run.lab}: FAILED${failed.length && run.variants.length > 1 ? ` in ${failed.join(', ')}` : ''}`, !run.passed);
      app.openSession(run.session_id);
      app.showTab('lab');
      app.refresh();
    } catch (err) {
      app.toast(err.message, true);
    } finally {
      button.disabled = false;
    }
  });
  try {
    catalogue = (await api('GET', '/labs')).labs;
  } catch (err) {
    app.toast(`labs: ${err.message}`, true);
    return;
  }
  setChildren(form.elements.namedItem('lab'), catalogue.map((l) => el('option', { value: l.name, title: l.title }, l.name)));
  fillVariants(form);
  button.disabled = catalogue.length === 0;
  app.labsLoaded?.();
}
