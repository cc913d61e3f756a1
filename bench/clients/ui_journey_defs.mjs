// The user journeys, in the order they run (later ones use what earlier ones made).
// Written from the UI's src/pages/* and cypress/e2e/*.cy.js (ai-manager-ui d13b64b).
// Each asserts what a person sees; see ui_journeys.mjs for how they are run and judged.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, seconds, what) {
  const end = Date.now() + seconds * 1000;
  let last = null;
  while (Date.now() < end) {
    try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
    await sleep(700);
  }
  throw new Error(`${what} not seen within ${seconds} s${last ? ` (${String(last.message).split('\n')[0]})` : ''}`);
}

async function openPage(page, nav) {
  await page.goto('/');
  await page.locator('.sidebar .nav a.nav-link').filter({ hasText: new RegExp(`^\\s*${nav}\\s*$`) }).first().click();
  await page.locator('.main-panel .content').waitFor({ timeout: 15000 });
}

// "N Items Found", once the page's list request has answered (the spinner is gone).
async function itemsFound(page, seconds = 20) {
  return until(async () => {
    if (await page.locator('.content .spinner-border').count()) return null;
    const t = await page.locator('h4', { hasText: 'Items Found' }).first().textContent({ timeout: 1000 });
    return { n: parseInt(t, 10) };
  }, seconds, '"N Items Found" heading');
}

async function errorToasts(page) {
  return (await page.locator('.Toastify__toast--error').allTextContents()).map((t) => t.trim());
}

async function expectToast(page, text, seconds = 15) {
  await until(async () => {
    const errs = await errorToasts(page);
    if (errs.length) throw new Error(`error toast: ${errs[0]}`);
    return (await page.locator('.Toastify__toast', { hasText: text }).count()) > 0;
  }, seconds, `toast "${text}"`);
}

const card = (page, name) => page.locator('.content .card').filter({ has: page.locator('.card-header b', { hasText: name }) });

async function reloadUntil(page, nav, fn, seconds, what) {
  await openPage(page, nav);
  return until(async () => {
    await page.reload();
    await itemsFound(page, 15);
    return fn();
  }, seconds, what);
}

async function jobBadge(page, name) {
  const c = card(page, name);
  if (!(await c.count())) return null;
  return (await c.first().locator('.badge').textContent()).trim();
}

async function waitJob(page, name, want, seconds) {
  let seen = null;
  try {
    return await reloadUntil(page, 'Run Simulations', async () => {
      seen = await jobBadge(page, name);
      if (seen && !want.includes(seen) && ['failed', 'not_found'].includes(seen)) throw new Error(`job ${name} is ${seen}`);
      return seen && want.includes(seen) ? seen : null;
    }, seconds, `job ${name} with status ${want.join('/')}`);
  } catch (e) {
    throw new Error(`${e.message}; last badge: ${seen ?? 'no card'}`);
  }
}

async function launch(page, file, host = 'local') {
  await openPage(page, 'Run Simulations');
  await itemsFound(page);
  await page.getByRole('button', { name: 'Run Simulation' }).click();
  await page.locator('select[aria-label="File Name"]').selectOption(file, { timeout: 10000 });
  await page.locator('select[aria-label="Target Container"]').selectOption(host, { timeout: 10000 });
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await expectToast(page, 'Simulation started successfully!');
}

async function pageHasContent(page) {
  const text = (await page.locator('.main-panel .content').innerText()).trim();
  const kids = await page.locator('.main-panel .content > *').count();
  if (!kids) throw new Error('blank page: .content has no children');
  return text;
}

const localInput = (iso, plusHours) => new Date(Date.parse(iso) + plusHours * 3600e3).toISOString().slice(0, 16);

export const journeys = [
  { name: 'shell: / opens REC Dashboard with the 8-page sidebar', run: async (page) => {
    await page.goto('/');
    await until(async () => new URL(page.url()).pathname === '/admin/rec-dashboard', 10, 'redirect to /admin/rec-dashboard');
    const links = (await page.locator('.sidebar .nav a.nav-link').allTextContents()).map((t) => t.trim());
    for (const l of ['REC Dashboard', 'KPIs', 'Map', 'Run Simulations', 'Datasets', 'Experiment Configs', 'Use Cases', 'Schema'])
      if (!links.includes(l)) throw new Error(`sidebar lacks ${l} (has ${links.join(', ')})`);
  } },
  ...['REC Dashboard', 'KPIs', 'Map'].map((nav) => ({ name: `open: ${nav} renders`, run: async (page) => {
    await openPage(page, nav);
    await sleep(1500);
    await pageHasContent(page);
  } })),

  // Experiment configs
  { name: 'configs: list shows the prepared configs', run: async (page) => {
    await openPage(page, 'Experiment Configs');
    const { n } = await itemsFound(page);
    const names = await page.locator('.card-header a b').allInnerTexts();
    for (const f of ['ui_quick.yaml', 'ui_long.yaml']) if (!names.includes(f)) throw new Error(`${n} Items Found; ${f} not listed (${names.join(', ') || 'none'})`);
    const errs = await errorToasts(page);
    if (errs.length) throw new Error(`error toast: ${errs[0]}`);
  } },
  { name: 'configs: view a config in the details modal', run: async (page) => {
    await openPage(page, 'Experiment Configs');
    await itemsFound(page);
    await page.locator('.card-header a', { hasText: /^\s*ui_quick\.yaml\s*$/ }).click();
    const modal = page.locator('.modal-content', { hasText: 'ui_quick.yaml details' });
    await until(async () => (await modal.count()) > 0 || (await errorToasts(page)).length, 10, 'details modal').then(async () => {
      const errs = await errorToasts(page);
      if (errs.length) throw new Error(`error toast: ${errs[0]}`);
    });
    const text = await modal.locator('textarea').inputValue();
    if (!text.includes('ui-quick')) throw new Error(`modal shows ${text.slice(0, 80)}`);
  } },
  { name: 'configs: create a config from the form', run: async (page) => {
    await openPage(page, 'Experiment Configs');
    await page.getByRole('button', { name: 'New Config' }).click();
    await page.locator('input[name="name"]').fill('ui_created.yaml');
    await page.locator('textarea').fill('{"experiment": {"name": "ui-created", "run_name": "r1"}, "algorithm": {"name": "rule_based"}, "simulation": {"buildings": 2, "days": 3}}');
    await page.getByRole('button', { name: 'Save Config' }).click();
    await expectToast(page, 'Config created successfully!');
    await page.reload();
    await itemsFound(page);
    if (!(await page.locator('.card-header a b', { hasText: 'ui_created.yaml' }).count())) throw new Error('ui_created.yaml not listed after reload');
  } },

  // Run Simulations
  { name: 'run: launch form offers the configs and hosts', run: async (page) => {
    await openPage(page, 'Run Simulations');
    await itemsFound(page);
    await page.getByRole('button', { name: 'Run Simulation' }).click();
    const files = await page.locator('select[aria-label="File Name"] option').allInnerTexts();
    if (!files.includes('ui_quick.yaml')) throw new Error(`File Name options: ${files.join(', ') || 'none'}`);
    const hosts = await page.locator('select[aria-label="Target Container"] option').allInnerTexts();
    if (!hosts.includes('local')) throw new Error(`Target Container options: ${JSON.stringify(hosts)}`);
  } },
  { name: 'run: launch ui_quick.yaml on local, its card appears', timeout: 90, run: async (page) => {
    await launch(page, 'ui_quick.yaml');
    await reloadUntil(page, 'Run Simulations', async () => (await card(page, 'ui-quick-r1').count()) > 0, 60, 'card ui-quick-r1');
  } },
  { name: 'run: the job reaches finished with progress 100%', needs: ['run: launch ui_quick.yaml on local, its card appears'], timeout: 420, run: async (page) => {
    await waitJob(page, 'ui-quick-r1', ['finished'], 400);
    const pct = await until(async () => {
      const t = (await card(page, 'ui-quick-r1').first().locator('.progress-bar').textContent()).trim();
      return t === '100%' ? t : null;
    }, 10, 'progress bar 100%').catch(async (e) => { throw new Error(`${e.message}; bar shows ${await card(page, 'ui-quick-r1').first().locator('.progress-bar').textContent()}`); });
    return pct;
  } },
  { name: 'run: See Results shows the result', needs: ['run: launch ui_quick.yaml on local, its card appears'], timeout: 300, run: async (page) => {
    await waitJob(page, 'ui-quick-r1', ['finished'], 280);
    await openPage(page, 'Run Simulations');
    await itemsFound(page);
    await card(page, 'ui-quick-r1').first().getByRole('button', { name: 'See Results' }).click();
    const modal = page.locator('.modal-content', { hasText: 'ui-quick-r1 Results' });
    await modal.waitFor({ timeout: 10000 });
    const text = await modal.locator('.modal-body').innerText();
    if (!/Status:\s*completed/i.test(text)) throw new Error(`results modal shows: ${text.replace(/\s+/g, ' ').slice(0, 120) || '(empty)'}`);
  } },
  { name: 'run: a config made in the UI runs to finished', needs: ['configs: create a config from the form'], timeout: 420, run: async (page) => {
    await launch(page, 'ui_created.yaml');
    await waitJob(page, 'ui-created-r1', ['finished'], 400);
  } },
  { name: 'configs: delete a config', needs: ['configs: create a config from the form'], run: async (page) => {
    await openPage(page, 'Experiment Configs');
    await itemsFound(page);
    const c = page.locator('.card').filter({ hasText: 'ui_created.yaml' });
    await c.locator('i.fa-trash').click();
    await page.locator('.modal-content', { hasText: 'Confirm Delete' }).getByRole('button', { name: 'Delete' }).click();
    await expectToast(page, 'Config deleted successfully!');
    await page.reload();
    await itemsFound(page);
    if (await page.locator('.card-header a b', { hasText: 'ui_created.yaml' }).count()) throw new Error('ui_created.yaml still listed after reload');
  } },
  { name: 'run: a long job shows running with progress > 0%', timeout: 420, run: async (page) => {
    await launch(page, 'ui_long.yaml');
    await waitJob(page, 'ui-long-r1', ['running'], 300);
    await reloadUntil(page, 'Run Simulations', async () => {
      const t = (await card(page, 'ui-long-r1').first().locator('.progress-bar').textContent()).trim();
      return parseFloat(t) > 0 ? t : null;
    }, 45, 'progress > 0% on ui-long-r1');
  } },
  { name: 'run: View Logs of the running job shows both logs', needs: ['run: a long job shows running with progress > 0%'], timeout: 60, run: async (page) => {
    await openPage(page, 'Run Simulations');
    await itemsFound(page);
    await card(page, 'ui-long-r1').first().getByRole('button', { name: 'View Logs' }).click();
    const modal = page.locator('.modal-content', { hasText: 'ui-long-r1 Logs' });
    await modal.waitFor({ timeout: 10000 });
    const areas = modal.locator('textarea');
    const got = await until(async () => {
      const [a, b] = [await areas.nth(0).inputValue(), await areas.nth(1).inputValue()];
      return a.trim() && b.trim() ? [a, b] : null;
    }, 30, 'text in both Job Logs and File Logs').catch(async (e) => {
      const [a, b] = [await areas.nth(0).inputValue(), await areas.nth(1).inputValue()];
      throw new Error(`${e.message}: Job Logs ${a.length} chars, File Logs ${b.length} chars`);
    });
    return got;
  } },
  { name: 'run: stop the running job, it shows stopped', needs: ['run: a long job shows running with progress > 0%'], timeout: 240, run: async (page) => {
    await openPage(page, 'Run Simulations');
    await itemsFound(page);
    const c = card(page, 'ui-long-r1').first();
    if (!(await c.locator('i.fa-pause').count())) throw new Error(`no stop (pause) icon; badge: ${await jobBadge(page, 'ui-long-r1')}`);
    await c.locator('i.fa-pause').click();
    await page.locator('.modal-content', { hasText: 'Confirm Stop' }).getByRole('button', { name: 'Stop', exact: true }).click();
    await expectToast(page, 'Job stopped successfully!');
    await waitJob(page, 'ui-long-r1', ['stopped'], 200);
  } },
  { name: 'run: delete a finished job', needs: ['run: launch ui_quick.yaml on local, its card appears'], timeout: 300, run: async (page) => {
    await waitJob(page, 'ui-quick-r1', ['finished'], 280);
    await openPage(page, 'Run Simulations');
    await itemsFound(page);
    await card(page, 'ui-quick-r1').first().locator('i.fa-trash').click();
    await page.locator('.modal-content', { hasText: 'Confirm Delete' }).getByRole('button', { name: 'Delete' }).click();
    await expectToast(page, 'Job deleted successfully!');
    await sleep(1000);
    await page.reload();
    await itemsFound(page);
    if (await card(page, 'ui-quick-r1').count()) throw new Error('ui-quick-r1 still listed after reload');
  } },
  { name: 'run: job list renders names and statuses, no error toast', run: async (page) => {
    await openPage(page, 'Run Simulations');
    const { n } = await itemsFound(page);
    if (n < 1) throw new Error('0 Items Found');
    const names = (await page.locator('.content .card .card-header b').allInnerTexts()).map((t) => t.trim());
    const badges = (await page.locator('.content .card .badge').allInnerTexts()).map((t) => t.trim());
    if (names.some((t) => !t) || badges.some((t) => !t)) throw new Error(`cards without a name or status: ${JSON.stringify(names)} ${JSON.stringify(badges)}`);
    await sleep(3000);
    const errs = await errorToasts(page);
    if (errs.length) throw new Error(`${errs.length} error toast(s), e.g. "${errs[0]}"`);
  } },

  // Datasets
  { name: 'datasets: list shows the prepared datasets', run: async (page) => {
    await openPage(page, 'Datasets');
    const { n } = await itemsFound(page);
    const names = await page.locator('.card-header b').allInnerTexts();
    for (const d of ['ui-dataset-a', 'ui-dataset-b']) if (!names.includes(d)) throw new Error(`${n} Items Found; ${d} not listed (${names.join(', ') || 'none'})`);
  } },
  { name: 'datasets: download a dataset as a zip', run: async (page) => {
    await openPage(page, 'Datasets');
    await itemsFound(page);
    const [dl] = await Promise.all([
      page.waitForEvent('download', { timeout: 20000 }),
      page.locator('.card').filter({ has: page.locator('.card-header b', { hasText: /^\s*ui-dataset-a\s*$/ }) }).locator('i.fa-download').click(),
    ]);
    const file = await dl.path();
    const fs = await import('node:fs');
    const head = fs.readFileSync(file).subarray(0, 2).toString();
    if (head !== 'PK') throw new Error(`downloaded ${dl.suggestedFilename()} is not a zip`);
    if (!dl.suggestedFilename().endsWith('.zip')) throw new Error(`downloaded as ${dl.suggestedFilename()}`);
  } },
  { name: 'datasets: delete a dataset', run: async (page) => {
    await openPage(page, 'Datasets');
    await itemsFound(page);
    await page.locator('.card').filter({ has: page.locator('.card-header b', { hasText: /^\s*ui-dataset-b\s*$/ }) }).locator('i.fa-trash').click();
    await page.locator('.modal-content', { hasText: 'Confirm Delete' }).getByRole('button', { name: 'Delete' }).click();
    await expectToast(page, 'Dataset deleted successfully!');
    await page.reload();
    await itemsFound(page);
    if (await page.locator('.card-header b', { hasText: /^\s*ui-dataset-b\s*$/ }).count()) throw new Error('ui-dataset-b still listed after reload');
  } },
  { name: 'datasets: build one from living_lab with the form', timeout: 420, run: async (page, { prepared }) => {
    await openPage(page, 'Datasets');
    await itemsFound(page);
    await page.getByRole('button', { name: 'New Dataset' }).click();
    const sites = await page.locator('select[aria-label="Dataset Site"] option').allInnerTexts();
    if (!sites.includes('living_lab')) throw new Error(`Site options: ${JSON.stringify(sites)}`);
    await page.locator('input[name="name"]').fill('ui-built');
    await page.locator('input[name="description"]').fill('built from the UI');
    await page.locator('select[aria-label="Dataset Site"]').selectOption('living_lab');
    await page.locator('input[name="from"]').fill(localInput(prepared.recent_from, 24));
    await page.locator('input[name="until"]').fill(localInput(prepared.recent_from, 48));
    await page.getByRole('button', { name: 'Save Dataset' }).click();
    await expectToast(page, 'Dataset created successfully!');
    await reloadUntil(page, 'Datasets', async () => (await page.locator('.card-header b', { hasText: 'ui-built' }).count()) > 0, 400, 'dataset ui-built in the list');
    const desc = await page.locator('.card').filter({ hasText: 'ui-built' }).locator('.card-body').innerText();
    if (!desc.includes('built from the UI')) throw new Error(`description shows "${desc.trim()}"`);
  } },

  // Schema
  { name: 'schema: list shows the sites', run: async (page) => {
    await openPage(page, 'Schema');
    const { n } = await itemsFound(page);
    const names = await page.locator('.card-header a b').allInnerTexts();
    for (const s of ['living_lab', 'i-charging_headquarters']) if (!names.includes(s)) throw new Error(`${n} Items Found; ${s} not listed (${names.join(', ') || 'none'})`);
  } },
  { name: 'schema: view a site schema', run: async (page) => {
    await openPage(page, 'Schema');
    await itemsFound(page);
    await page.locator('.card-header a', { hasText: /^\s*living_lab\s*$/ }).click();
    const modal = page.locator('.modal-content', { hasText: 'living_lab schema details' });
    await until(async () => (await modal.count()) || (await errorToasts(page)).length, 10, 'schema modal');
    const errs = await errorToasts(page);
    if (errs.length) throw new Error(`error toast: ${errs[0]}`);
    const text = await modal.locator('textarea').inputValue();
    if (!text.includes('R-H-01')) throw new Error(`modal shows ${text.slice(0, 100)}`);
  } },
  { name: 'schema: create a site with one building in the canvas', timeout: 60, run: async (page) => {
    await openPage(page, 'Schema');
    await itemsFound(page);
    await page.getByRole('button', { name: 'New Schema' }).click();
    await page.locator('input[name="site_name"]').fill('ui_site');
    // HTML5 drag and drop from the palette to the canvas, as the browser fires it for a person
    // (Playwright's mouse-driven dragTo lands on whatever item the layout shift puts there).
    const dt = await page.evaluateHandle(() => new DataTransfer());
    await page.locator('div[draggable="true"]', { hasText: /^\s*Building\s*$/ }).dispatchEvent('dragstart', { dataTransfer: dt });
    const box = await page.locator('.react-flow__pane').boundingBox();
    await page.locator('.react-flow__pane').dispatchEvent('drop', { dataTransfer: dt, clientX: box.x + 300, clientY: box.y + 150 });
    await until(async () => (await page.locator('.react-flow__node', { hasText: 'Building_1' }).count()) > 0, 10, 'node Building_1 on the canvas');
    await page.getByRole('button', { name: 'Save Schema' }).click();
    await expectToast(page, 'Schema created successfully!');
    await page.reload();
    await itemsFound(page);
    if (!(await page.locator('.card-header a b', { hasText: 'ui_site' }).count())) throw new Error('ui_site not listed after reload');
  } },

  // Use cases (real-time data)
  { name: 'use cases: i-charging chargers draw a chart', run: async (page) => {
    await openPage(page, 'Use Cases');
    const hq = page.locator('.list-group-item', { hasText: 'ICharging Headquarters' });
    await until(async () => (await hq.count()) > 0, 20, 'ICharging Headquarters tree (data["i-charging headquarters"])');
    await hq.first().click();
    await page.locator('.list-group-item:visible', { hasText: 'Chargers' }).click();
    await page.locator('.list-group-item:visible', { hasText: 'CH-1' }).click({ timeout: 10000 });
    await page.locator('.recharts-surface').first().waitFor({ timeout: 10000 });
  } },
  { name: 'use cases: living lab building production chart', run: async (page) => {
    await openPage(page, 'Use Cases');
    const answer = page.waitForResponse((r) => r.url().includes('/real-time-data/living_lab'), { timeout: 20000 });
    await page.getByRole('tab', { name: 'Living Lab' }).click();
    const docs = (await (await answer).json())['building_R-H-01'] || [];
    const b = page.locator('.list-group-item', { hasText: 'building_R-H-01' });
    await until(async () => (await b.count()) > 0, 20, 'building_R-H-01 in the Living Lab tree').catch(async (e) => {
      const items = await page.locator('.list-group-item:visible').allInnerTexts();
      throw new Error(`${e.message}; tree shows: ${items.slice(0, 6).join(', ') || 'nothing'}`);
    });
    await b.first().click();
    await page.locator('.list-group-item:visible', { hasText: 'Production' }).first().click();
    await page.locator('.recharts-surface').first().waitFor({ timeout: 10000 });
    await sleep(1000);
    const bars = await page.locator('.recharts-bar-rectangle').count();
    if (!bars) {
      const [first, last] = [docs[0]?.timestamp, docs[docs.length - 1]?.timestamp];
      const order = first && last && Date.parse(first) > Date.parse(last) ? ' (the answer lists documents newest first; the chart takes its range from the first to the last document)' : '';
      throw new Error(`chart has no bars: ${docs.length} documents, first ${first}, last ${last}${order}`);
    }
  } },
];
