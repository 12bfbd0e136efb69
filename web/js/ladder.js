// The ladder diagram: one column per host, virtual time flowing down, an
// arrow per segment. Only what is in view is drawn (the SVG is a sticky
// viewport over a tall spacer), so 10,000 segments scroll as smoothly as ten.

/** A drop reason's fate where it is not plain `dropped` (tcplab_core::sim::Fate::of_drop). */
const DROP_FATES = { loss: 'lost', queue_full: 'lost', bad_checksum: 'corrupted' };
import { ROW, WIRE_DROPS, gapPx } from './model.js';
import { esc, flagsLabel, fmtGap, fmtTime, segmentLabel, stateClass } from './format.js';

/** Okabe-Ito colours (safe for the common colour-vision deficiencies). */
export const COLORS = {
  normal: '#0072B2',   // blue
  rtx: '#E69F00',      // orange
  injected: '#CC79A7', // reddish purple
  dropped: '#D55E00',  // vermillion
  pending: '#777777',
};

/** Darker text variants of the tag colours, for contrast on white. */
const TAG_TEXT = { rtx: '#8a5200', injected: '#8e3a6e', dropped: '#a84400' };

const GUTTER = 104;   // time labels
const SIDE = 96;      // room for state badges beside the outer columns
const MARGIN = 80;    // extra pixels drawn above and below the viewport

export class Ladder {
  /**
   * @param {{header: HTMLElement, scroll: HTMLElement, onSelect: Function}} parts
   * `scroll` holds an <svg> (sticky) and a `.ladder-spacer` div.
   */
  constructor({ header, scroll, onSelect }) {
    this.header = header;
    this.scroll = scroll;
    this.svg = scroll.querySelector('svg');
    this.spacer = scroll.querySelector('.ladder-spacer');
    this.onSelect = onSelect;
    this.model = null;
    this.cursor = null;
    this.selected = null;
    this.hostInfo = new Map();
    this.headerKey = '';
    this.frame = 0;
    scroll.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(scroll);
    this.svg.addEventListener('click', (ev) => {
      const target = ev.target.closest('[data-sel]');
      if (!target) return;
      const [type, id] = target.getAttribute('data-sel').split(':');
      this.selected = { type, id: Number(id) };
      this.schedule();
      this.onSelect?.(this.selected);
    });
  }

  /** Shows another session (or none). */
  setModel(model) {
    this.model = model;
    this.drawKey = '';
    this.cursor = null;
    this.selected = null;
    this.scroll.scrollTop = 0;
    this.schedule();
  }

  /** Draws only what happened up to event `seq` (null: everything). */
  setCursor(seq) {
    this.cursor = seq;
    this.schedule();
  }

  /** Host IPs for the header. */
  setHostInfo(hosts) {
    this.hostInfo = new Map(hosts.map((h) => [h.name, h]));
    this.drawKey = '';
    this.schedule();
  }

  select(sel) {
    this.selected = sel;
    this.schedule();
  }

  /** True when the view shows the bottom of the diagram (so new rows should keep it there). */
  atBottom() {
    const s = this.scroll;
    return s.scrollTop + s.clientHeight >= s.scrollHeight - ROW * 2;
  }

  scrollToBottom() {
    this.spacer.style.height = `${Math.max(0, (this.model?.layout.height ?? 0) - this.scroll.clientHeight)}px`;
    this.scroll.scrollTop = this.scroll.scrollHeight;
    this.schedule();
  }

  /** Scrolls so that y is in view (centred when it was out of view). */
  reveal(y) {
    const s = this.scroll;
    if (y < s.scrollTop + ROW || y > s.scrollTop + s.clientHeight - ROW) {
      this.spacer.style.height = `${Math.max(0, (this.model?.layout.height ?? 0) - s.clientHeight)}px`;
      s.scrollTop = Math.max(0, y - s.clientHeight / 2);
    }
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** x of each host column, and the label font size for the column spacing. */
  geometry(width) {
    const hosts = this.model.hosts;
    const xs = new Map();
    const n = hosts.length;
    const inner = Math.max(200, width - GUTTER - 2 * SIDE);
    hosts.forEach((h, i) => xs.set(h, n === 1 ? GUTTER + SIDE + inner / 2 : GUTTER + SIDE + (i * inner) / (n - 1)));
    const spacing = n > 1 ? inner / (n - 1) : inner;
    const font = Math.max(11, Math.min(15, Math.floor(spacing / 30)));
    return { xs, font, width };
  }

  drawHeader(g) {
    const key = `${g.width}|${this.model ? this.model.hosts.join(',') : ''}|${[...this.hostInfo.values()].map((h) => h.ip).join(',')}`;
    if (key === this.headerKey) return;
    this.headerKey = key;
    const parts = [`<div class="ladder-time-head">virtual time</div>`];
    if (this.model) {
      for (const [name, x] of g.xs) {
        const ip = this.hostInfo.get(name)?.ip;
        parts.push(`<div class="ladder-host" data-testid="ladder-host" data-host="${esc(name)}" style="left:${x}px">` +
          `<span class="host-name">${esc(name)}</span>${ip ? `<span class="host-ip">${esc(ip)}</span>` : ''}</div>`);
      }
    }
    this.header.innerHTML = parts.join('');
  }

  draw() {
    const s = this.scroll;
    const width = s.clientWidth;
    const height = s.clientHeight;
    this.svg.setAttribute('width', width);
    this.svg.setAttribute('height', height);
    this.svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    if (!this.model) {
      this.svg.innerHTML = '';
      this.spacer.style.height = '0px';
      this.header.innerHTML = '';
      this.headerKey = '';
      return;
    }
    const m = this.model;
    const L = m.layout;
    this.spacer.style.height = `${Math.max(0, L.height - height)}px`;
    const top = s.scrollTop;
    // The elements cover a band of one and a half views around the visible
    // part: scrolling within it only moves the band (no new elements, nothing
    // under the pointer detached); leaving it, or any change, redraws.
    const key = `${width}|${height}|${L.version}|${this.cursor}|${this.selected?.type}:${this.selected?.id}|${m.hosts.join(',')}|${m.conns.size}`;
    if (key === this.drawKey && top >= this.bandLo && top + height <= this.bandHi && this.layer?.isConnected) {
      this.layer.setAttribute('transform', `translate(0,${-top})`);
      return;
    }
    this.drawKey = key;
    const g = this.geometry(width);
    this.drawHeader(g);
    const lo = top - height / 2 - MARGIN;
    const hi = top + height * 1.5 + MARGIN;
    this.bandLo = lo + MARGIN;
    this.bandHi = hi - MARGIN;
    const cur = this.cursor ?? m.lastSeq;
    const curY = this.cursor === null ? L.lastY : L.yAt(cur);
    const multi = m.conns.size > 1;
    const out = [];
    const sel = this.selected;

    // Time gutter and faint lines at each new instant; host columns.
    const bottomY = Math.min(hi, Math.max(L.height, height));
    out.push(`<rect x="0" y="${lo}" width="${GUTTER - 8}" height="${hi - lo}" class="gutter"/>`);
    for (const x of g.xs.values()) out.push(`<line class="host-line" x1="${x}" x2="${x}" y1="${Math.max(0, lo)}" y2="${bottomY}"/>`);

    const first = L.firstRowAt(lo);
    const fg = [];
    for (let i = first; i < L.rows.length; i++) {
      const row = L.rows[i];
      if (row.y > hi) break;
      const e = row.e;
      if (e.seq > cur) break;
      if (row.newT) {
        out.push(`<line class="tick" x1="${GUTTER - 8}" x2="${width}" y1="${row.y}" y2="${row.y}"/>`);
        out.push(`<text class="t-label" x="${GUTTER - 14}" y="${row.y + 5}" text-anchor="end">${esc(fmtTime(e.t_ns))}</text>`);
        const gp = gapPx(row.gap);
        if (row.gap >= 250e6) {
          const gy = row.y - ROW / 2 - gp / 2;
          out.push(`<text class="gap-label" x="${GUTTER - 14}" y="${gy + 4}" text-anchor="end">${esc(fmtGap(row.gap))}</text>`);
          for (const x of g.xs.values()) {
            const d = `M${x - 8},${gy + 1} l16,-6 M${x - 8},${gy + 8} l16,-6`;
            out.push(`<path class="gap-gap" d="M${x},${gy - 8} v16"/><path class="gap-break" d="${d}"/>`);
          }
        }
      }
      const x = g.xs.get(e.host);
      if (e.kind === 'state_changed' && x !== undefined) {
        const prefix = e.connection !== undefined ? (multi ? `c${e.connection} ` : '') : `L${e.listener} `;
        const text = `${prefix}${e.to}`;
        const w = text.length * 8.4 + 16;
        const isSel = sel && sel.type === 'event' && sel.id === e.seq;
        fg.push(`<g class="state ${stateClass(e.to)}${isSel ? ' selected' : ''}" data-testid="ladder-state" data-sel="event:${e.seq}" ` +
          `data-host="${esc(e.host)}" data-state="${e.to}" data-from="${e.from}" data-conn="${e.connection ?? ''}" data-side="${e.side ?? ''}">` +
          `<title>${esc(`${e.host}: ${e.from} → ${e.to} (RFC 9293 ${e.rfc})`)}</title>` +
          `<rect x="${x - w / 2}" y="${row.y - 12}" width="${w}" height="24" rx="5"/>` +
          `<text x="${x}" y="${row.y + 5}" text-anchor="middle">${esc(text)}</text></g>`);
      } else if ((e.kind === 'timer_fired' || e.kind === 'connection_error') && x !== undefined) {
        // On the inner side of the column: the outer side has the time gutter or the edge.
        const first = x === Math.min(...g.xs.values());
        const tx = first ? x + 12 : x - 12;
        const anchor = first ? 'start' : 'end';
        const text = e.kind === 'timer_fired' ? `${e.timer} timer fired` : `error: ${e.error}`;
        const cls = e.kind === 'timer_fired' ? 'timer' : 'conn-error';
        fg.push(`<text class="${cls}" data-testid="ladder-${cls}" data-sel="event:${e.seq}" x="${tx}" y="${row.y + 5}" text-anchor="${anchor}">${esc(text)}</text>`);
      } else if (e.kind === 'segment_held' || e.kind === 'segment_released') {
        // Beside the sender's column, on the side away from the arrow (its label is on the other).
        const x1 = g.xs.get(e.segment.from);
        const x2 = g.xs.get(e.segment.to);
        if (x1 !== undefined && x2 !== undefined) {
          const right = x2 >= x1;
          const text = e.kind === 'segment_held' ? `#${e.segment.id} held (rule ${e.fault})` : `#${e.segment.id} released`;
          fg.push(`<text class="hold" data-sel="segment:${e.segment.id}" x="${right ? x1 - 10 : x1 + 10}" y="${row.y + 5}" text-anchor="${right ? 'end' : 'start'}">${esc(text)}</text>`);
        }
      }
    }

    // Arrows: every segment whose span meets the view.
    const seen = new Set();
    const drawRec = (rec) => {
      if (seen.has(rec)) return;
      seen.add(rec);
      const sent = rec.sent;
      if (!sent || sent._y === undefined || sent.seq > cur) return;
      const x1 = g.xs.get(rec.seg.from);
      const x2 = g.xs.get(rec.seg.to);
      if (x1 === undefined || x2 === undefined) return;
      out.push(this.arrow(rec, x1, x2, cur, curY, g.font, sel, lo, hi));
    };
    const startA = L.firstArrowAt(lo - L.maxSpan);
    for (let i = startA; i < L.arrows.length; i++) {
      const rec = L.arrows[i];
      if (rec.sent._y > hi) break;
      drawRec(rec);
    }
    for (const rec of L.pending) if (rec.sent._y <= hi) drawRec(rec);

    if (this.cursor !== null && this.cursor < m.lastSeq) {
      out.push(`<line class="cursor-line" x1="0" x2="${width}" y1="${curY + ROW / 2}" y2="${curY + ROW / 2}"/>`);
      out.push(`<text class="cursor-label" x="6" y="${curY + ROW / 2 - 4}">replay: event ${cur}</text>`);
    }
    this.svg.innerHTML = `<g transform="translate(0,${-top})">${out.join('')}${fg.join('')}</g>`;
    this.layer = this.svg.firstElementChild;
  }

  /** One segment's arrow(s), label, and marks, as SVG markup ('' when out of view). */
  arrow(rec, x1, x2, cur, curY, font, sel, lo, hi) {
    const seg = rec.seg;
    const y1 = rec.sent._y;
    const ends = rec.ends.filter((e) => e.seq <= cur && e._y !== undefined);
    const kind = seg.injected ? 'injected' : seg.retransmission ? 'rtx' : 'normal';
    const color = COLORS[kind];
    const isSel = sel && sel.type === 'segment' && sel.id === rec.id;
    const paths = [];
    const targets = [];
    let fate = 'in_flight';
    if (ends.length === 0) {
      // Not arrived (yet): a short dashed stub towards the receiver.
      targets.push({ x: x1 + (x2 - x1) * 0.45, y: y1 + ROW * 1.5, pending: true });
    }
    for (const e of ends) {
      if (e.kind === 'segment_delivered') {
        targets.push({ x: x2, y: e._y });
        if (fate !== 'delivered') fate = 'delivered';
      } else {
        const onWire = WIRE_DROPS.has(e.reason);
        targets.push({ x: onWire ? x1 + (x2 - x1) * 0.8 : x2 - Math.sign(x2 - x1) * 6, y: e._y, drop: e.reason });
        // The server's one rule (GET .../segments): a delivered copy wins,
        // else the last drop: loss is `lost`, a bad checksum `corrupted`.
        if (fate !== 'delivered') fate = DROP_FATES[e.reason] || 'dropped';
      }
    }
    const yMax = Math.max(y1, ...targets.map((t) => t.y));
    if (yMax < lo || y1 > hi) return '';
    const dash = kind === 'rtx' ? ' stroke-dasharray="10 5"' : kind === 'injected' ? ' stroke-dasharray="3 4"' : '';
    for (const t of targets) {
      const c = t.drop ? COLORS.dropped : t.pending ? COLORS.pending : color;
      const d = t.pending ? ' stroke-dasharray="4 4"' : dash;
      paths.push(`<line class="hit" x1="${x1}" y1="${y1}" x2="${t.x}" y2="${t.y}"/>`);
      paths.push(`<line class="seg-line" x1="${x1}" y1="${y1}" x2="${t.x}" y2="${t.y}" stroke="${c}"${d}/>`);
      const ang = Math.atan2(t.y - y1, t.x - x1);
      if (t.drop) {
        const r = 9;
        paths.push(`<path class="drop-mark" data-testid="ladder-drop-mark" d="M${t.x - r},${t.y - r} L${t.x + r},${t.y + r} M${t.x - r},${t.y + r} L${t.x + r},${t.y - r}" stroke="${COLORS.dropped}"/>`);
        // The reason: under a cross on the wire, beside one at the receiver (on its outer side).
        const right = x2 >= x1;
        const [rx, ry, anchor] = WIRE_DROPS.has(t.drop) ? [t.x, t.y + 24, 'middle'] : right ? [t.x + 14, t.y + 5, 'start'] : [t.x - 14, t.y + 5, 'end'];
        paths.push(`<text class="drop-label" x="${rx}" y="${ry}" text-anchor="${anchor}" fill="${TAG_TEXT.dropped}">${esc(t.drop)}</text>`);
      } else {
        const hl = 13;
        const hw = 6;
        const bx = t.x - hl * Math.cos(ang);
        const by = t.y - hl * Math.sin(ang);
        const px = -Math.sin(ang) * hw;
        const py = Math.cos(ang) * hw;
        paths.push(`<path class="head" d="M${t.x},${t.y} L${bx + px},${by + py} L${bx - px},${by - py} Z" fill="${t.pending ? COLORS.pending : color}"/>`);
      }
    }
    // Label near the sender, along the first arrow, upright.
    const t0 = targets[0];
    const ang = Math.atan2(t0.y - y1, t0.x - x1);
    const right = t0.x >= x1;
    const lx = x1 + Math.cos(ang) * 18;
    const ly = y1 + Math.sin(ang) * 18;
    const deg = (ang * 180) / Math.PI + (right ? 0 : 180);
    const tags = [];
    const pendingTag = ends.length ? '' : rec.marks.some((mk) => mk.kind === 'segment_held' && mk.seq <= cur) ? ' (held)' : ' (in flight)';
    if (seg.retransmission) tags.push(`<tspan class="tag" fill="${TAG_TEXT.rtx}">RTX </tspan>`);
    if (seg.injected) tags.push(`<tspan class="tag" fill="${TAG_TEXT.injected}">INJ </tspan>`);
    const label = y1 < lo || y1 > hi ? '' : `<text class="seg-label" data-testid="ladder-segment-label" font-size="${font}" text-anchor="${right ? 'start' : 'end'}" ` +
      `transform="translate(${lx.toFixed(1)},${ly.toFixed(1)}) rotate(${deg.toFixed(2)})" x="0" y="-6">${tags.join('')}${esc(segmentLabel(seg))}${pendingTag ? `<tspan class="tag" fill="#555">${pendingTag}</tspan>` : ''}</text>`;
    const lastEnd = rec.ends[rec.ends.length - 1];
    return `<g class="seg seg-${kind}${isSel ? ' selected' : ''}" data-testid="ladder-segment" data-sel="segment:${rec.id}" ` +
      `data-seg-id="${rec.id}" data-flags="${flagsLabel(seg.flags)}" data-seq="${seg.seq}" data-ack="${seg.ack}" data-len="${seg.len}" ` +
      `data-win="${seg.window}" data-from="${esc(seg.from)}" data-to="${esc(seg.to)}" data-fate="${fate}" ` +
      `data-reason="${lastEnd && lastEnd.reason && lastEnd.seq <= cur ? esc(lastEnd.reason) : ''}" ` +
      `data-rtx="${seg.retransmission}" data-injected="${seg.injected}">` +
      `${paths.join('')}${label}</g>`;
  }
}
