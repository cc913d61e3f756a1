// User journeys through the real OPEVA UI (ai-manager-ui), in Debian's chromium driven by
// playwright-core, against our API behind ui_serve.py.
//
// A journey passes only on what a person sees: texts, badges, modals, toasts, a file
// downloaded, a chart drawn. An uncaught page error (a React crash) fails the journey it
// happens in. Console errors and failed/4xx/5xx backend requests are recorded with each
// journey, as the likely cause. Every wait is bounded.
//
// usage: node ui_journeys.mjs --ui http://127.0.0.1:PORT --state STATE_DIR [--out verdicts.jsonl] [--only substr]
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { journeys } from './ui_journey_defs.mjs';

const CACHE = process.env.OPEVA_CLIENTS_CACHE || '/var/cache/opeva/clients';
const require = createRequire(path.join(CACHE, 'package.json'));
const { chromium } = require('playwright-core');

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const UI = args.ui;
const STATE = args.state;
const shots = path.join(STATE, 'ui-shots');
fs.mkdirSync(shots, { recursive: true });
const prepared = JSON.parse(fs.readFileSync(path.join(STATE, 'prepared.json'), 'utf8'));

function watch(page, log) {
  page.on('pageerror', (e) => log.crash.push(String(e.message || e).split('\n')[0].slice(0, 200)));
  // ERR_BLOCKED_BY_CLIENT: the external fonts/maps we block on purpose (no network here).
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('ERR_BLOCKED_BY_CLIENT')) log.console.push(m.text().split('\n')[0].slice(0, 200)); });
  page.on('requestfailed', (r) => {
    const u = new URL(r.url());
    // ERR_ABORTED: a fetch cancelled by our own reload/navigation, not an answer.
    if (u.hostname === '127.0.0.1' && r.failure()?.errorText !== 'net::ERR_ABORTED') log.requests.push(`${r.method()} ${u.pathname} failed: ${r.failure()?.errorText}`);
  });
  page.on('response', async (r) => {
    const u = new URL(r.url());
    const backend = u.hostname === '127.0.0.1' && (u.pathname.startsWith('/admin/') || u.pathname.startsWith('/real-time-data'));
    if (!backend) return;
    const json = (r.headers()['content-type'] || '').includes('json');
    if (r.status() < 400 && !json) return;
    let body = '';
    try { body = (await Promise.race([r.text(), new Promise((res) => setTimeout(() => res(''), 2000))])).replace(/\s+/g, ' ').slice(0, 140); } catch { /* body gone */ }
    const line = `${r.request().method()} ${u.pathname.replace(/^\/admin/, '')} -> ${r.status()} ${body}`;
    (r.status() >= 400 ? log.requests : log.calls).push(r.status() >= 400 ? line : line.slice(0, 110));
  });
}

const failed = new Set();

async function runOne(context, j) {
  const page = await context.newPage();
  // Only this machine: the bundle also asks Google Fonts/Maps and Mapbox, which a
  // sandbox cannot (and must not) reach.
  await page.route('**/*', (route) => {
    const u = new URL(route.request().url());
    return ['127.0.0.1', 'localhost'].includes(u.hostname) || u.protocol === 'data:' || u.protocol === 'blob:' ? route.continue() : route.abort('blockedbyclient');
  });
  const log = { crash: [], console: [], requests: [], calls: [] };
  watch(page, log);
  // A React crash unmounts the whole app: fail at once instead of waiting for each locator.
  const crashed = new Promise((_, rej) => page.on('pageerror', (e) => rej(new Error(`page crashed (uncaught ${String(e.message || e).split('\n')[0].slice(0, 160)})`))));
  crashed.catch(() => {});
  const started = Date.now();
  let error = null;
  try {
    const blocker = (j.needs || []).find((n) => failed.has(n));
    if (blocker) throw new Error(`not run: needs "${blocker}", which failed`);
    let timer;
    await Promise.race([
      j.run(page, { UI, prepared, state: STATE }),
      crashed,
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`journey timed out after ${j.timeout || 60} s`)), (j.timeout || 60) * 1000); }),
    ]).finally(() => clearTimeout(timer));
    if (log.crash.length) error = new Error(`page crashed (uncaught ${log.crash[0].split('\n')[0]})`);
  } catch (e) {
    error = e;
  }
  if (error) {
    try { await page.screenshot({ path: path.join(shots, j.name.replace(/[^a-z0-9]+/gi, '_') + '.png') }); } catch { /* page gone */ }
  }
  await page.close().catch(() => {});
  return {
    name: j.name, ok: !error, seconds: Math.round((Date.now() - started) / 100) / 10,
    reason: error ? String(error.message || error).split('\n')[0].slice(0, 220) : '',
    crash: [...new Set(log.crash)], calls: [...new Set(log.calls)].slice(-4), console: [...new Set(log.console)].slice(0, 4), requests: [...new Set(log.requests)].slice(0, 6),
  };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ baseURL: UI, acceptDownloads: true, timezoneId: 'UTC', viewport: { width: 1400, height: 1000 } });
  const results = [];
  for (const j of journeys) {
    if (args.only && !j.name.includes(args.only)) continue;
    const r = await runOne(context, j);
    results.push(r);
    if (!r.ok) failed.add(r.name);
    console.log(`${r.ok ? 'PASS' : 'FAIL'} ${r.name} (${r.seconds} s)${r.ok ? '' : ' - ' + r.reason}`);
    if (!r.ok) for (const x of [...r.requests, ...(r.crash.length ? r.calls : []), ...r.console].slice(0, 6)) console.log(`      ${x}`);
  }
  await browser.close();
  const verdict = {
    client: 'ui-journeys', passed: results.filter((r) => r.ok).length, total: results.length,
    failures: results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.reason}${r.requests.length ? ' | requests: ' + r.requests.slice(0, 3).join('; ') : ''}`
      + `${r.crash.length && r.calls.length ? ' | last answers before the crash: ' + r.calls.slice(-2).join('; ') : ''}${r.console.length ? ' | console: ' + r.console[0] : ''}`),
  };
  fs.writeFileSync(path.join(STATE, 'ui-results.json'), JSON.stringify(results, null, 1));
  if (args.out) fs.appendFileSync(args.out, JSON.stringify(verdict) + '\n');
  console.log(`ui-journeys: ${verdict.passed}/${verdict.total}`);
}

// Exit at once: a journey left mid-way (timed out, crashed) may still hold timers.
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
