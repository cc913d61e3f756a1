// User journeys through energaize_ui (3111ff7, built unchanged) in Debian's chromium driven by
// playwright-core, against our API: cross-origin through energaize_serve.py's relay (as upstream
// deploys it) or behind its same-origin proxy (--mode proxy: what works beyond CORS).
//
// A journey passes only on what a person sees: texts, rows, toasts, a file downloaded, a chart
// drawn. An error toast or an uncaught page error (a React crash) fails the journey it happens
// in. Each journey records the API requests the page sent and their answers (a blocked CORS
// request shows as "failed"), the console errors, and its start/end time (energaize_fixture.py
// matches the relay's recording, preflights included, to journeys by time). Every wait is bounded.
// Journeys marked `uiBlocked` cannot work whatever the API answers (the UI's own dead routes and
// hard-coded addresses); they run all the same and are counted apart.
//
// usage: node energaize_journeys.mjs --ui http://127.0.0.1:PORT --mode cross|proxy|proxy-hosts --state STATE_DIR [--api http://127.0.0.1:PORT]
//        [--out verdicts.jsonl] [--only substr]
// --api: our API, for the few steps a person does outside the UI (a script's POST /deploy/bundles/from-job).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { journeys, USERS } from './energaize_journey_defs.mjs';

const CACHE = process.env.OPEVA_CLIENTS_CACHE || '/var/cache/opeva/clients';
const require = createRequire(path.join(CACHE, 'package.json'));
const { chromium } = require('playwright-core');

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const UI = args.ui.replace(/\/$/, '');
const MODE = args.mode || 'cross';
const STATE = args.state;
const shots = path.join(STATE, `energaize-shots-${MODE}`);
fs.mkdirSync(shots, { recursive: true });
const prepared = JSON.parse(fs.readFileSync(path.join(STATE, 'prepared.json'), 'utf8'));

/** The API path of a request URL, or null for the UI's own files and foreign hosts. */
function apiPath(url) {
  const u = new URL(url);
  if (!['127.0.0.1', 'localhost'].includes(u.hostname)) return null;
  if (MODE.startsWith('proxy')) return u.pathname.startsWith('/__opeva_api/') ? u.pathname.slice('/__opeva_api'.length) + u.search : null;
  return u.origin !== UI ? u.pathname + u.search : null;
}

/** Field names and JSON types of a request body, never its values (multipart: the part names). */
function bodyShape(request, ctype) {
  const data = request.postData();
  if (!data) return null;
  if (ctype.startsWith('multipart/form-data')) return { multipart: [...new Set([...data.matchAll(/name="([^"]+)"/g)].map((m) => m[1]))].sort() };
  try { return shape(JSON.parse(data)); } catch { return `${data.length} bytes ${ctype || 'no content-type'}`; }
}
function shape(v) {
  if (Array.isArray(v)) return v.length ? [shape(v[0])] : [];
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]));
  return v === null ? 'null' : typeof v === 'number' ? 'number' : typeof v === 'boolean' ? 'bool' : typeof v === 'string' ? 'string' : typeof v;
}

function watch(page, log) {
  page.on('pageerror', (e) => log.crash.push(String(e.message || e).split('\n')[0].slice(0, 200)));
  page.on('console', (m) => {
    const t = m.text();
    if (m.type() === 'error' && !t.includes('ERR_PROXY_CONNECTION_FAILED')) log.console.push(t.split('\n')[0].slice(0, 200));
  });
  page.on('requestfailed', (r) => {
    const p = apiPath(r.url());
    if (p && r.failure()?.errorText !== 'net::ERR_ABORTED') log.requests.push(`${r.method()} ${p} failed: ${r.failure()?.errorText}`);
    if (p) log.seen.push({ method: r.method(), path: p, status: 'failed', t: Date.now() });
  });
  page.on('response', async (r) => {
    const p = apiPath(r.url());
    if (!p) return;
    const q = r.request();
    const ctype = (q.headers()['content-type'] || '');
    log.seen.push({ method: q.method(), path: p, status: r.status(), t: Date.now(), content_type: ctype.split(';')[0], body: bodyShape(q, ctype),
      answer_type: (r.headers()['content-type'] || '').split(';')[0] });
    if (r.status() < 400) return;
    let body = '';
    try { body = (await Promise.race([r.text(), new Promise((res) => setTimeout(() => res(''), 2000))])).replace(/\s+/g, ' ').slice(0, 140); } catch { /* body gone */ }
    log.requests.push(`${r.request().method()} ${p} -> ${r.status()} ${body}`);
  });
}

// Error toasts can vanish before a check looks: keep every one the page ever shows.
const TOAST_SPY = () => {
  window.__errorToasts = [];
  new MutationObserver(() => {
    document.querySelectorAll('.toast.toast-error:not([data-seen])').forEach((el) => {
      el.setAttribute('data-seen', '1');
      const text = el.innerText.replace(/\s+/g, ' ').trim().slice(0, 200);
      // "Job x status changed queued -> failed" is the UI's job-watch notice, not an API error:
      // the journey that waits for that job judges its status itself.
      if (!/status changed/.test(text)) window.__errorToasts.push(text);
    });
  }).observe(document, { childList: true, subtree: true });
};

const failed = new Set();

async function runOne(session, j) {
  let page;
  try {
    page = await session.contexts[j.user || 'manager'].newPage();
  } catch (e) {
    // Chromium went away (it happens under memory pressure on a shared machine): start it again.
    console.log(`      (browser restarted: ${String(e.message).split('\n')[0]})`);
    await session.restart();
    page = await session.contexts[j.user || 'manager'].newPage();
  }
  const log = { crash: [], console: [], requests: [], seen: [] };
  watch(page, log);
  const crashed = new Promise((_, rej) => page.on('pageerror', (e) => rej(new Error(`page crashed (uncaught ${String(e.message || e).split('\n')[0].slice(0, 160)})`))));
  crashed.catch(() => {});
  const started = Date.now();
  let error = null;
  try {
    const blocker = (j.needs || []).find((n) => failed.has(n));
    if (blocker) throw new Error(`not run: needs "${blocker}", which failed`);
    let timer;
    await Promise.race([
      j.run(page, { UI, API: (args.api || '').replace(/\/$/, ''), MODE, prepared, state: STATE, tag: args.tag || { cross: 'x', proxy: 'p', 'proxy-hosts': 'h' }[MODE] || 'z' }),
      crashed,
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`journey timed out after ${j.timeout || 60} s`)), (j.timeout || 60) * 1000); }),
    ]).finally(() => clearTimeout(timer));
    if (log.crash.length) error = new Error(`page crashed (uncaught ${log.crash[0]})`);
    const toasts = await page.evaluate(() => window.__errorToasts || []).catch(() => []);
    if (!error && toasts.length && !j.allowErrorToast) error = new Error(`error toast: ${toasts[0]}`);
  } catch (e) {
    error = e;
  }
  if (error) {
    try { await page.screenshot({ path: path.join(shots, j.name.replace(/[^a-z0-9]+/gi, '_') + '.png') }); } catch { /* page gone */ }
  }
  await page.close().catch(() => {});
  return {
    name: j.name, user: j.user || 'manager', ui_blocked: j.uiBlocked || '', ok: !error, started, ended: Date.now(),
    seconds: Math.round((Date.now() - started) / 100) / 10,
    reason: error ? String(error.message || error).split('\n')[0].slice(0, 260) : '',
    crash: [...new Set(log.crash)], console: [...new Set(log.console)].slice(0, 4), requests: [...new Set(log.requests)].slice(0, 6),
    seen: log.seen,
  };
}

async function loggedIn(browser, user) {
  const context = await browser.newContext({ baseURL: UI, acceptDownloads: true, timezoneId: 'UTC', viewport: { width: 1500, height: 1000 } });
  await context.addInitScript(TOAST_SPY);
  // The UI's own (mock) login form, once per user, as a person signs in; later pages reuse the session.
  const page = await context.newPage();
  await page.goto('/login');
  await page.getByPlaceholder('you@energaize.io').fill(user.email);
  await page.getByPlaceholder('Password').fill(user.password);
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: 15000 }).catch(() => {});
  await page.close();
  return context;
}

async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
      // Nothing leaves this machine: every non-loopback request (the UI's hard-coded
      // 193.136.62.78 services, fonts, map tiles) goes to a closed proxy port and fails at once;
      // loopback bypasses proxies, so the UI and the API are reached directly, unintercepted.
      '--proxy-server=http://127.0.0.1:9', '--proxy-bypass-list=127.0.0.1;localhost'],
  });
  const contexts = { manager: await loggedIn(browser, USERS.manager), community: await loggedIn(browser, USERS.community) };
  return { browser, contexts };
}

async function main() {
  const session = await launchBrowser();
  session.restart = async () => {
    await session.browser.close().catch(() => {});
    Object.assign(session, await launchBrowser());
  };
  const results = [];
  for (const j of journeys) {
    if (args.only && !new RegExp(args.only).test(j.name)) continue;
    const r = await runOne(session, j);
    results.push(r);
    if (!r.ok) failed.add(r.name);
    console.log(`${r.ok ? 'PASS' : 'FAIL'} ${r.name} (${r.seconds} s)${r.ok ? '' : ' - ' + r.reason}${r.ui_blocked && !r.ok ? ' [UI: ' + r.ui_blocked + ']' : ''}`);
    if (!r.ok) for (const x of [...r.requests, ...r.console].slice(0, 5)) console.log(`      ${x}`);
  }
  await session.browser.close().catch(() => {});
  const blocked = results.filter((r) => r.ui_blocked);
  const verdict = {
    client: `energaize-${MODE}`, passed: results.filter((r) => r.ok).length, total: results.length,
    ui_blocked: `${blocked.filter((r) => !r.ok).length}/${blocked.length} fail`,
    failures: results.filter((r) => !r.ok).map((r) => `${r.ui_blocked ? '[UI cannot: ' + r.ui_blocked + '] ' : ''}${r.name}: ${r.reason}`
      + `${r.requests.length ? ' | requests: ' + r.requests.slice(0, 3).join('; ') : ''}${r.console.length ? ' | console: ' + r.console[0] : ''}`),
  };
  fs.writeFileSync(path.join(STATE, `energaize-results-${MODE}.json`), JSON.stringify(results, null, 1));
  if (args.out) fs.appendFileSync(args.out, JSON.stringify(verdict) + '\n');
  console.log(`energaize-${MODE}: ${verdict.passed}/${verdict.total} (UI-blocked journeys: ${verdict.ui_blocked})`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
