// Three plots in the Plots tab beside the ladder, each read from the event log alone and in
// step with the ladder's cursor (only what happened by the cursor is drawn;
// clicking a point moves the cursor there, so the ladder jumps to it):
//
// - the time-sequence graph of one sender (tcptrace's and Wireshark's
//   "Stevens" graph): a bar from seq to seq+len per segment sent, the
//   retransmissions and the losses marked, the ACK line and the receive
//   window line (ACK + window) as the sender received them;
// - that sender's cwnd and ssthresh (from `congestion_changed`) and its
//   flight size (octets sent and not yet acknowledged, from its segments);
// - the occupancy of one link direction's or one bottleneck's queue (from
//   `segment_queued`: the octets waiting when a segment joins, and each
//   waiting segment leaving at its `transmit_ns`), with its drop-tail drops.
//
// Each series is one SVG path with one move-to per point and its count in
// `data-points`, so that a session of 10,000 segments is three paths, not
// 30,000 elements.

import { el, esc, fmtTime, setChildren } from './format.js';

/** Octets the IP and TCP headers (without options) add to a segment's payload on the wire. */
const HEADERS = 40;

/** Sequence space a segment occupies: its payload, and one for SYN and one for FIN. */
function seqLen(seg) {
  return seg.len + (seg.flags.includes('SYN') ? 1 : 0) + (seg.flags.includes('FIN') ? 1 : 0);
}

/** The distance from `base` to `seq` in sequence space (mod 2^32). */
function rel(seq, base) {
  return (seq - base) >>> 0;
}

/**
 * "A→B", or the bottleneck's name and direction when the link crosses one
 * (known from a live session's links; an ended session's queues are named
 * by their host pair).
 */
function queueKey(from, to, links) {
  const link = links.find((l) => l.a === from && l.b === to);
  if (link && link.bottleneck) return `${link.bottleneck} ${link.bottleneck_forward ? '(forward)' : '(back)'}`;
  return `${from}→${to}`;
}

/** The connection's ends: sender side -> {host, peer}. */
function ends(conn) {
  const hosts = {};
  for (const end of conn.ends.values()) if (end.side) hosts[end.side] = end.host;
  if (!hosts.client || !hosts.server) return null;
  return {
    client: { host: hosts.client, peer: hosts.server },
    server: { host: hosts.server, peer: hosts.client },
  };
}

/**
 * Everything the two connection plots show, for one connection's sender,
 * up to event `cursor`. Points are [t_ns, y, seq].
 */
export function senderSeries(model, connId, side, cursor) {
  const conn = model.conns.get(connId);
  const who = conn && ends(conn);
  const out = {
    sent: [], rtx: [], lost: [], ack: [], rwnd: [], cwnd: [], ssthresh: [], flight: [], t0: null, t1: null,
  };
  if (!who) return out;
  const { host, peer } = who[side];
  let isn = null;
  let sndMax = null;
  let sndUna = null;
  const mine = (e) => {
    const rec = model.segs.get(e.segment.id);
    return !!rec && rec.conns.has(connId);
  };
  for (const e of model.events) {
    if (e.seq > cursor) break;
    if (e.kind === 'congestion_changed' && e.connection === connId && e.side === side) {
      out.cwnd.push([e.t_ns, e.cwnd, e.seq]);
      out.ssthresh.push([e.t_ns, e.ssthresh, e.seq]);
      continue;
    }
    const seg = e.segment;
    if (!seg) continue;
    if (e.kind === 'segment_sent' && e.connection === connId && seg.from === host) {
      if (isn === null) isn = seg.seq;
      const end = (seg.seq + seqLen(seg)) >>> 0;
      if (sndMax === null || rel(end, isn) > rel(sndMax, isn)) sndMax = end;
      if (sndUna === null) sndUna = seg.seq;
      if (seqLen(seg) > 0) {
        (seg.retransmission ? out.rtx : out.sent).push([e.t_ns, rel(seg.seq, isn), e.seq, rel(end, isn)]);
      }
      out.flight.push([e.t_ns, rel(sndMax, isn) - rel(sndUna, isn), e.seq]);
    } else if (e.kind === 'segment_dropped' && seg.from === host && seg.to === peer && isn !== null && seqLen(seg) > 0 && mine(e)) {
      out.lost.push([e.t_ns, rel((seg.seq + seqLen(seg)) >>> 0, isn), e.seq]);
    } else if (e.kind === 'segment_delivered' && e.connection === connId && seg.from === peer && seg.to === host
      && isn !== null && seg.flags.includes('ACK')) {
      const ack = rel(seg.ack, isn);
      out.ack.push([e.t_ns, ack, e.seq]);
      out.rwnd.push([e.t_ns, ack + seg.window, e.seq]);
      if (ack > rel(sndUna, isn) && ack <= rel(sndMax, isn)) sndUna = seg.ack;
      out.flight.push([e.t_ns, rel(sndMax, isn) - rel(sndUna, isn), e.seq]);
    }
    if (e.connection === connId || mine(e)) {
      if (out.t0 === null) out.t0 = e.t_ns;
      out.t1 = e.t_ns;
    }
  }
  return out;
}

/** Every queue that segments waited in or were refused by, by key. */
export function queueKeys(model, links) {
  const keys = new Set();
  for (const e of model.events) {
    if (e.kind === 'segment_queued' || (e.kind === 'segment_dropped' && e.reason === 'queue_full')) {
      keys.add(queueKey(e.segment.from, e.segment.to, links));
    }
  }
  return [...keys];
}

/**
 * One queue's occupancy up to event `cursor`: `joins` (a point per
 * `segment_queued`, the octets waiting with the segment), `steps` (the
 * occupancy line, stepping down as each waiting segment leaves), `drops`.
 */
export function queueSeries(model, key, links, cursor) {
  const out = { joins: [], steps: [], drops: [], t0: null, t1: null };
  const waiting = []; // [transmit_ns, octets], in transmit order
  let level = 0;
  const drain = (t) => {
    while (waiting.length && waiting[0][0] <= t) {
      const [leave, octets] = waiting.shift();
      level -= octets;
      out.steps.push([leave, level, null]);
    }
  };
  for (const e of model.events) {
    if (e.seq > cursor) break;
    if (e.kind !== 'segment_queued' && !(e.kind === 'segment_dropped' && e.reason === 'queue_full')) continue;
    if (queueKey(e.segment.from, e.segment.to, links) !== key) continue;
    drain(e.t_ns);
    if (out.t0 === null) out.t0 = e.t_ns;
    out.t1 = e.t_ns;
    if (e.kind === 'segment_queued') {
      // The segment's own octets: what waits with it, less what waited before.
      const octets = Math.max(0, e.queued_bytes - level);
      level = e.queued_bytes;
      // One transmitter serves a queue in order: transmit times only grow.
      waiting.push([e.transmit_ns, octets]);
      out.joins.push([e.t_ns, level, e.seq]);
      out.steps.push([e.t_ns, level, e.seq]);
    } else {
      out.drops.push([e.t_ns, level + e.segment.len + HEADERS, e.seq]);
    }
  }
  // What is still waiting at the cursor leaves after it: the line ends there.
  const lastT = model.timeAt(cursor);
  drain(lastT);
  if (out.t1 !== null) out.t1 = Math.max(out.t1, lastT);
  return out;
}

const W = 300;
const H = 190;
const PAD = { l: 52, r: 8, t: 8, b: 22 };

/** A "nice" step for about `n` ticks over `span`. */
function tickStep(span, n) {
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

/** An axis label in octets: "900", "9.8K", "146K", "1.2M". */
function fmtOctets(v) {
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)}M`;
  if (v >= 10240) return `${Math.round(v / 1024)}K`;
  if (v >= 1000) return `${(v / 1024).toFixed(1)}K`;
  return String(Math.round(v));
}

/**
 * An SVG chart. `series`: {name, points, style: 'bars'|'dots'|'step'|'cross', cls, label}.
 * Returns {svg, x}, where x maps a time to its pixel column (for clicks).
 */
function chart(testid, title, series, t0, t1, cursorT, yLabel) {
  let yMax = 1;
  for (const s of series) for (const p of s.points) yMax = Math.max(yMax, p[1] ?? 0, p[3] ?? 0);
  yMax *= 1.05;
  const span = Math.max(1, t1 - t0);
  const x = (t) => PAD.l + ((t - t0) / span) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / yMax) * (H - PAD.t - PAD.b);
  const f = (n) => n.toFixed(1);
  const parts = [`<rect class="plot-bg" x="${PAD.l}" y="${PAD.t}" width="${W - PAD.l - PAD.r}" height="${H - PAD.t - PAD.b}"/>`];
  const yStep = tickStep(yMax, 4);
  for (let v = 0; v <= yMax; v += yStep) {
    parts.push(`<line class="plot-grid" x1="${PAD.l}" x2="${W - PAD.r}" y1="${f(y(v))}" y2="${f(y(v))}"/>`);
    parts.push(`<text class="plot-tick" x="${PAD.l - 4}" y="${f(y(v) + 4)}" text-anchor="end">${fmtOctets(v)}</text>`);
  }
  const tStep = tickStep(span, 3);
  for (let t = Math.ceil(t0 / tStep) * tStep; t <= t1; t += tStep) {
    parts.push(`<text class="plot-tick" x="${f(x(t))}" y="${H - 6}" text-anchor="middle">${esc(fmtTime(t))}</text>`);
  }
  parts.push(`<text class="plot-axis" x="4" y="${PAD.t + 10}">${esc(yLabel)}</text>`);
  for (const s of series) {
    let d = '';
    let n = 0;
    if (s.style === 'step') {
      // One move-to per point: a run at its value to the next point's time,
      // then the rise (or fall) to the next value, where the next run starts.
      const pts = s.points;
      for (let i = 0; i < pts.length; i++) {
        const [t, v] = pts[i];
        if (v === null || v === undefined) continue;
        const next = pts[i + 1];
        d += `M${f(x(t))},${f(y(v))}H${f(x(Math.max(t, next ? next[0] : t1)))}`;
        if (next && next[1] !== null && next[1] !== undefined) d += `V${f(y(next[1]))}`;
        n += 1;
      }
    } else {
      for (const p of s.points) {
        const px = x(p[0]);
        if (s.style === 'bars') d += `M${f(px)},${f(y(p[1]))}V${f(Math.min(y(p[1]) - 1.5, y(p[3])))}`;
        else if (s.style === 'cross') d += `M${f(px - 3)},${f(y(p[1]) - 3)}l6,6m0,-6l-6,6`;
        else d += `M${f(px)},${f(y(p[1]))}h0.01`;
        n += 1;
      }
    }
    parts.push(`<path class="plot-series ${s.cls}" data-series="${s.name}" data-points="${n}" d="${d}"><title>${esc(s.label)}</title></path>`);
  }
  if (cursorT !== null) {
    parts.push(`<line class="plot-cursor" data-testid="plot-cursor" x1="${f(x(cursorT))}" x2="${f(x(cursorT))}" y1="${PAD.t}" y2="${H - PAD.b}"/>`);
  }
  const legend = series.map((s) => `<span class="plot-key ${s.cls}">${esc(s.label)}</span>`).join('');
  const svg = `<div class="plot" data-testid="${testid}"><div class="plot-title">${esc(title)}</div>` +
    `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>` +
    `<div class="plot-legend">${legend}</div></div>`;
  return { svg, x };
}

/** The plots panel: its selectors, its three charts, and clicks that move the cursor. */
export class Plots {
  /** @param {{root: HTMLElement, onSeek: (seq: number) => void}} parts `root` is the tab (drawn only when shown). */
  constructor({ root, onSeek }) {
    this.root = root;
    this.onSeek = onSeek;
    this.model = null;
    this.cursor = null;
    this.links = [];
    this.frame = 0;
    this.key = '';
    this.clickable = new Map(); // testid -> {points, x}
    this.conn = root.querySelector('[data-testid=plot-conn]');
    this.side = root.querySelector('[data-testid=plot-side]');
    this.queue = root.querySelector('[data-testid=plot-queue]');
    this.body = root.querySelector('.plots-body');
    for (const s of [this.conn, this.side, this.queue]) s.addEventListener('change', () => this.schedule());
    this.body.addEventListener('click', (ev) => this.click(ev));
  }

  /** Plots another session (or none): the cursor is back at the end. */
  setModel(model) {
    this.model = model;
    this.cursor = null;
    this.key = '';
    this.schedule();
  }

  /** Draws only what happened up to event `seq` (null: everything). */
  setCursor(seq) {
    this.cursor = seq;
    this.schedule();
  }

  /** Plots the connection the ladder is filtered to ('' keeps the choice). */
  showConnection(connId) {
    if (connId === '' || ![...this.conn.options].some((o) => o.value === connId)) return;
    this.conn.value = connId;
    this.schedule();
  }

  /** The session's links (to name the bottleneck a queue belongs to). */
  setLinks(links) {
    const key = JSON.stringify(links.map((l) => [l.a, l.b, l.bottleneck, l.bottleneck_forward]));
    if (key === this.linksKey) return;
    this.linksKey = key;
    this.links = links;
    this.schedule();
  }

  /** Redraws on the next animation frame (once however often it is asked). */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** Keeps a <select>'s options (keeping the choice, else the last option). */
  static options(select, values, labels) {
    const key = values.join('|');
    if (select.dataset.key !== key) {
      select.dataset.key = key;
      const value = select.value;
      setChildren(select, values.map((v, i) => el('option', { value: v }, labels[i])));
      select.value = values.includes(value) ? value : values[values.length - 1] ?? '';
    }
    return select.value;
  }

  /** Draws the three charts, unless the tab is hidden or nothing they show has changed. */
  draw() {
    const m = this.model;
    if (this.root.hidden) return;
    if (!m) {
      this.body.innerHTML = '';
      this.key = '';
      return;
    }
    const connIds = [...m.conns.keys()].sort((a, b) => a - b).map(String);
    const connValue = Plots.options(this.conn, connIds, connIds.map((c) => `c${c}`));
    const queueValues = queueKeys(m, this.links);
    const queueValue = Plots.options(this.queue, queueValues, queueValues);
    const cursor = this.cursor ?? m.lastSeq;
    const key = `${m.lastSeq}|${cursor}|${connValue}|${this.side.value}|${queueValue}|${this.linksKey}`;
    if (key === this.key) return;
    this.key = key;
    const cursorT = this.cursor === null ? null : m.timeAt(cursor);
    const html = [];
    this.clickable.clear();
    if (connValue !== '') {
      const side = this.side.value;
      const s = senderSeries(m, Number(connValue), side, cursor);
      const t0 = s.t0 ?? 0;
      const t1 = Math.max(s.t1 ?? 1, cursorT ?? 0);
      const tseq = chart('plot-tseq', `time-sequence: c${connValue} ${side} sends`, [
        { name: 'rwnd', points: s.rwnd, style: 'step', cls: 's-rwnd', label: 'ACK + window' },
        { name: 'ack', points: s.ack, style: 'step', cls: 's-ack', label: 'ACK' },
        { name: 'sent', points: s.sent, style: 'bars', cls: 's-sent', label: 'sent' },
        { name: 'rtx', points: s.rtx, style: 'bars', cls: 's-rtx', label: 'retransmitted' },
        { name: 'lost', points: s.lost, style: 'cross', cls: 's-lost', label: 'lost' },
      ], t0, t1, cursorT, 'seq − ISN');
      html.push(tseq.svg);
      this.clickable.set('plot-tseq', { ...tseq, points: [...s.sent, ...s.rtx, ...s.lost, ...s.ack] });
      const cc = chart('plot-cwnd', `window: c${connValue} ${side}`, [
        { name: 'flight', points: s.flight, style: 'step', cls: 's-flight', label: 'flight size' },
        { name: 'ssthresh', points: s.ssthresh, style: 'step', cls: 's-ssthresh', label: 'ssthresh' },
        { name: 'cwnd', points: s.cwnd, style: 'step', cls: 's-cwnd', label: 'cwnd' },
      ], t0, t1, cursorT, 'octets');
      html.push(cc.svg);
      this.clickable.set('plot-cwnd', { ...cc, points: [...s.cwnd, ...s.flight] });
    } else {
      html.push('<div class="plot plot-empty" data-testid="plot-tseq">no connection yet</div>');
    }
    if (queueValue !== '') {
      const q = queueSeries(m, queueValue, this.links, cursor);
      const t1 = Math.max(q.t1 ?? 1, cursorT ?? 0);
      const qc = chart('plot-queue-chart', `queue: ${queueValue}`, [
        { name: 'occupancy', points: q.steps, style: 'step', cls: 's-queue', label: 'queued octets' },
        { name: 'joins', points: q.joins, style: 'dots', cls: 's-join', label: 'a segment waits' },
        { name: 'drops', points: q.drops, style: 'cross', cls: 's-lost', label: 'queue_full' },
      ], q.t0 ?? 0, t1, cursorT, 'octets');
      html.push(qc.svg);
      this.clickable.set('plot-queue-chart', { ...qc, points: [...q.joins, ...q.drops] });
    } else {
      html.push('<div class="plot plot-empty" data-testid="plot-queue-chart">no segment has waited in a queue</div>');
    }
    this.body.innerHTML = html.join('');
  }

  /** A click on a chart moves the cursor to the event of the nearest point in time. */
  click(ev) {
    const plot = ev.target.closest('.plot');
    const svg = plot?.querySelector('svg');
    const c = plot && this.clickable.get(plot.dataset.testid);
    if (!svg || !c || c.points.length === 0) return;
    const box = svg.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * W;
    let best = null;
    let bestD = Infinity;
    for (const p of c.points) {
      if (p[2] === null) continue;
      const d = Math.abs(c.x(p[0]) - px);
      if (d < bestD) { bestD = d; best = p; }
    }
    if (best) this.onSeek(best[2]);
  }
}
