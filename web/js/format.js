// Formatting and DOM helpers shared by the dashboard's modules.

/** The eleven RFC 9293 states, in the order the state machine meets them. */
export const STATES = [
  'CLOSED', 'LISTEN', 'SYN_SENT', 'SYN_RECEIVED', 'ESTABLISHED', 'FIN_WAIT_1',
  'FIN_WAIT_2', 'CLOSE_WAIT', 'CLOSING', 'LAST_ACK', 'TIME_WAIT',
];

/** The order flags are written in a label: "SYN+ACK", "FIN+ACK", "PSH+ACK". */
const FLAG_ORDER = ['SYN', 'FIN', 'RST', 'PSH', 'URG', 'ACK', 'ECE', 'CWR'];

/** "SYN+ACK" for ["ACK","SYN"]; "none" for no flags. */
export function flagsLabel(flags) {
  if (!flags || flags.length === 0) return 'none';
  const sorted = [...flags].sort((a, b) => FLAG_ORDER.indexOf(a) - FLAG_ORDER.indexOf(b));
  return sorted.join('+');
}

/** The ladder label of a segment: flags seq ack len win. */
export function segmentLabel(seg) {
  return `${flagsLabel(seg.flags)} seq=${seg.seq} ack=${seg.ack} len=${seg.len} win=${seg.window}`;
}

/** Virtual time for people: "0 ms", "5 ms", "1015 ms", "60.040 s". */
export function fmtTime(ns) {
  if (ns === null || ns === undefined) return '—';
  if (ns >= 10e9) return `${(ns / 1e9).toFixed(3)} s`;
  const ms = ns / 1e6;
  return `${Number.isInteger(ms) ? ms : ms.toFixed(3).replace(/0+$/, '')} ms`;
}

/** A duration (for gaps between events): "+995 ms", "+59.995 s". */
export function fmtGap(ns) {
  return `+${fmtTime(ns)}`;
}

/** The RFC 9293 section number at the start of an event's `rfc` text. */
export function rfcSection(rfc) {
  const m = /^(\d+(?:\.\d+)*)/.exec(rfc || '');
  return m ? m[1] : null;
}

/** A link to the RFC 9293 section, or null. */
export function rfcUrl(rfc) {
  const section = rfcSection(rfc);
  return section ? `https://www.rfc-editor.org/rfc/rfc9293#section-${section}` : null;
}

/** What caused a state change, in words. */
export function causeText(cause) {
  if (!cause) return 'unknown';
  switch (cause.kind) {
    case 'user': return `user call ${cause.call}`;
    case 'segment':
      return `arriving segment ${flagsLabel(cause.flags)} seq=${cause.seq} ack=${cause.ack} len=${cause.len}`;
    case 'timer': return `${cause.timer} timer expired`;
    default: return JSON.stringify(cause);
  }
}

/** A colour class for a state (the ladder and the inspector use the same). */
export function stateClass(state) {
  switch (state) {
    case 'ESTABLISHED': return 'st-est';
    case 'LISTEN': case 'SYN_SENT': case 'SYN_RECEIVED': return 'st-open';
    case 'FIN_WAIT_1': case 'FIN_WAIT_2': case 'CLOSE_WAIT': case 'CLOSING': case 'LAST_ACK': return 'st-closing';
    case 'TIME_WAIT': return 'st-tw';
    default: return 'st-closed';
  }
}

/** Escapes text for HTML and SVG markup built as strings. */
export function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/**
 * Builds an element: el('div', {class: 'x', 'data-testid': 'y', onclick: f}, child, 'text').
 * Attributes starting with "on" become listeners; null/undefined/false ones are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'value') node.value = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces a node's children. */
export function setChildren(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

/** Payload bytes of a segment as text (printable ASCII, others as \xNN). */
export function payloadText(b64) {
  if (!b64) return '';
  let raw;
  try { raw = atob(b64); } catch { return '(invalid base64)'; }
  let out = '';
  for (let i = 0; i < raw.length && i < 4096; i++) {
    const c = raw.charCodeAt(i);
    out += c >= 32 && c < 127 ? raw[i] : c === 10 ? '\\n' : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  if (raw.length > 4096) out += ` … (${raw.length} octets)`;
  return out;
}
