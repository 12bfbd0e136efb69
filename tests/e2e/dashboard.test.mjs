// Browser tests of the dashboard: the real server (target/debug/tcplab) on
// free ports with a temporary database, driven through Debian's chromium by
// playwright-core. Screenshots of the main views go to target/e2e-screenshots/.
//
//   node --test --test-concurrency=1 dashboard.test.mjs
//
// TCPLAB_BIN overrides the server binary, CHROMIUM the browser.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.TCPLAB_BIN || join(ROOT, 'target/debug/tcplab');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = join(ROOT, 'target/e2e-screenshots');
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const tmp = mkdtempSync(join(tmpdir(), 'tcplab-e2e-'));
const DB = join(tmp, 'lab.db');
let server = null;
let base = '';
let browser = null;
let page = null;

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** Starts the server on fresh ports over DB and waits for /healthz. */
async function startServer() {
  const http = await freePort();
  const grpc = await freePort();
  const child = spawn(BIN, ['--http', `127.0.0.1:${http}`, '--grpc', `127.0.0.1:${grpc}`, '--db', DB], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  child.exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
  child.log = () => log;
  const url = `http://127.0.0.1:${http}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`server did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url };
}

async function stopServer() {
  if (!server) return null;
  const { child } = server;
  server = null;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const result = await child.exited;
  clearTimeout(timer);
  return result;
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

const tid = (id) => page.getByTestId(id);

/** Submits one of the Controls forms after filling its fields ({testid: value}). */
async function fill(fields) {
  for (const [id, value] of Object.entries(fields)) {
    const loc = tid(id);
    if ((await loc.evaluate((n) => n.tagName)) === 'SELECT') await loc.selectOption(String(value));
    else await loc.fill(String(value));
  }
}

/** Clicks a control and waits for the toast that confirms it (fails on an error toast). */
async function act(id) {
  await page.evaluate(() => { document.getElementById('toast').textContent = ''; });
  await tid(id).click();
  const toast = tid('toast');
  await page.waitForFunction(() => document.getElementById('toast').textContent !== '');
  const cls = await toast.getAttribute('class');
  assert.ok(!cls.includes('error'), `${id}: ${await toast.textContent()}`);
}

/** Creates a session from the left-hand form and builds A -- B with B listening on 80 (ISN 500). */
async function newLab(name) {
  await fill({ 'new-session-name': name, 'new-session-isn': 300 });
  await act('create-session');
  await page.waitForFunction((n) => document.querySelector('[data-testid=session-title]').textContent.startsWith(n), name);
  const sid = Number(/#\/sessions\/(\d+)/.exec(page.url())[1]);
  await tid('tab-controls').click();
  await fill({ 'host-name': 'A', 'host-ip': '10.0.0.1' });
  await act('add-host');
  await fill({ 'host-name': 'B', 'host-ip': '10.0.0.2' });
  await act('add-host');
  await fill({ 'link-a': 'A', 'link-b': 'B', 'link-latency': 5 });
  await act('set-link');
  await fill({ 'listen-host': 'B', 'listen-port': 80, 'listen-isn': 500 });
  await act('add-listener');
  return sid;
}

/** The drawn segments, in the order they were sent. */
async function segments() {
  // Let a scheduled redraw (next animation frame) happen first.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return page.$$eval('[data-testid=ladder-segment]', (nodes) => nodes.map((n) => ({
    id: Number(n.dataset.segId), flags: n.dataset.flags, seq: Number(n.dataset.seq), ack: Number(n.dataset.ack),
    len: Number(n.dataset.len), from: n.dataset.from, to: n.dataset.to, fate: n.dataset.fate, reason: n.dataset.reason,
    rtx: n.dataset.rtx === 'true', label: n.querySelector('[data-testid=ladder-segment-label]')?.textContent ?? null,
  })).sort((a, b) => a.id - b.id));
}

async function endStates() {
  await tid('tab-connections').click();
  return page.$$eval('[data-testid=connection-card][data-conn-id="1"] [data-testid=end-state]',
    (cells) => Object.fromEntries(cells.map((c) => [c.dataset.side, c.textContent.trim()])));
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = await startServer();
  base = server.url;
  // A new, empty user data dir (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    viewport: { width: 1600, height: 900 },
  });
  page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (err) => { console.error('page error:', err); });
});

after(async () => {
  await browser?.close();
  await stopServer();
  rmSync(tmp, { recursive: true, force: true });
});

test('the dashboard is served with the right content types and the API keeps its JSON 404', async () => {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  const js = await fetch(`${base}/js/app.js`);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  const missing = await fetch(`${base}/api/v1/nothing`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, 'not_found');
});

test('three-way handshake driven from the controls', async () => {
  await page.goto(`${base}/`);
  await shot('00-empty');
  await newLab('handshake');
  await fill({ 'open-client': 'A', 'open-server': 'B', 'open-port': 80, 'open-client-port': 40000, 'open-isn': '' });
  await act('open-connection');
  await act('clock-run');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=ladder-segment][data-fate=delivered]').length >= 3);
  const segs = await segments();
  assert.deepEqual(segs.slice(0, 3).map((s) => [s.from, s.to, s.flags, s.seq, s.ack, s.len, s.fate]), [
    ['A', 'B', 'SYN', 300, 0, 0, 'delivered'],
    ['B', 'A', 'SYN+ACK', 500, 301, 0, 'delivered'],
    ['A', 'B', 'ACK', 301, 501, 0, 'delivered'],
  ]);
  assert.equal(segs[0].label, 'SYN seq=300 ack=0 len=0 win=65535');
  assert.equal(segs[1].label, 'SYN+ACK seq=500 ack=301 len=0 win=65535');
  // The state of each side is written in the diagram where it changes...
  for (const host of ['A', 'B']) {
    await page.waitForSelector(`[data-testid=ladder-state][data-host=${host}][data-state=ESTABLISHED]`);
  }
  // ...and both ends read ESTABLISHED in the inspector, with their TCBs.
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=connection-card] [data-testid=end-state]').length === 2);
  assert.deepEqual(await endStates(), { client: 'ESTABLISHED', server: 'ESTABLISHED' });
  const snd = await page.$$eval('[data-testid=connection-card] td[data-field="SND.NXT"]', (c) => c.map((x) => x.textContent));
  assert.deepEqual(snd, ['301', '501']);
  await shot('01-handshake');

  // A segment's header fields.
  await page.locator('[data-testid=ladder-segment][data-seg-id="2"] .hit').first().click();
  const fields = tid('segment-fields');
  await fields.waitFor();
  assert.equal(await fields.locator('td[data-field=seq]').textContent(), '500');
  assert.equal(await fields.locator('td[data-field=ack]').textContent(), '301');
  assert.equal(await fields.locator('td[data-field=flags]').textContent(), 'SYN+ACK');
  await shot('02-segment-detail');

  // A state change's cause and RFC section.
  await page.locator('[data-testid=ladder-state][data-host=A][data-state=ESTABLISHED]').click();
  assert.match(await tid('state-cause').textContent(), /arriving segment SYN\+ACK seq=500 ack=301/);
  assert.match(await tid('state-rfc').textContent(), /3\.10\.7\.3/);
  await shot('03-state-detail');
  await tid('tab-controls').click();
  await shot('04-controls');
});

test('a segment dropped by a fault rule is marked, and the retransmission too', async () => {
  await page.goto(`${base}/`);
  await newLab('dropped SYN+ACK');
  await fill({ 'fault-from': 'B', 'fault-to': 'A', 'fault-flags': 'SYN,ACK', 'fault-count': 1, 'fault-action': 'drop' });
  await act('add-fault');
  await page.waitForSelector('[data-testid=topo-fault]');
  await fill({ 'open-client': 'A', 'open-server': 'B', 'open-port': 80, 'open-client-port': 40000 });
  await act('open-connection');
  await act('clock-run');
  await page.waitForSelector('[data-testid=ladder-segment][data-fate=dropped]');
  const segs = await segments();
  const dropped = segs.filter((s) => s.fate === 'dropped');
  assert.equal(dropped.length, 1);
  assert.equal(dropped[0].flags, 'SYN+ACK');
  assert.equal(dropped[0].reason, 'fault');
  assert.equal(await page.locator('[data-testid=ladder-segment][data-fate=dropped] [data-testid=ladder-drop-mark]').count(), 1);
  assert.ok(segs.some((s) => s.rtx && s.flags === 'SYN'), 'the SYN is retransmitted');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=connection-card] [data-testid=end-state]').length === 2);
  assert.deepEqual(await endStates(), { client: 'ESTABLISHED', server: 'ESTABLISHED' });
  await tid('ladder-scroll').evaluate((s) => { s.scrollTop = 0; });
  await page.locator('[data-testid=ladder-segment][data-fate=dropped] .hit').click();
  assert.equal(await tid('segment-fields').locator('td[data-field=fate]').textContent(), 'dropped (fault) at 5 ms');
  await shot('05-dropped');
  // Back to the bottom, where the diagram follows new events.
  await tid('timeline-live').click();

  // Data and the four-way close, so that the history has it all.
  await tid('tab-controls').click();
  await fill({ 'conn-select': '1', 'conn-side': 'client', 'send-data': 'hello, B' });
  await act('conn-send');
  await act('clock-run');
  await act('conn-close');
  await act('clock-run');
  await fill({ 'conn-side': 'server' });
  await act('conn-close');
  await act('clock-run');
  await page.waitForSelector('[data-testid=ladder-state][data-host=A][data-state=TIME_WAIT]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=ladder-state][data-state=CLOSED]').length >= 2);
  await shot('06-close');
});

test('an ended session replays from history after a restart', async () => {
  const stopped = await stopServer();
  assert.equal(stopped.code, 0, `SIGTERM exit: ${JSON.stringify(stopped)}`);
  server = await startServer();
  base = server.url;
  await page.goto(`${base}/`);
  const item = page.locator('[data-testid=session-item]', { hasText: 'dropped SYN+ACK' });
  await item.waitFor();
  assert.equal(await item.getAttribute('data-status'), 'ended');
  await item.locator('button').click();
  await page.waitForSelector('[data-testid=ladder-segment][data-fate=dropped]');
  assert.equal(await tid('session-status').textContent(), 'ended');
  const segs = await segments();
  assert.deepEqual(segs.slice(0, 2).map((s) => [s.flags, s.seq, s.ack, s.fate]), [['SYN', 300, 0, 'delivered'], ['SYN+ACK', 500, 301, 'dropped']]);
  assert.deepEqual(await endStates(), { client: 'CLOSED', server: 'CLOSED' });
  await shot('07-history');

  // Scrub the timeline back to the start, then forward row by row.
  await tid('timeline-start').click();
  // The ladder redraws on the next animation frame.
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=ladder-segment]').length === 0, null, { timeout: 5000 });
  for (let i = 0; i < 4; i++) await tid('timeline-forward').click();
  const early = await segments();
  assert.ok(early.length >= 1 && early.length < segs.length, `after 4 rows: ${early.length} segments`);
  assert.equal(early[0].flags, 'SYN');
  // Half-way along the range: only segments sent by then are drawn, and the
  // last of them is in view (the diagram scrolls to the cursor).
  const max = Number(await tid('timeline-range').getAttribute('max'));
  const half = Math.floor(max / 2);
  await tid('timeline-range').evaluate((r, v) => {
    r.value = String(v);
    r.dispatchEvent(new Event('input', { bubbles: true }));
  }, half);
  await page.waitForFunction((v) => document.querySelector('[data-testid=timeline-position]').textContent.startsWith(`event ${v} /`), half);
  const sid = Number(await item.getAttribute('data-session-id'));
  const stored = await (await fetch(`${base}/api/v1/sessions/${sid}/events?kind=segment_sent`)).json();
  const sentByThen = stored.events.filter((e) => e.seq <= half).map((e) => e.segment.id);
  assert.ok(sentByThen.length > 0 && sentByThen.length < segs.length + 20);
  await page.waitForFunction((id) => !!document.querySelector(`[data-testid=ladder-segment][data-seg-id="${id}"]`), Math.max(...sentByThen));
  const mid = await segments();
  assert.ok(mid.every((s) => sentByThen.includes(s.id)), `drawn ${mid.map((s) => s.id)} but sent by event ${half}: ${sentByThen}`);
  await shot('08-replay-scrubbed');
  await tid('timeline-live').click();
  await page.waitForFunction((v) => document.querySelector('[data-testid=timeline-position]').textContent.startsWith(`event ${v} / ${v}`), max);
  await page.waitForFunction(() => document.querySelectorAll('.cursor-line').length === 0, null, { timeout: 5000 });
});

/** Calls the REST API directly (not through the page); fails the test on an error reply. */
async function api(method, path, body) {
  const r = await fetch(`${base}/api/v1${path}`, {
    method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
  });
  const json = await r.json();
  assert.ok(r.ok, `${method} ${path}: ${JSON.stringify(json)}`);
  return json;
}

/** Every stored event of a session. */
async function allEvents(sid) {
  const events = [];
  for (let after = 0; ;) {
    const page = await api('GET', `/sessions/${sid}/events?after_seq=${after}&limit=10000`);
    events.push(...page.events);
    if (page.events.length < 10000) return events;
    after = page.next_after_seq;
  }
}

test('10,000 segments stay responsive: only what is in view is drawn', async () => {
  // A bulk transfer over REST with a small MSS gives about 11,000 segments.
  const { id } = await api('POST', '/sessions', { name: 'bulk', profile: { isn: 300, mss: 536 } });
  await api('POST', `/sessions/${id}/hosts`, { name: 'A', ip: '10.0.0.1' });
  await api('POST', `/sessions/${id}/hosts`, { name: 'B', ip: '10.0.0.2' });
  await api('PUT', `/sessions/${id}/links`, { a: 'A', b: 'B', latency_ms: 5 });
  await api('POST', `/sessions/${id}/listeners`, { host: 'B', port: 80 });
  await api('POST', `/sessions/${id}/connections`, { client: 'A', server: 'B', port: 80 });
  await api('POST', `/sessions/${id}/clock`, { action: 'run_until_idle' });
  const chunk = Buffer.alloc(1 << 20, 'x').toString('base64');
  for (let i = 0; i < 3; i++) {
    await api('POST', `/sessions/${id}/connections/1/send`, { side: 'client', data_base64: chunk });
    await api('POST', `/sessions/${id}/clock`, { action: 'run_until_idle' });
  }
  const { segments: all } = await api('GET', `/sessions/${id}/segments`);
  assert.ok(all.length >= 10_000, `${all.length} segments`);

  const t0 = Date.now();
  await page.goto(`${base}/#/sessions/${id}`);
  await page.waitForFunction((n) => {
    const c = document.querySelector('[data-testid=ladder-count]').textContent;
    return Number(/^(\d+) segments/.exec(c)?.[1]) >= n;
  }, all.length, { timeout: 60_000 });
  const loadMs = Date.now() - t0;
  // Let the page settle (the last TCB refresh) before timing.
  await page.waitForTimeout(1000);
  const drawn = await page.locator('[data-testid=ladder-segment]').count();
  assert.ok(drawn > 0 && drawn < 1500, `${drawn} segment elements in the DOM`);
  // Scroll through the diagram: each jump redraws within a frame or two.
  const frames = await page.evaluate(async () => {
    const s = document.querySelector('[data-testid=ladder-scroll]');
    const times = [];
    for (let i = 0; i <= 20; i++) {
      const t = performance.now();
      s.scrollTop = (s.scrollHeight * i) / 20;
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      times.push(performance.now() - t);
    }
    return times;
  });
  console.log(`scroll redraws (ms): ${frames.map((f) => f.toFixed(0)).join(' ')}`);
  const worst = Math.max(...frames);
  console.log(`10k: ${all.length} segments loaded in ${loadMs} ms; ${drawn} drawn; worst scroll redraw ${worst.toFixed(1)} ms`);
  assert.ok(worst < 250, `scroll redraw took ${worst} ms`);
  await page.evaluate(() => {
    const s = document.querySelector('[data-testid=ladder-scroll]');
    s.scrollTop = s.scrollHeight / 2;
  });
  await page.waitForTimeout(200);
  await shot('09-bulk');
});

test('a built-in lab started from the browser: its checks pass and its handshake is drawn', async () => {
  await page.goto(`${base}/`);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=lab-select] option').length >= 12);
  await tid('lab-select').selectOption('three-way-handshake');
  assert.match(await tid('lab-title').textContent(), /three-way handshake/i);
  await act('lab-run');
  // The Lab tab: every expectation of the run, each marked pass.
  const result = page.locator('[data-testid=lab-result][data-lab=three-way-handshake]');
  await result.waitFor();
  assert.equal(await result.getAttribute('data-passed'), 'true');
  const checks = await page.$$eval('[data-testid=lab-check]', (n) => n.map((x) => [x.dataset.kind, x.dataset.passed]));
  assert.ok(checks.length >= 10, `${checks.length} checks`);
  assert.deepEqual(checks.filter(([, p]) => p !== 'true'), []);
  assert.ok(checks.some(([k]) => k === 'expect_segments') && checks.some(([k]) => k === 'expect_tcb'));
  assert.match(await tid('lab-summary').textContent(), new RegExp(`PASS ${checks.length}/${checks.length} expectations`));
  // The session the lab ran in is open, and its diagram shows the handshake.
  await page.waitForFunction(() => document.querySelector('[data-testid=session-title]').textContent.startsWith('lab three-way-handshake'));
  assert.equal(await tid('session-status').textContent(), 'live');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=ladder-segment][data-fate=delivered]').length >= 3);
  const segs = await segments();
  assert.deepEqual(segs.map((s) => [s.from, s.to, s.flags, s.seq, s.ack, s.len, s.fate]), [
    ['A', 'B', 'SYN', 300, 0, 0, 'delivered'],
    ['B', 'A', 'SYN+ACK', 500, 301, 0, 'delivered'],
    ['A', 'B', 'ACK', 301, 501, 0, 'delivered'],
  ]);
  for (const host of ['A', 'B']) {
    await page.waitForSelector(`[data-testid=ladder-state][data-host=${host}][data-state=ESTABLISHED]`);
  }
  await tid('tab-lab').click();
  await shot('10-lab-three-way-handshake');

  // A lab with two variants runs each in its own session; the Lab tab links them.
  await tid('lab-select').selectOption('why-not-two-way');
  await act('lab-run');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=lab-variant]').length === 2);
  const variants = await page.$$eval('[data-testid=lab-variant]', (n) => n.map((x) => [x.dataset.variant, x.dataset.passed]));
  assert.deepEqual(variants, [['three_way', 'true'], ['two_way', 'true']]);
  await page.locator('[data-testid=lab-variant][data-variant=two_way]').click();
  await page.waitForSelector('[data-testid=lab-result][data-variant=two_way][data-passed=true]');
  await page.waitForFunction(() => document.querySelector('[data-testid=session-title]').textContent.includes('(two_way)'));
  // Two-way: B is ESTABLISHED on the stale SYN alone, a connection nobody asked for.
  await page.waitForSelector('[data-testid=ladder-state][data-host=B][data-state=ESTABLISHED]');
  await shot('11-lab-why-not-two-way');
});

test('the time-sequence, window and queue plots draw a point per event of a known session, and a click moves the ladder', async () => {
  // 120 KiB through a 2 Mb/s link with a 16 KiB drop-tail queue: slow start
  // overfills the queue, the sender loses segments, retransmits and halves.
  const { id } = await api('POST', '/sessions', { name: 'plots', profile: { isn: 300 } });
  await api('POST', `/sessions/${id}/hosts`, { name: 'A', ip: '10.0.0.1' });
  await api('POST', `/sessions/${id}/hosts`, { name: 'B', ip: '10.0.0.2' });
  await api('PUT', `/sessions/${id}/links`, { a: 'A', b: 'B', latency_ms: 10, bandwidth_bps: 2_000_000, queue_bytes: 16_384 });
  await api('POST', `/sessions/${id}/listeners`, { host: 'B', port: 80 });
  await api('POST', `/sessions/${id}/connections`, { client: 'A', server: 'B', port: 80 });
  await api('POST', `/sessions/${id}/clock`, { action: 'run_until_idle' });
  await api('POST', `/sessions/${id}/connections/1/send`, { side: 'client', data_base64: Buffer.alloc(120 * 1024, 'p').toString('base64') });
  await api('POST', `/sessions/${id}/clock`, { action: 'run_until_idle' });

  // What each plot must draw, counted from the stored log.
  const events = await allEvents(id);
  const seqLen = (g) => g.len + (g.flags.includes('SYN') ? 1 : 0) + (g.flags.includes('FIN') ? 1 : 0);
  const count = (pred) => events.filter(pred).length;
  const sentByA = (e) => e.kind === 'segment_sent' && e.connection === 1 && e.segment.from === 'A' && seqLen(e.segment) > 0;
  const want = {
    sent: count((e) => sentByA(e) && !e.segment.retransmission),
    rtx: count((e) => sentByA(e) && e.segment.retransmission),
    lost: count((e) => e.kind === 'segment_dropped' && e.segment.from === 'A' && seqLen(e.segment) > 0),
    ack: count((e) => e.kind === 'segment_delivered' && e.connection === 1 && e.segment.from === 'B' && e.segment.flags.includes('ACK')),
    cwnd: count((e) => e.kind === 'congestion_changed' && e.connection === 1 && e.side === 'client'),
    joins: count((e) => e.kind === 'segment_queued' && e.segment.from === 'A'),
    drops: count((e) => e.kind === 'segment_dropped' && e.reason === 'queue_full' && e.segment.from === 'A'),
  };
  assert.ok(want.sent > 80 && want.rtx > 0 && want.lost > 0 && want.drops > 0 && want.cwnd > 5 && want.joins > 20, JSON.stringify(want));
  const last = events[events.length - 1].seq;

  await page.goto(`${base}/#/sessions/${id}`);
  await page.waitForFunction((n) => document.querySelector('[data-testid=timeline-position]').textContent.startsWith(`event ${n} / ${n}`), last, { timeout: 30_000 });
  await tid('tab-plots').click();
  await tid('plot-conn').selectOption('1');
  await tid('plot-side').selectOption('client');
  /** The points a series draws: its data-points, checked against the move-tos of its path. */
  const points = (plot, series) => page.$eval(`[data-testid=${plot}] [data-series=${series}]`, (p) => {
    const moves = (p.getAttribute('d').match(/M/g) || []).length;
    return moves === Number(p.dataset.points) ? moves : `data-points ${p.dataset.points} but ${moves} move-tos`;
  });
  await page.waitForFunction((n) => document.querySelector('[data-testid=plot-cwnd] [data-series=cwnd]')?.dataset.points === String(n), want.cwnd);
  const got = {
    sent: await points('plot-tseq', 'sent'),
    rtx: await points('plot-tseq', 'rtx'),
    lost: await points('plot-tseq', 'lost'),
    ack: await points('plot-tseq', 'ack'),
    cwnd: await points('plot-cwnd', 'cwnd'),
    joins: await points('plot-queue-chart', 'joins'),
    drops: await points('plot-queue-chart', 'drops'),
  };
  assert.deepEqual(got, want);
  // The flight size has a point per segment A sent and per ACK it received;
  // ssthresh one per congestion change (none drawn while it is unset).
  assert.equal(await points('plot-tseq', 'rwnd'), want.ack);
  assert.ok(Number(await points('plot-cwnd', 'flight')) >= want.sent + want.rtx);
  assert.equal(await tid('plot-queue').inputValue(), 'A→B');
  await shot('12-plots');

  // A click in the window plot moves the cursor to that point's event: the
  // ladder draws a cursor there, and every plot draws only up to it.
  const box = await page.locator('[data-testid=plot-cwnd] svg').boundingBox();
  await page.mouse.click(box.x + box.width * 0.4, box.y + box.height / 2);
  await page.waitForSelector('.cursor-line', { state: 'attached' });
  const at = Number(/^event (\d+) \//.exec(await tid('timeline-position').textContent())[1]);
  assert.ok(at > 0 && at < last, `cursor at ${at} of ${last}`);
  const clicked = events.find((e) => e.seq === at);
  assert.ok(['congestion_changed', 'segment_sent', 'segment_delivered'].includes(clicked.kind), clicked.kind);
  await page.waitForSelector('[data-testid=plot-cwnd] [data-testid=plot-cursor]', { state: 'attached' });
  const cwndBy = count((e) => e.seq <= at && e.kind === 'congestion_changed' && e.connection === 1 && e.side === 'client');
  await page.waitForFunction((n) => document.querySelector('[data-testid=plot-cwnd] [data-series=cwnd]').dataset.points === String(n), cwndBy);
  assert.ok(cwndBy < want.cwnd, `${cwndBy} of ${want.cwnd} window changes by event ${at}`);
  await shot('13-plots-cursor');
  await tid('timeline-live').click();
  await page.waitForFunction((n) => document.querySelector('[data-testid=plot-cwnd] [data-series=cwnd]').dataset.points === String(n), want.cwnd);
});
