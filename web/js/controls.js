// The controls: every form of the dashboard turns into one REST call. Forms
// are in index.html (stable data-testid attributes); this module reads them.

import { api } from './api.js';

/** A form field as a number (undefined when blank); throws naming the field when not a number. */
function num(form, name) {
  const input = form.elements.namedItem(name);
  if (!input) return undefined;
  const text = String(input.value).trim();
  if (text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${name}: "${text}" is not a number`);
  return value;
}

/** A form field as trimmed text (undefined when blank). */
function str(form, name) {
  const input = form.elements.namedItem(name);
  if (!input) return undefined;
  const text = String(input.value).trim();
  return text === '' ? undefined : text;
}

/** "SYN, ACK" or "syn+ack" -> ["SYN","ACK"]. */
function flags(text) {
  if (!text) return undefined;
  return text.split(/[\s,+|]+/).filter(Boolean).map((f) => f.toUpperCase());
}

/** Drops undefined fields so the server applies its defaults. */
function clean(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

/** Builds the request for each form action: [method, path, body, message]. */
const ACTIONS = {
  'add-host': (f, sid) => ['POST', `/sessions/${sid}/hosts`, clean({ name: str(f, 'name'), ip: str(f, 'ip'), kind: str(f, 'kind') }),
    (r) => `host ${r.name} (${r.ip}) added`],
  'set-link': (f, sid) => ['PUT', `/sessions/${sid}/links`, clean({
    a: str(f, 'a'), b: str(f, 'b'), latency_ms: num(f, 'latency_ms'), jitter_ms: num(f, 'jitter_ms'), loss: num(f, 'loss'),
    duplicate: num(f, 'duplicate'), reorder: num(f, 'reorder'), corrupt: num(f, 'corrupt'), bandwidth_bps: num(f, 'bandwidth_bps'),
    queue_bytes: num(f, 'queue_bytes'), queue_packets: num(f, 'queue_packets'), bottleneck: str(f, 'bottleneck'),
  }), (r) => `link ${r.a} ⇄ ${r.b} set${r.bottleneck ? ` through ${r.bottleneck}` : ''}`],
  'add-listener': (f, sid) => ['POST', `/sessions/${sid}/listeners`, clean({ host: str(f, 'host'), port: num(f, 'port'), isn: num(f, 'isn') }),
    (r) => `listener L${r.id} on ${r.host}:${r.port}`],
  'open-connection': (f, sid) => ['POST', `/sessions/${sid}/connections`, clean({
    client: str(f, 'client'), server: str(f, 'server'), port: num(f, 'port'), client_port: num(f, 'client_port'), isn: num(f, 'isn'),
  }), (r) => `connection c${r.id} opened: the SYN leaves`],
  'add-fault': (f, sid) => {
    const match = clean({ flags: flags(str(f, 'flags')), len: num(f, 'len'), seq: num(f, 'seq'), ack: num(f, 'ack') });
    return ['POST', `/sessions/${sid}/faults`, clean({
      from: str(f, 'from'), to: str(f, 'to'), match: Object.keys(match).length ? match : undefined,
      skip: num(f, 'skip'), count: num(f, 'count'), action: str(f, 'action'), delay_ms: num(f, 'delay_ms'),
    }), (r) => `fault rule #${r.id} installed`];
  },
  inject: (f, sid) => ['POST', `/sessions/${sid}/inject`, clean({
    from: { host: str(f, 'from') ?? '', port: num(f, 'src_port') ?? 0 }, to: { host: str(f, 'to') ?? '', port: num(f, 'dst_port') ?? 0 },
    flags: flags(str(f, 'flags')) ?? [], seq: num(f, 'seq') ?? 0, ack: num(f, 'ack') ?? 0, window: num(f, 'window'),
    payload: str(f, 'payload'), delay_ms: num(f, 'delay_ms'),
  }), (r) => `segment #${r.segment_id} injected`],
};

/** Wires every form and button; `app` gives the current session and the refresh hooks. */
export function initControls(app) {
  const run = async (work) => {
    try {
      await work();
    } catch (err) {
      app.toast(err.message, true);
    }
  };

  for (const form of document.querySelectorAll('form[data-action]')) {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const action = form.dataset.action;
      run(async () => {
        if (action === 'create-session') return createSession(form, app);
        const sid = app.sid();
        if (sid === null) throw new Error('open or create a session first');
        if (action === 'conn-call') return connCall(form, ev.submitter, sid, app);
        const [method, path, body, message] = ACTIONS[action](form, sid);
        const reply = await api(method, path, body);
        app.toast(message(reply));
        app.afterAction(action, reply);
      });
    });
  }

  const clockButtons = document.querySelectorAll('[data-clock]');
  for (const button of clockButtons) {
    button.addEventListener('click', () => run(async () => {
      const sid = app.sid();
      if (sid === null) throw new Error('open or create a session first');
      const action = button.dataset.clock;
      const body = { action };
      if (action === 'advance') body.ms = num(document.getElementById('clock-form'), 'ms') ?? 100;
      if (action === 'set_speed' || (action === 'resume' && app.info()?.clock === 'realtime')) {
        const speed = num(document.getElementById('clock-form'), 'speed');
        if (speed !== undefined) body.speed = speed;
      }
      const reply = await api('POST', `/sessions/${sid}/clock`, body);
      const capped = reply.stopped_by ? ` (stopped by the ${reply.stopped_by} cap)` : '';
      app.toast(`clock ${action.replace(/_/g, ' ')}: t=${(reply.now_ns / 1e6).toLocaleString('en')} ms, ${reply.steps} steps${reply.idle ? ', idle' : ''}${capped}`);
      app.afterAction('clock', reply);
    }));
  }

  document.getElementById('end-session').addEventListener('click', () => run(async () => {
    const sid = app.sid();
    if (sid === null) return;
    await api('DELETE', `/sessions/${sid}`);
    app.toast(`session ${sid} ended; its history stays`);
    app.afterAction('end', null);
  }));
}

async function createSession(form, app) {
  const profile = clean({
    isn: num(form, 'isn'), handshake: str(form, 'handshake'), time_wait: str(form, 'time_wait'),
  });
  const body = clean({
    name: str(form, 'name'), clock: str(form, 'clock'), speed: num(form, 'speed'), seed: num(form, 'seed'),
    profile: Object.keys(profile).length ? profile : undefined,
  });
  const reply = await api('POST', '/sessions', body);
  app.toast(`session #${reply.id} created`);
  app.openSession(reply.id);
}

async function connCall(form, submitter, sid, app) {
  const op = submitter?.dataset.op ?? 'send';
  const conn = num(form, 'conn');
  if (conn === undefined) throw new Error('connection: choose one');
  const side = str(form, 'side') ?? 'client';
  const path = `/sessions/${sid}/connections/${conn}/${op}`;
  const body = op === 'send' ? { side, data: form.elements.namedItem('data').value } : { side };
  const reply = await api('POST', path, body);
  app.toast(op === 'send' ? `${side} of c${conn} queued ${reply.accepted} octets` : `${op.toUpperCase()} on the ${side} of c${conn}`);
  app.afterAction(op, reply);
}
