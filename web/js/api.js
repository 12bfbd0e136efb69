// The REST API (see /api/v1/openapi.json): one fetch wrapper that turns the
// server's error body {"error":{"code","message"}} into an exception.

/** An error reply from the server, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls `method /api/v1{path}` with an optional JSON body; resolves to the JSON reply. */
export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, init);
  } catch (err) {
    throw new ApiError(0, 'unavailable', `server unreachable: ${err.message}`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    throw new ApiError(res.status, data?.error?.code ?? `http_${res.status}`, data?.error?.message ?? (text || res.statusText));
  }
  return data;
}

/** Every stored event after `after`, page by page (for ended sessions and replays). */
export async function fetchEvents(sid, after = 0, onPage = () => {}) {
  const limit = 10000;
  let cursor = after;
  for (;;) {
    const page = await api('GET', `/sessions/${sid}/events?after_seq=${cursor}&limit=${limit}`);
    if (page.events.length) onPage(page.events);
    const next = page.next_after_seq;
    if (page.events.length < limit || next <= cursor) return Math.max(next, cursor);
    cursor = next;
  }
}

/** Every event kind the server streams (EventSource needs a listener per named event). */
export const EVENT_KINDS = [
  'state_changed', 'segment_sent', 'segment_delivered', 'segment_dropped', 'segment_duplicated',
  'segment_delayed', 'segment_held', 'segment_released', 'timer_fired', 'connection_error',
  'congestion_changed', 'segment_queued',
];
