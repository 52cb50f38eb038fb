// Real VS Code end to end: code-server serves the workbench with the packaged msa-lsp extension
// installed, Debian's chromium (headless, driven by playwright-core) uses it like a person would.
// Checks, each recorded in the result JSON: activation, the server's diagnostic as a squiggle and in
// the Problems panel, the status bar item, cross-file rename (F2) saved to both files, and, when
// the spec asks for it, ghost-text inline completion accepted with Tab. Ends with a screenshot.
// Usage: node vscode_e2e.js SPEC.json   (spec: see tests/editors/test_vscode_e2e.py)
'use strict';
const fs = require('fs');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(require.resolve('playwright-core', { paths: [spec.nodeModules] }));
const result = { steps: [], timings: {} };
const t0 = Date.now();
const mark = (name) => { result.timings[name] = (Date.now() - t0) / 1000; result.steps.push(name); };
const save = () => fs.writeFileSync(spec.resultPath, JSON.stringify(result, null, 2));

function healthz(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

async function until(what, probe, timeoutMs = 30000) {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function openFile(page, name) {
  const editor = page.locator('.part.editor .monaco-editor .view-lines').first();
  if (await editor.count()) await editor.click(); // take focus back from a panel
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible' });
  await input.fill(name);
  await page.locator('.quick-input-list .monaco-list-row.focused', { hasText: path.basename(name) }).first().waitFor();
  await page.keyboard.press('Enter');
  await page.locator('.tabs-container .tab.active', { hasText: path.basename(name) }).waitFor();
  await page.locator('.monaco-editor .view-lines').first().waitFor();
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible' });
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor();
  await page.keyboard.press('Enter');
}

/** Editor text without ghost-text spans (a line's DOM holds both). */
async function editorLine(page, lineIndex) {
  return page.locator('.monaco-editor .view-lines .view-line').nth(lineIndex).evaluate((el) => {
    const clone = el.cloneNode(true);
    clone.querySelectorAll('.ghost-text-decoration, .ghost-text, .ghost-text-decoration-preview').forEach((g) => g.remove());
    return clone.textContent.replace(/\u00a0/g, ' ');
  });
}

async function main() {
  const server = spawn(spec.codeServer, [
    '--config', spec.config, '--auth', 'none', '--bind-addr', `127.0.0.1:${spec.port}`, '--disable-telemetry',
    '--disable-update-check', '--disable-workspace-trust', '--user-data-dir', spec.userData,
    '--extensions-dir', spec.extensionsDir,
  ], {
    detached: true, stdio: ['ignore', fs.openSync(spec.serverLog, 'w'), fs.openSync(spec.serverLog, 'a')],
    env: { ...process.env, MSA_VSCODE_ACTIVATION_MARKER: spec.marker },
  });
  let browser;
  try {
    await until('code-server /healthz', () => healthz(spec.port), 30000);
    mark('code-server up');
    browser = await chromium.launch({
      executablePath: spec.chromium, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(30000);
    await page.goto(`http://127.0.0.1:${spec.port}/?folder=${encodeURIComponent(spec.workspace)}`);
    await page.locator('.monaco-workbench').waitFor();
    await page.locator('.explorer-folders-view').waitFor();
    mark('workbench');

    // (1) activation and diagnostics
    await page.locator('.monaco-workbench').click();
    await openFile(page, spec.diagnosticsFile);
    result.activation = await until('the extension activation marker', () =>
      fs.existsSync(spec.marker) && fs.readFileSync(spec.marker, 'utf8'), 30000);
    mark('activated');
    await page.locator('.monaco-editor .squiggly-error').first().waitFor();
    mark('squiggle');
    await page.keyboard.press('Control+Shift+M');
    const markers = page.locator('.part.panel .monaco-list-row');
    result.problems = await until(`a Problems entry with ${spec.diagnosticMessage}`, async () => {
      result.problemsSeen = await markers.allTextContents();
      return result.problemsSeen.some((t) => t.includes(spec.diagnosticMessage)) && result.problemsSeen;
    });
    mark('problems panel');

    // (2) status bar item fed by msa/status
    const item = page.locator('.statusbar-item', { hasText: 'msa:' }).first();
    result.statusBar = await until('the msa status bar item with index ready', async () => {
      const text = (await item.count()) ? (await item.textContent()) : '';
      return spec.statusPattern && new RegExp(spec.statusPattern).test(text) && text;
    });
    mark('status bar');

    // (3) rename across files with F2, then save everything
    await openFile(page, spec.rename.file);
    await page.keyboard.press('Control+G'); // go to line:column (1-based)
    await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
    await page.keyboard.type(`${spec.rename.line + 1}:${spec.rename.column + 1}`);
    await page.keyboard.press('Enter');
    await page.keyboard.press('F2');
    const renameInput = page.locator('.rename-box input, .rename-box textarea').first();
    await renameInput.waitFor();
    await renameInput.fill(spec.rename.newName);
    await page.keyboard.press('Enter');
    await until('the rename in the editor', async () =>
      (await editorLine(page, spec.rename.line)).includes(spec.rename.newName));
    await runCommand(page, 'File: Save All');
    result.renamedFiles = await until('both renamed files saved', () => {
      const texts = spec.rename.expectIn.map((rel) => fs.readFileSync(path.join(spec.workspace, rel), 'utf8'));
      return texts.every((t) => t.includes(spec.rename.newName)) && Object.fromEntries(
        spec.rename.expectIn.map((rel, i) => [rel, texts[i]]));
    });
    mark('rename saved');

    // (4) inline completion: ghost text after typing, Tab accepts, saved to disk
    if (spec.inline) {
      await openFile(page, spec.inline.file);
      await page.locator('.monaco-editor .view-lines .view-line').last().click();
      await page.keyboard.press('Control+End');
      await page.keyboard.type(spec.inline.type, { delay: 40 });
      // the suggest popup (workspace symbols + the AI item) opens on words; with it open VS Code only
      // previews ghost text that extends the selected item, so close it as a user would, and go on typing
      const suggest = page.locator('.editor-widget.suggest-widget.visible');
      if (await suggest.count()) {
        await page.keyboard.press('Escape');
        await suggest.waitFor({ state: 'hidden' });
      }
      await page.keyboard.type(spec.inline.then, { delay: 40 });
      const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text').first();
      await ghost.waitFor({ timeout: spec.inline.timeoutMs });
      result.ghostText = await ghost.textContent();
      mark('ghost text');
      const before = fs.readFileSync(path.join(spec.workspace, spec.inline.file), 'utf8');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Control+S');
      result.inlineSaved = await until('the accepted completion saved', () => {
        const now = fs.readFileSync(path.join(spec.workspace, spec.inline.file), 'utf8');
        return now !== before && now;
      });
      mark('inline accepted');
    }
    await page.screenshot({ path: spec.screenshot });
    mark('screenshot');

    // (5) commands: the log channel carries the server's stderr; the toggle writes the user setting
    await runCommand(page, 'msa-lsp: Show server log');
    result.logLine = await until('the server log in the output channel', async () => {
      const raw = await page.locator('.part.panel .monaco-editor .view-lines').first().textContent().catch(() => '');
      const text = (raw || '').replace(/\u00a0/g, ' ');
      return /\[info\] lsp\.\w+: /.test(text || '') && text;
    });
    mark('log');
    // "Re-index workspace" is the extension's command forwarded to the server's msa.reindex (which the
    // server also lists in executeCommandProvider: the client must not register it a second time)
    const serverLog = () => {
      const logs = path.join(spec.userData, 'logs');
      return fs.readdirSync(logs).map((d) => path.join(logs, d, 'exthost1', 'msa-lsp.msa-lsp', 'msa-lsp.log'))
        .filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, 'utf8')).join('\n');
    };
    await runCommand(page, 'msa-lsp: Re-index workspace');
    result.indexRuns = await until('a second index run in the server log', () => {
      const runs = serverLog().match(/indexed \d+ files/g) || [];
      return runs.length >= 2 && runs;
    });
    result.notifications = await page.locator('.notifications-toasts .notification-toast').allTextContents();
    mark('reindex');
    // "Restart inference worker" -> msa.restartWorker: the status bar leaves "ready" and comes back
    const statusTexts = [];
    await runCommand(page, 'msa-lsp: Restart inference worker');
    await until('the status bar to show the worker restarting and then ready again', async () => {
      const text = await item.textContent();
      if (statusTexts[statusTexts.length - 1] !== text) statusTexts.push(text);
      return statusTexts.some((t) => /worker (starting|restarting)/.test(t)) && new RegExp(spec.statusPattern).test(text);
    }, 60000);
    result.restartStatus = statusTexts;
    mark('restart worker');
    const settingsPath = path.join(spec.userData, 'User', 'settings.json');
    await runCommand(page, 'msa-lsp: Toggle inline completion');
    result.toggledSettings = await until('msa.inlineCompletion.enable written to settings.json', () => {
      const text = fs.readFileSync(settingsPath, 'utf8');
      return /"msa\.inlineCompletion\.enable":\s*false/.test(text) && text;
    });
    mark('toggle');
    await page.screenshot({ path: spec.screenshot.replace(/\.png$/, '-log.png') });
  } catch (err) {
    result.error = String(err && err.stack || err);
    if (browser) {
      const pages = browser.contexts().flatMap((c) => c.pages());
      if (pages[0]) await pages[0].screenshot({ path: spec.screenshot }).catch(() => undefined);
    }
  } finally {
    if (browser) await browser.close().catch(() => undefined);
    try { process.kill(-server.pid, 'SIGTERM'); } catch (_) { /* already gone */ }
    save();
  }
}

main().then(() => process.exit(result.error ? 1 : 0));
