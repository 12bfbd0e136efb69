// A session as the dashboard knows it, built from its event log alone (so an
// ended session replays from history exactly as a live one is watched), and
// the ladder's layout: a y position for every event drawn, time flowing down.

/** Events that take a row of the ladder. */
const ROWED = new Set([
  'state_changed', 'segment_sent', 'segment_delivered', 'segment_dropped',
  'segment_held', 'segment_released', 'timer_fired', 'connection_error',
]);

/** Pixels between two rows at the same virtual time. */
export const ROW = 30;

/** Extra pixels for a gap in virtual time: logarithmic, so 5 ms and 60 s both fit. */
export function gapPx(dtNs) {
  if (dtNs <= 0) return 0;
  return Math.min(120, 12 + 16 * Math.log10(1 + dtNs / 1e5));
}

/** Drop reasons that happen on the wire (the cross is drawn part-way). */
export const WIRE_DROPS = new Set(['loss', 'fault', 'queue_full']);

/** One segment with every event about it. */
class SegmentRecord {
  constructor(seg) {
    this.id = seg.id;
    this.seg = seg;
    this.sent = null;      // the segment_sent event
    this.ends = [];        // segment_delivered / segment_dropped events
    this.marks = [];       // held, released, delayed, duplicated
    this.conns = new Set();
  }
}

/** The session's world as its events describe it. */
export class SessionModel {
  constructor(sid) {
    this.sid = sid;
    this.events = [];
    this.bySeq = new Map();
    this.lastSeq = 0;
    this.lastT = 0;
    this.segs = new Map();
    this.conns = new Map();      // id -> {id, ends: Map(key -> {host, side, history: [{seq, t, state}]})}
    this.listeners = new Map();  // id -> {id, host, history}
    this.hosts = [];             // names in order of appearance
    this.filter = null;          // connection id, or null for everything
    this.layout = new Layout(this);
  }

  /** Adds a host column (from the API's host list or from an event). */
  addHost(name) {
    if (name && !this.hosts.includes(name)) {
      this.hosts.push(name);
      return true;
    }
    return false;
  }

  /** Adds events (any order of arrival, duplicates ignored); returns how many were new. */
  add(events) {
    let added = 0;
    let relayout = false;
    const sorted = events.length > 1 ? [...events].sort((a, b) => a.seq - b.seq) : events;
    for (const e of sorted) {
      if (e.seq <= this.lastSeq) continue;
      this.events.push(e);
      this.bySeq.set(e.seq, e);
      this.lastSeq = e.seq;
      this.lastT = e.t_ns;
      if (this.index(e)) relayout = true;
      added += 1;
    }
    if (relayout) this.layout.rebuild();
    else for (let i = this.events.length - added; i < this.events.length; i++) this.layout.append(this.events[i]);
    return added;
  }

  /** Files one event; true when the layout must be rebuilt (a segment joined the filtered connection late). */
  index(e) {
    let relayout = false;
    if (e.segment) {
      const seg = e.segment;
      let rec = this.segs.get(seg.id);
      if (!rec) { rec = new SegmentRecord(seg); this.segs.set(seg.id, rec); }
      if (e.connection !== undefined && !rec.conns.has(e.connection)) {
        rec.conns.add(e.connection);
        if (this.filter === e.connection && rec.sent && rec.sent._y === undefined) relayout = true;
      }
      if (e.kind === 'segment_sent') { rec.sent = e; rec.seg = seg; }
      else if (e.kind === 'segment_delivered' || e.kind === 'segment_dropped') rec.ends.push(e);
      else rec.marks.push(e);
      this.addHost(seg.from);
      this.addHost(seg.to);
    } else if (e.host) {
      this.addHost(e.host);
    }
    if (e.kind === 'state_changed') {
      const entry = { seq: e.seq, t: e.t_ns, state: e.to, from: e.from };
      if (e.connection !== undefined) {
        let conn = this.conns.get(e.connection);
        if (!conn) { conn = { id: e.connection, ends: new Map() }; this.conns.set(e.connection, conn); }
        const key = e.side || `peer ${e.host}`;
        let end = conn.ends.get(key);
        if (!end) { end = { host: e.host, side: e.side || null, history: [] }; conn.ends.set(key, end); }
        end.history.push(entry);
      } else if (e.listener !== undefined) {
        let l = this.listeners.get(e.listener);
        if (!l) { l = { id: e.listener, host: e.host, history: [] }; this.listeners.set(e.listener, l); }
        l.history.push(entry);
      }
    }
    return relayout;
  }

  /** Shows only one connection's events (null: all); relays the ladder out. */
  setFilter(connId) {
    this.filter = connId;
    this.layout.rebuild();
  }

  /** Whether an event belongs in the ladder under the current filter. */
  shown(e) {
    if (!ROWED.has(e.kind)) return false;
    if (this.filter === null) return true;
    if (e.connection === this.filter) return true;
    if (e.segment) {
      const rec = this.segs.get(e.segment.id);
      return !!rec && rec.conns.has(this.filter);
    }
    return false;
  }

  /** An end's state as of event `cursor` (null before its first state change). */
  static stateAt(history, cursor) {
    let state = null;
    for (const h of history) {
      if (h.seq > cursor) break;
      state = h.state;
    }
    return state;
  }

  /** The virtual time of the last event at or before `cursor`. */
  timeAt(cursor) {
    const e = this.eventAtOrBefore(cursor);
    return e ? e.t_ns : 0;
  }

  /** The last event with seq <= cursor. */
  eventAtOrBefore(cursor) {
    const ev = this.events;
    let lo = 0;
    let hi = ev.length - 1;
    let best = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ev[mid].seq <= cursor) { best = ev[mid]; lo = mid + 1; } else hi = mid - 1;
    }
    return best;
  }
}

/** The ladder's geometry: one row per drawn event, and the segments' arrows. */
export class Layout {
  constructor(model) {
    this.model = model;
    this.reset();
  }

  reset() {
    this.rows = [];     // {y, e, newT, gap}
    this.arrows = [];   // segment records by sent y
    this.height = ROW;
    this.lastT = null;
    this.lastY = 0;
    this.maxSpan = 0;
    this.pending = new Set(); // arrows with no end laid out yet (in flight or held)
    this.version = (this.version || 0) + 1;
  }

  /** Lays every event out again (after a filter change). */
  rebuild() {
    for (const e of this.model.events) delete e._y;
    this.reset();
    for (const e of this.model.events) this.append(e);
  }

  /** Places one event below the previous ones. */
  append(e) {
    if (!this.model.shown(e)) return;
    const dt = this.lastT === null ? 0 : e.t_ns - this.lastT;
    const gap = gapPx(dt);
    const y = this.rows.length === 0 ? ROW : this.lastY + ROW + gap;
    const row = { y, e, newT: this.lastT === null || dt > 0, gap: this.lastT === null ? 0 : dt };
    this.rows.push(row);
    e._y = y;
    this.lastT = e.t_ns;
    this.lastY = y;
    this.height = y + ROW * 2;
    if (e.kind === 'segment_sent') {
      const rec = this.model.segs.get(e.segment.id);
      if (rec) { this.arrows.push(rec); this.pending.add(rec); }
    } else if (e.kind === 'segment_delivered' || e.kind === 'segment_dropped') {
      const rec = this.model.segs.get(e.segment.id);
      if (rec && rec.sent && rec.sent._y !== undefined) {
        this.maxSpan = Math.max(this.maxSpan, y - rec.sent._y);
        this.pending.delete(rec);
      }
    }
    this.version += 1;
  }

  /** Index of the first row with y >= top (binary search). */
  firstRowAt(top) {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.rows[mid].y < top) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /** Index of the first arrow sent at y >= top. */
  firstArrowAt(top) {
    let lo = 0;
    let hi = this.arrows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.arrows[mid].sent._y < top) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /** The y of the last row at or before event `cursor`. */
  yAt(cursor) {
    let lo = 0;
    let hi = this.rows.length - 1;
    let best = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.rows[mid].e.seq <= cursor) { best = this.rows[mid].y; lo = mid + 1; } else hi = mid - 1;
    }
    return best;
  }
}
