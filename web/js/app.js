// The dashboard's entry point: which session is open (the URL hash,
// #/sessions/ID), its event log (live over Server-Sent Events, or replayed
// from the stored history of an ended session), and the panels around the
// ladder diagram.

import { ApiError, EVENT_KINDS, api, fetchEvents } from './api.js';
import { initControls } from './controls.js';
import { el, fmtTime, setChildren } from './format.js';
import { Ladder } from './ladder.js';
import { initLabs, renderLab } from './labs.js';
import { SessionModel } from './model.js';
import { renderConnections, renderDetail, renderSessions, renderTopology } from './panels.js';
import { Plots } from './plots.js';

const $ = (id) => document.getElementById(id);

const state = {
  sessions: [],
  sid: null,
  info: null,
  model: null,
  es: null,
  gen: 0,                 // bumped on every session switch: stale replies are ignored
  topo: { hosts: [], links: [], listeners: [], faults: [] },
  conns: null,            // the API's connections (live sessions)
  cursor: null,           // replay position (event seq), null: everything, following live
  playing: 0,
  selected: null,
  tab: 'connections',
  queue: [],
  flushTimer: 0,
};

const ladder = new Ladder({
  header: $('ladder-header'),
  scroll: $('ladder-scroll'),
  onSelect: (sel) => {
    state.selected = sel;
    showTab('detail');
    renderDetail($('tab-detail'), sel, state.model);
  },
});

const plots = new Plots({ root: $('tab-plots'), onSeek: (seq) => { stopPlaying(); setCursor(seq); } });

// ----- small UI pieces -----

let toastTimer = 0;
function toast(message, error = false) {
  const t = $('toast');
  t.textContent = message;
  t.className = `toast show${error ? ' error' : ''}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = 'toast'; }, error ? 6000 : 3000);
}

function showTab(name) {
  state.tab = name;
  for (const b of document.querySelectorAll('[data-tab]')) b.classList.toggle('active', b.dataset.tab === name);
  for (const id of ['connections', 'controls', 'detail', 'lab', 'plots']) $(`tab-${id}`).hidden = id !== name;
  if (name === 'plots') plots.schedule();
}

function setStream(text, cls) {
  const s = $('stream-status');
  s.textContent = text;
  s.className = `stream ${cls || ''}`;
}

function live() {
  return state.info?.status === 'live';
}

function renderHead() {
  const info = state.info;
  $('session-title').textContent = info ? `${info.name || 'session'} #${info.id}` : 'no session open';
  const status = $('session-status');
  status.textContent = info ? info.status : '';
  status.className = `badge ${info ? (info.status === 'live' ? 'live' : 'ended') : 'none'}`;
  const clock = info ? `t = ${fmtTime(info.now_ns)} · ${info.clock}${info.clock === 'realtime' ? (info.paused ? ' (paused)' : ` ×${info.speed}`) : ''}` : '';
  $('clock-now').textContent = clock;
  const enabled = !!info && info.status === 'live';
  for (const b of document.querySelectorAll('#clock-form button, #tab-controls button')) b.disabled = !enabled;
  $('ladder-empty').hidden = !!state.model;
  const m = state.model;
  $('ladder-count').textContent = m ? `${m.segs.size} segments · ${m.events.length} events` : '';
}

function renderConnectionsPanel() {
  const m = state.model;
  const following = state.cursor === null;
  renderConnections($('tab-connections'), {
    conns: live() && following ? state.conns : null,
    model: m,
    cursor: state.cursor ?? m?.lastSeq ?? 0,
    nowNs: state.info?.now_ns ?? 0,
    live: live(),
  });
}

function renderTopologyPanel() {
  renderTopology($('topology'), {
    ...state.topo,
    ended: !!state.info && !live(),
    modelHosts: state.model ? state.model.hosts : [],
  }, {
    deleteFault: (id) => act(() => api('DELETE', `/sessions/${state.sid}/faults/${id}`), `fault rule #${id} removed`),
    releaseFault: (id) => act(() => api('POST', `/sessions/${state.sid}/faults/${id}/release`), `held segments of rule #${id} released`),
  });
}

/** Keeps a <select> of connections in step with the session (keeps the choice). */
function syncConnOptions() {
  const ids = state.model ? [...state.model.conns.keys()] : [];
  for (const c of state.conns || []) if (!ids.includes(c.id)) ids.push(c.id);
  ids.sort((a, b) => a - b);
  const key = ids.join(',');
  for (const [id, withAll] of [['conn-filter', true], ['conn-select', false]]) {
    const select = $(id);
    if (select.dataset.key === key) continue;
    select.dataset.key = key;
    const value = select.value;
    const options = ids.map((c) => el('option', { value: c }, `c${c}`));
    setChildren(select, withAll ? [el('option', { value: '' }, 'all connections'), options] : options);
    if ([...select.options].some((o) => o.value === value)) select.value = value;
    else if (!withAll && ids.length) select.value = String(ids[ids.length - 1]);
  }
  if (state.pendingConn !== undefined && ids.includes(state.pendingConn)) {
    $('conn-select').value = String(state.pendingConn);
    state.pendingConn = undefined;
  }
}

function syncHostNames() {
  const names = state.topo.hosts.length ? state.topo.hosts.map((h) => h.name) : state.model?.hosts ?? [];
  const list = $('host-names');
  const key = names.join(',');
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  setChildren(list, names.map((n) => el('option', { value: n })));
  // Suggest the next host to add: A, B, C... with 10.0.0.N.
  const form = document.querySelector('form[data-action="add-host"]');
  if (form && names.length < 26) {
    let i = 0;
    while (names.includes(String.fromCharCode(65 + i)) && i < 25) i++;
    form.elements.namedItem('name').value = String.fromCharCode(65 + i);
    form.elements.namedItem('ip').value = `10.0.0.${i + 1}`;
  }
}

// ----- timeline (replay) -----

function renderTimeline() {
  const m = state.model;
  const range = $('tl-range');
  const last = m ? m.lastSeq : 0;
  range.max = String(last);
  range.value = String(state.cursor ?? last);
  range.disabled = !m || last === 0;
  const cur = state.cursor ?? last;
  $('tl-pos').textContent = m ? `event ${cur} / ${last} · t=${fmtTime(m.timeAt(cur))}` : '';
  $('tl-live').textContent = live() ? 'Live' : 'All';
  $('tl-live').classList.toggle('active', state.cursor === null);
  $('tl-play').textContent = state.playing ? '⏸' : '▶';
}

function setCursor(seq, reveal = true) {
  const m = state.model;
  if (!m) return;
  // At the end of the log the view shows everything (and follows a live session).
  state.cursor = seq === null || seq >= m.lastSeq ? null : Math.max(0, seq);
  ladder.setCursor(state.cursor);
  plots.setCursor(state.cursor);
  if (reveal) {
    if (state.cursor === null) ladder.scrollToBottom();
    else ladder.reveal(m.layout.yAt(state.cursor));
  }
  renderTimeline();
  renderConnectionsPanel();
}

/** The seq of the next (dir=1) or previous (dir=-1) drawn row from the cursor. */
function neighbourRow(dir) {
  const m = state.model;
  const rows = m.layout.rows;
  const cur = state.cursor ?? m.lastSeq;
  if (dir > 0) {
    for (const r of rows) if (r.e.seq > cur) return r.e.seq;
    return m.lastSeq;
  }
  for (let i = rows.length - 1; i >= 0; i--) if (rows[i].e.seq < cur) return rows[i].e.seq;
  return 0;
}

function stopPlaying() {
  clearInterval(state.playing);
  state.playing = 0;
  renderTimeline();
}

function initTimeline() {
  $('tl-range').addEventListener('input', (ev) => {
    const seq = Number(ev.target.value);
    stopPlaying();
    setCursor(seq);
  });
  $('tl-start').addEventListener('click', () => { stopPlaying(); setCursor(0); });
  $('tl-back').addEventListener('click', () => { if (state.model) { stopPlaying(); setCursor(neighbourRow(-1)); } });
  $('tl-fwd').addEventListener('click', () => { if (state.model) { stopPlaying(); setCursor(neighbourRow(1)); } });
  $('tl-live').addEventListener('click', () => { stopPlaying(); setCursor(null); });
  $('tl-play').addEventListener('click', () => {
    if (!state.model) return;
    if (state.playing) return stopPlaying();
    if (state.cursor === null || state.cursor >= state.model.lastSeq) setCursor(0);
    state.playing = setInterval(() => {
      const m = state.model;
      if (!m) return stopPlaying();
      const next = neighbourRow(1);
      setCursor(next);
      if (next >= m.lastSeq) stopPlaying();
    }, 400);
    renderTimeline();
  });
  document.addEventListener('keydown', (ev) => {
    if (!state.model || ev.target.closest('input, select, textarea')) return;
    if (ev.key === 'ArrowRight') { stopPlaying(); setCursor(neighbourRow(1)); ev.preventDefault(); }
    if (ev.key === 'ArrowLeft') { stopPlaying(); setCursor(neighbourRow(-1)); ev.preventDefault(); }
  });
}

// ----- data -----

async function refreshSessions() {
  try {
    const page = await api('GET', '/sessions?limit=1000');
    state.sessions = page.sessions;
    renderSessions($('sessions'), state.sessions, state.sid, (id) => { location.hash = `#/sessions/${id}`; });
    const mine = state.sessions.find((s) => s.id === state.sid);
    if (mine && state.info && mine.status !== state.info.status) refreshLive();
  } catch (err) {
    setStream('server unreachable', 'down');
  }
}

let liveTimer = 0;
let liveBusy = false;
/** Refreshes the live session's info, topology and TCBs (at most a few times a second). */
function refreshLiveSoon() {
  if (liveTimer) return;
  liveTimer = setTimeout(() => { liveTimer = 0; refreshLive(); }, 200);
}

async function refreshLive() {
  const sid = state.sid;
  const gen = state.gen;
  if (sid === null || liveBusy) return;
  liveBusy = true;
  try {
    const info = await api('GET', `/sessions/${sid}`);
    if (gen !== state.gen) return;
    const wasLive = live();
    state.info = info;
    if (info.status === 'live') {
      const [hosts, links, listeners, faults, conns] = await Promise.all([
        api('GET', `/sessions/${sid}/hosts`), api('GET', `/sessions/${sid}/links`), api('GET', `/sessions/${sid}/listeners`),
        api('GET', `/sessions/${sid}/faults`), api('GET', `/sessions/${sid}/connections`),
      ]);
      if (gen !== state.gen) return;
      state.topo = { hosts: hosts.hosts, links: links.links, listeners: listeners.listeners, faults: faults.faults };
      state.conns = conns.connections;
      plots.setLinks(links.links);
      let changed = false;
      for (const h of hosts.hosts) changed = state.model.addHost(h.name) || changed;
      ladder.setHostInfo(hosts.hosts);
      if (changed) ladder.schedule();
    } else if (wasLive) {
      sessionEnded();
    }
  } catch (err) {
    if (err instanceof ApiError && err.code === 'failed_precondition' && gen === state.gen) {
      // The session ended between two calls: the next refresh shows it.
      refreshLiveSoon();
    }
  } finally {
    liveBusy = false;
  }
  if (gen !== state.gen) return;
  renderHead();
  renderTopologyPanel();
  renderConnectionsPanel();
  syncConnOptions();
  syncHostNames();
  renderTimeline();
}

/** A live session we watch has ended: stop streaming, pick up any stored event not yet seen. */
async function sessionEnded() {
  if (state.es) { state.es.close(); state.es = null; }
  setStream('ended', 'ended');
  state.conns = null;
  const gen = state.gen;
  try {
    await fetchEvents(state.sid, state.model.lastSeq, (events) => { if (gen === state.gen) enqueue(events); });
  } catch { /* the events shown stay */ }
}

function enqueue(events) {
  state.queue.push(...events);
  if (!state.flushTimer) state.flushTimer = setTimeout(flush, 40);
}

function flush() {
  state.flushTimer = 0;
  const m = state.model;
  if (!m || state.queue.length === 0) return;
  const wasBottom = ladder.atBottom();
  const added = m.add(state.queue.splice(0));
  if (!added) return;
  if (state.cursor === null) {
    if (wasBottom) ladder.scrollToBottom(); else ladder.schedule();
  }
  renderTimeline();
  renderHead();
  syncConnOptions();
  plots.schedule();
  if (live()) refreshLiveSoon(); else { renderConnectionsPanel(); renderTopologyPanel(); }
  if (state.selected) renderDetail($('tab-detail'), state.selected, m);
}

function openStream(sid, gen) {
  const es = new EventSource(`/api/v1/sessions/${sid}/events/stream`);
  state.es = es;
  const onEvent = (msg) => {
    if (gen !== state.gen) return;
    try { enqueue([JSON.parse(msg.data)]); } catch { /* not an event */ }
  };
  for (const kind of EVENT_KINDS) es.addEventListener(kind, onEvent);
  es.addEventListener('message', onEvent);
  // After `lagged` the server ends the stream; EventSource reconnects with
  // Last-Event-ID (the lagged event's id) and the replay continues from there.
  es.addEventListener('lagged', () => setStream('catching up…', 'lag'));
  // The session has ended: the server says so once, and would answer a
  // reconnection with 204; close instead of reconnecting at all.
  es.addEventListener('end', () => {
    if (gen !== state.gen) return;
    es.close();
    setStream('ended', '');
    refreshLive();
  });
  es.onopen = () => { if (gen === state.gen) setStream('● live', 'live'); };
  es.onerror = () => {
    if (gen !== state.gen) return;
    setStream('reconnecting…', 'lag');
    refreshLive();
  };
}

async function openSession(sid) {
  state.gen += 1;
  const gen = state.gen;
  if (state.es) { state.es.close(); state.es = null; }
  stopPlaying();
  state.sid = sid;
  state.info = null;
  state.conns = null;
  state.topo = { hosts: [], links: [], listeners: [], faults: [] };
  state.cursor = null;
  state.selected = null;
  state.queue = [];
  state.model = sid === null ? null : new SessionModel(sid);
  ladder.setModel(state.model);
  plots.setLinks([]);
  plots.setModel(state.model);
  ladder.setHostInfo([]);
  $('conn-filter').value = '';
  renderDetail($('tab-detail'), null, null);
  renderLabTab();
  renderSessions($('sessions'), state.sessions, sid, (id) => { location.hash = `#/sessions/${id}`; });
  if (sid === null) {
    setStream('', '');
    renderHead();
    renderTopologyPanel();
    renderConnectionsPanel();
    renderTimeline();
    return;
  }
  try {
    state.info = await api('GET', `/sessions/${sid}`);
  } catch (err) {
    toast(err.message, true);
    return;
  }
  if (gen !== state.gen) return;
  renderHead();
  if (live()) {
    await refreshLive();
    if (gen !== state.gen) return;
    openStream(sid, gen);
  } else {
    setStream('history', 'ended');
    const all = [];
    try {
      await fetchEvents(sid, 0, (events) => all.push(...events));
    } catch (err) {
      toast(err.message, true);
    }
    if (gen !== state.gen) return;
    // Columns in the order hosts first sent: the opener is usually on the left.
    for (const e of all) if (e.kind === 'segment_sent') state.model.addHost(e.segment.from);
    state.model.add(all);
    // A replay starts at the beginning.
    ladder.schedule();
    plots.schedule();
    renderHead();
    renderTopologyPanel();
    renderConnectionsPanel();
    syncConnOptions();
    syncHostNames();
    renderTimeline();
  }
}

/** Runs a control action and refreshes what it changes. */
async function act(work, message) {
  try {
    await work();
    toast(message);
    afterAction();
  } catch (err) {
    toast(err.message, true);
  }
}

function afterAction(action, reply) {
  if (action === 'open-connection' && reply) state.pendingConn = reply.id;
  refreshLive();
  refreshSessions();
}

function renderLabTab() {
  renderLab($('tab-lab'), state.sid, (id) => { location.hash = `#/sessions/${id}`; });
}

let routed = false;
function route() {
  const m = /^#\/sessions\/(\d+)/.exec(location.hash);
  const sid = m ? Number(m[1]) : null;
  if (!routed || sid !== state.sid || (sid !== null && !state.model)) openSession(sid);
  routed = true;
}

function init() {
  for (const b of document.querySelectorAll('[data-tab]')) b.addEventListener('click', () => showTab(b.dataset.tab));
  showTab('connections');
  $('conn-filter').addEventListener('change', (ev) => {
    if (!state.model) return;
    state.model.setFilter(ev.target.value === '' ? null : Number(ev.target.value));
    ladder.schedule();
    plots.showConnection(ev.target.value);
    if (state.cursor === null) ladder.scrollToBottom();
    else ladder.reveal(state.model.layout.yAt(state.cursor));
  });
  initControls({
    sid: () => state.sid,
    info: () => state.info,
    toast,
    afterAction,
    openSession: (id) => { location.hash = `#/sessions/${id}`; },
  });
  initTimeline();
  initLabs({
    toast,
    showTab,
    openSession: (id) => { location.hash = `#/sessions/${id}`; renderLabTab(); },
    refresh: refreshSessions,
    labsLoaded: renderLabTab,
  });
  window.addEventListener('hashchange', route);
  refreshSessions();
  setInterval(refreshSessions, 2000);
  // A realtime clock moves on its own: keep its time and TCB timers current.
  setInterval(() => { if (live() && state.info.clock === 'realtime' && !state.info.paused) refreshLiveSoon(); }, 1000);
  route();
}

init();

// For the console and the browser tests: the dashboard's state and ladder.
window.tcplab = { state, ladder, plots };
