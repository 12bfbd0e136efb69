// The dashboard's read-only panels: the sessions list, the topology strip,
// the connections with both ends' TCBs, and the detail of a selected segment
// or state change. Each renders from plain data and keeps its size fixed.

import { SessionModel } from './model.js';
import {
  causeText, el, esc, flagsLabel, fmtTime, payloadText, rfcSection, rfcUrl, segmentLabel, setChildren, stateClass,
} from './format.js';

/** The sessions list: live and ended, newest first. */
export function renderSessions(list, sessions, currentSid, onOpen) {
  const key = JSON.stringify([currentSid, sessions.map((s) => [s.id, s.name, s.status, s.now_ns, s.connections, s.states, s.clock, s.paused])]);
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  if (sessions.length === 0) {
    setChildren(list, el('li', { class: 'muted empty-list' }, 'No sessions yet: create one above.'));
    return;
  }
  const items = [...sessions].sort((a, b) => b.id - a.id).map((s) => {
    const states = Object.entries(s.states || {}).map(([st, n]) => el('span', { class: `chip ${stateClass(st)}` }, `${st}${n > 1 ? ` ×${n}` : ''}`));
    return el('li', {
      class: `session-item${s.id === currentSid ? ' current' : ''}`,
      'data-testid': 'session-item', 'data-session-id': s.id, 'data-status': s.status,
    },
    el('button', { type: 'button', class: 'session-open', onclick: () => onOpen(s.id) },
      el('div', { class: 'si-top' },
        el('span', { class: 'si-name' }, s.name || `session ${s.id}`),
        el('span', { class: 'si-id' }, `#${s.id}`),
        el('span', { class: `badge ${s.status === 'live' ? 'live' : 'ended'}`, 'data-testid': 'session-item-status' }, s.status)),
      el('div', { class: 'si-meta' },
        `${s.clock}${s.clock === 'realtime' ? (s.paused ? ' (paused)' : ` ×${s.speed}`) : ''} · t=${fmtTime(s.now_ns)} · ${s.connections} conn${s.connections === 1 ? '' : 's'} · ${s.events} events`),
      states.length ? el('div', { class: 'si-states' }, states) : null));
  });
  setChildren(list, items);
}

/** Hosts, links (with impairments), listeners and fault rules of a session. */
export function renderTopology(box, data, actions) {
  const { hosts, links, listeners, faults, ended, modelHosts } = data;
  const key = JSON.stringify([hosts, links, listeners, faults, ended, modelHosts]);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const groups = [];
  const hostChips = (hosts.length ? hosts : modelHosts.map((name) => ({ name })))
    .map((h) => el('span', { class: 'chip host', 'data-testid': 'topo-host', 'data-host': h.name }, el('b', {}, h.name), h.ip ? ` ${h.ip}` : ''));
  groups.push(el('div', { class: 'topo-group' }, el('span', { class: 'topo-title' }, 'Hosts'),
    hostChips.length ? hostChips : el('span', { class: 'muted' }, 'none')));
  if (!ended) {
    // Both directions of a link usually carry the same settings: show them once.
    const shown = [];
    const seen = new Set();
    for (const l of links) {
      const back = links.find((o) => o.a === l.b && o.b === l.a);
      const same = back && ['latency_ms', 'jitter_ms', 'loss', 'duplicate', 'reorder', 'corrupt', 'bandwidth_bps', 'queue_bytes', 'queue_packets', 'bottleneck'].every((k) => back[k] === l[k]);
      const pair = [l.a, l.b].sort().join('|');
      if (same && seen.has(pair)) continue;
      seen.add(pair);
      const imp = [`${l.latency_ms} ms`];
      if (l.jitter_ms) imp.push(`±${l.jitter_ms} ms`);
      for (const k of ['loss', 'duplicate', 'reorder', 'corrupt']) if (l[k]) imp.push(`${k} ${(l[k] * 100).toFixed(1).replace(/\.0$/, '')}%`);
      if (l.bandwidth_bps) imp.push(`${(l.bandwidth_bps / 1e6).toFixed(2)} Mb/s`);
      if (l.queue_bytes) imp.push(`queue ${l.queue_bytes} B`);
      if (l.queue_packets) imp.push(`queue ${l.queue_packets} seg`);
      if (l.bottleneck) imp.push(`through ${l.bottleneck}`);
      if (l.queued_bytes) imp.push(`${l.queued_bytes} B waiting`);
      shown.push(el('span', { class: 'chip link', 'data-testid': 'topo-link' }, `${l.a} ${same ? '⇄' : '→'} ${l.b}: ${imp.join(', ')}`));
    }
    groups.push(el('div', { class: 'topo-group' }, el('span', { class: 'topo-title' }, 'Links'),
      shown.length ? shown : el('span', { class: 'muted' }, 'default (10 ms)')));
    groups.push(el('div', { class: 'topo-group' }, el('span', { class: 'topo-title' }, 'Listeners'),
      listeners.length ? listeners.map((l) => el('span', { class: `chip ${stateClass(l.state)}`, 'data-testid': 'topo-listener' }, `L${l.id} ${l.host}:${l.port} ${l.state}`))
        : el('span', { class: 'muted' }, 'none')));
    groups.push(el('div', { class: 'topo-group' }, el('span', { class: 'topo-title' }, 'Faults'),
      faults.length ? faults.map((f) => {
        const m = f.match || {};
        const what = [m.flags ? `[${flagsLabel(m.flags)}]` : 'any', m.len !== null && m.len !== undefined ? `len=${m.len}` : '',
          m.seq !== null && m.seq !== undefined ? `seq=${m.seq}` : '', m.ack !== null && m.ack !== undefined ? `ack=${m.ack}` : ''].filter(Boolean).join(' ');
        return el('span', { class: 'chip fault', 'data-testid': 'topo-fault', 'data-fault-id': f.id },
          `#${f.id} ${f.action}${f.action === 'delay' ? ` ${f.delay_ms} ms` : ''} ${f.from ?? '*'}→${f.to ?? '*'} ${what}` +
          `${f.skip ? ` skip ${f.skip}` : ''} · acted ${f.acted}${f.count !== null && f.count !== undefined ? `/${f.count}` : ''}${f.held ? ` · holds ${f.held}` : ''}`,
          f.held ? el('button', { type: 'button', class: 'mini', title: 'Release held segments', onclick: () => actions.releaseFault(f.id) }, 'release') : null,
          el('button', { type: 'button', class: 'mini', title: 'Remove the rule', 'aria-label': `remove fault ${f.id}`, onclick: () => actions.deleteFault(f.id) }, '✕'));
      }) : el('span', { class: 'muted' }, 'none')));
  } else {
    groups.push(el('div', { class: 'topo-group' }, el('span', { class: 'muted' }, 'Ended session: replayed from its stored history.')));
  }
  setChildren(box, groups);
}

/** TCB rows of the inspector: [label, getter]. */
const TCB_ROWS = [
  ['host:port', (e) => (e.local_port !== undefined ? `${e.host}:${e.local_port}` : e.host)],
  ['ISS', (e) => e.iss], ['IRS', (e) => e.irs],
  ['SND.UNA', (e) => e.snd_una], ['SND.NXT', (e) => e.snd_nxt], ['SND.WND', (e) => e.snd_wnd],
  ['RCV.NXT', (e) => e.rcv_nxt], ['RCV.WND', (e) => e.rcv_wnd], ['SND.MSS', (e) => e.snd_mss],
  // Octets held, of the buffer's size (SO_SNDBUF, SO_RCVBUF) where the server says it.
  ['send buffer', (e) => (e.send_buffer_size ? `${e.send_buffered} of ${e.send_buffer_size}` : e.send_buffered)],
  ['recv buffer', (e) => (e.recv_buffer_size ? `${e.recv_buffered} of ${e.recv_buffer_size}` : e.recv_buffered)],
  ['out of order', (e) => e.out_of_order],
  // RFC 2018: negotiated in the SYN exchange; the blocks this end reports, most recent first.
  ['SACK', (e) => (e.sack_permitted === undefined ? undefined : e.sack_permitted ? 'permitted' : 'off')],
  // RFC 7323: the shifts once both ends offered Window Scale; TS.Recent while timestamps are on.
  ['wscale snd/rcv', (e) => (e.snd_wscale === undefined || e.snd_wscale === null ? undefined : `${e.snd_wscale}/${e.rcv_wscale}`)],
  ['TS.Recent', (e) => (e.timestamps ? e.ts_recent : undefined)],
  ['Nagle', (e) => (e.nodelay === undefined ? undefined : e.nodelay ? 'off (TCP_NODELAY)' : 'on')],
  ['SACK blocks', (e) => (e.sack_blocks?.length ? e.sack_blocks.map((b) => `${b.start}:${b.end}`).join(' ') : undefined)],
  ['received', (e) => e.received_bytes],
  ['RTO', (e) => (e.rto_ns !== undefined ? fmtTime(e.rto_ns) : undefined)],
  ['SRTT', (e) => (e.srtt_ns === undefined ? undefined : e.srtt_ns === null ? '—' : fmtTime(e.srtt_ns))],
  ['retries', (e) => e.retries],
];
const TIMERS = ['retransmit', 'time_wait', 'persist', 'delayed_ack', 'keepalive'];

let previous = new Map();

/**
 * The connections with both ends. `conns` are the API's ConnectionInfo
 * (live, following) or null (history: states from the events at `cursor`).
 */
export function renderConnections(box, { conns, model, cursor, nowNs, live }) {
  const cards = [];
  const next = new Map();
  const list = conns ?? [...(model?.conns.values() ?? [])].map((c) => {
    const end = (side) => {
      const e = c.ends.get(side);
      if (!e) return null;
      const state = SessionModel.stateAt(e.history, cursor);
      return state ? { host: e.host, side, state } : null;
    };
    const peers = [...c.ends.entries()].filter(([k]) => k !== 'client' && k !== 'server');
    return { id: c.id, client: end('client'), server: end('server') ?? (peers.length ? end(peers[0][0]) : null) };
  });
  for (const c of list) {
    const sides = [['client', c.client], ['server', c.server]];
    const head = el('div', { class: 'conn-head' },
      el('span', { class: 'conn-id' }, `c${c.id}`),
      el('span', {}, sides.map(([, e]) => (e ? (e.local_port !== undefined ? `${e.host}:${e.local_port}` : e.host) : '…')).join(' ⇄ ')));
    const cell = (side, label, value) => {
      const k = `${c.id}|${side}|${label}`;
      const v = value === undefined || value === null ? '—' : String(value);
      next.set(k, v);
      const changed = previous.has(k) && previous.get(k) !== v;
      return el('td', { class: changed ? 'changed' : null, 'data-field': label }, v);
    };
    const rows = [el('tr', { class: 'state-row' }, el('th', {}, 'state'),
      sides.map(([side, e]) => el('td', { 'data-testid': 'end-state', 'data-side': side },
        e ? el('span', { class: `state-pill ${stateClass(e.state)}` }, e.state) : el('span', { class: 'muted' }, side === 'server' ? 'no SYN yet' : '—'))))];
    if (conns) {
      for (const [label, get] of TCB_ROWS) rows.push(el('tr', {}, el('th', {}, label), sides.map(([side, e]) => cell(side, label, e ? get(e) : undefined))));
      for (const t of TIMERS) {
        rows.push(el('tr', {}, el('th', {}, `${t.replace('_', ' ')} timer`), sides.map(([side, e]) => {
          const at = e?.timers?.[t];
          return cell(side, t, at === null || at === undefined ? (e ? 'off' : undefined) : `in ${fmtTime(Math.max(0, at - nowNs))}`);
        })));
      }
      rows.push(el('tr', {}, el('th', {}, 'error'), sides.map(([side, e]) => cell(side, 'error', e ? e.error ?? 'none' : undefined))));
    }
    cards.push(el('section', { class: 'conn-card', 'data-testid': 'connection-card', 'data-conn-id': c.id },
      head,
      el('table', { class: 'tcb' },
        el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, 'client'), el('th', {}, 'server'))),
        el('tbody', {}, rows))));
  }
  previous = next;
  const note = conns ? null : el('p', { class: 'muted note' }, live
    ? `Replaying: states as of event ${cursor}. Press Live for the TCBs.`
    : 'Ended session: states from the stored events; TCB values are shown only while a session is live.');
  setChildren(box, list.length ? [note, ...cards] : [el('p', { class: 'muted' }, 'No connections yet. Use Controls → Listen and Open.')]);
}

/** The selected segment's header fields, or the selected event's cause and RFC section. */
export function renderDetail(box, sel, model, segInfo) {
  if (!sel || !model) {
    setChildren(box, el('p', { class: 'muted' }, 'Click a segment or a state in the diagram to see its details.'));
    return;
  }
  if (sel.type === 'segment') {
    const rec = model.segs.get(sel.id);
    if (!rec) return setChildren(box, el('p', { class: 'muted' }, `segment ${sel.id} is not loaded`));
    const s = segInfo ?? rec.seg;
    const fates = rec.ends.map((e) => (e.kind === 'segment_delivered' ? `delivered at ${fmtTime(e.t_ns)}` : `dropped (${e.reason}) at ${fmtTime(e.t_ns)}`));
    for (const mk of rec.marks) fates.push(`${mk.kind.replace('segment_', '')} at ${fmtTime(mk.t_ns)}${mk.fault ? ` by rule ${mk.fault}` : ''}`);
    const fields = [
      ['segment', `#${s.id}`], ['from', `${s.from}:${s.src_port}`], ['to', `${s.to}:${s.dst_port}`],
      ['flags', flagsLabel(s.flags)], ['seq', s.seq], ['ack', s.ack], ['len', s.len], ['window', s.window],
      ['data offset', `${s.data_offset} (${s.data_offset * 4} octets)`], ['checksum', `0x${Number(s.checksum).toString(16).padStart(4, '0')}`],
      ['urgent', s.urgent], ['options', (s.options || []).map((o) => (o.value !== undefined ? `${o.kind}=${JSON.stringify(o.value)}` : JSON.stringify(o))).join(', ') || 'none'],
      ['sent', rec.sent ? `at ${fmtTime(rec.sent.t_ns)}${rec.sent.connection ? ` by c${rec.sent.connection}` : ''}` : '—'],
      ['fate', fates.join('; ') || 'in flight'],
      ['retransmission', s.retransmission ? 'yes' : 'no'], ['injected', s.injected ? 'yes' : 'no'],
    ];
    if (s.payload_base64) fields.push(['payload', payloadText(s.payload_base64)]);
    setChildren(box,
      el('h3', {}, `Segment #${s.id}: ${segmentLabel(s)}`),
      el('table', { class: 'fields', 'data-testid': 'segment-fields' }, fields.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', { 'data-field': k }, String(v))))));
    return;
  }
  const e = model.bySeq.get(sel.id);
  if (!e) return setChildren(box, el('p', { class: 'muted' }, `event ${sel.id} is not loaded`));
  if (e.kind === 'state_changed') {
    const url = rfcUrl(e.rfc);
    setChildren(box,
      el('h3', {}, `${e.host}${e.side ? ` (${e.side})` : ''}: ${e.from} → ${e.to}`),
      el('table', { class: 'fields', 'data-testid': 'state-fields' },
        el('tr', {}, el('th', {}, 'when'), el('td', {}, `${fmtTime(e.t_ns)} (event ${e.seq})`)),
        el('tr', {}, el('th', {}, e.connection !== undefined ? 'connection' : 'listener'), el('td', {}, e.connection !== undefined ? `c${e.connection}` : `L${e.listener}`)),
        el('tr', {}, el('th', {}, 'cause'), el('td', { 'data-testid': 'state-cause' }, causeText(e.cause))),
        el('tr', {}, el('th', {}, 'RFC 9293'), el('td', { 'data-testid': 'state-rfc' },
          url ? el('a', { href: url, target: '_blank', rel: 'noopener' }, `section ${rfcSection(e.rfc)}`) : '', e.rfc !== rfcSection(e.rfc) ? ` ${e.rfc.slice((rfcSection(e.rfc) || '').length)}` : ''))));
    return;
  }
  const rows = Object.entries(e).filter(([k]) => !k.startsWith('_')).map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))));
  setChildren(box, el('h3', {}, `Event ${e.seq}: ${e.kind}`), el('table', { class: 'fields' }, rows));
}

export { esc };
