/**
 * The extension's own launch code (settings.serverLaunch + launch.spawnServer) starts the real
 * `msa-lsp serve`, and a vscode-jsonrpc connection talks LSP to it the way vscode-languageclient
 * does: settings as initializationOptions and didChangeConfiguration, msa/status, diagnostics,
 * completion, rename across files.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ChildProcess } from 'child_process';
import { MessageConnection, StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import { configurationChange, serverLaunch, serverSettings } from '../src/settings';
import { spawnServer } from '../src/launch';
import { MsaStatus, describeStatus, validateStatus } from '../src/status';
import { PYTHON } from './paths';

const FILES: Record<string, string> = {
  'pkg/__init__.py': '',
  'pkg/shapes.py': 'def area(width, height):\n    return width * height\n',
  'app.py': 'from pkg.shapes import area\n\n\ndef main():\n    return area(2, 3)\n',
  'broken.py': 'def broken(:\n    pass\n',
};

let workspace: string;
let capabilities: any;
let child: ChildProcess;
let connection: MessageConnection;
const log: string[] = [];
const statuses: MsaStatus[] = [];
const messages: string[] = [];
const diagnostics = new Map<string, any[]>();

const uri = (rel: string) => `file://${path.join(workspace, rel)}`;

function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 20000): Promise<T> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      const value = probe();
      if (value !== undefined && value !== false) return resolve(value);
      if (Date.now() - started > timeoutMs) {
        return reject(new Error(`timed out waiting for ${what}; server log tail:\n${log.slice(-30).join('\n')}`));
      }
      setTimeout(tick, 25);
    };
    tick();
  });
}

before(async () => {
  workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'msa-vscode-protocol-'));
  for (const [rel, text] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(workspace, rel)), { recursive: true });
    fs.writeFileSync(path.join(workspace, rel), text);
  }
  const defaults = (key: string) => (key === 'server.python' ? PYTHON : undefined);
  child = await spawnServer(serverLaunch(defaults), { cwd: workspace, onLog: (line) => log.push(line) });
  connection = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  connection.onNotification('msa/status', (params: MsaStatus) => { statuses.push(params); });
  connection.onNotification('textDocument/publishDiagnostics', (p: any) => { diagnostics.set(p.uri, p.diagnostics); });
  connection.onNotification('window/showMessage', (p: any) => { messages.push(p.message); });
  connection.onNotification('window/logMessage', () => undefined);
  connection.onNotification('$/progress', () => undefined);
  connection.onRequest('window/workDoneProgress/create', () => null);
  connection.onRequest('client/registerCapability', () => null);
  connection.onRequest('workspace/configuration', (p: any) => p.items.map(() => serverSettings(() => undefined)));
  connection.listen();
  const exited = new Promise<never>((_, reject) => child.once('exit', (code, signal) => reject(new Error(
    `msa-lsp serve exited (code ${code}, signal ${signal}); log tail:\n${log.slice(-30).join('\n')}`))));
  exited.catch(() => undefined);

  const result: any = await Promise.race([exited, connection.sendRequest('initialize', {
    processId: process.pid,
    rootUri: `file://${workspace}`,
    workspaceFolders: [{ uri: `file://${workspace}`, name: 'ws' }],
    initializationOptions: serverSettings(defaults),
    capabilities: {
      general: { positionEncodings: ['utf-16'] },
      workspace: { workspaceEdit: { documentChanges: true }, configuration: true, didChangeConfiguration: {} },
      textDocument: {
        publishDiagnostics: { relatedInformation: true },
        rename: { prepareSupport: true },
        completion: { completionItem: { snippetSupport: false } },
        inlineCompletion: {},
        synchronization: { didSave: true },
      },
      window: { workDoneProgress: true },
    },
  })]);
  capabilities = result.capabilities;
  assert.ok(result.capabilities.renameProvider, 'server offers rename');
  assert.ok(result.capabilities.completionProvider, 'server offers completion');
  await connection.sendNotification('initialized', {});
});

after(async () => {
  if (connection) {
    await connection.sendRequest('shutdown').catch(() => undefined);
    await connection.sendNotification('exit').catch(() => undefined);
  }
  if (child && child.exitCode === null) {
    await new Promise((resolve) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); resolve(undefined); }, 5000);
      child.once('exit', () => { clearTimeout(timer); resolve(undefined); });
    });
  }
  connection?.dispose();
  fs.rmSync(workspace, { recursive: true, force: true });
});

test('msa/status arrives well-formed and reaches index ready', async () => {
  const ready = await waitFor('msa/status with index ready', () => statuses.find((s) => s.index?.state === 'ready'));
  for (const s of statuses) assert.equal(validateStatus(s), undefined, JSON.stringify(s));
  assert.equal(ready.index.files, Object.keys(FILES).length);
  assert.match(describeStatus(ready).text, new RegExp(`msa: ${ready.index.files} files`));
});

test('syntax error is published as a diagnostic', async () => {
  await connection.sendNotification('textDocument/didOpen', {
    textDocument: { uri: uri('broken.py'), languageId: 'python', version: 1, text: FILES['broken.py'] },
  });
  const found = await waitFor('diagnostics for broken.py', () => diagnostics.get(uri('broken.py'))?.length ? diagnostics.get(uri('broken.py')) : undefined);
  assert.ok(found.some((d) => d.severity === 1 && d.range.start.line === 0), JSON.stringify(found));
});

test('completion offers the imported workspace symbol', async () => {
  const text = FILES['app.py'] + '\n\nvalue = ar';
  await connection.sendNotification('textDocument/didOpen', {
    textDocument: { uri: uri('app.py'), languageId: 'python', version: 1, text },
  });
  const lines = text.split('\n');
  const result: any = await connection.sendRequest('textDocument/completion', {
    textDocument: { uri: uri('app.py') }, position: { line: lines.length - 1, character: lines[lines.length - 1].length },
  });
  const items = Array.isArray(result) ? result : result.items;
  assert.ok(items.some((i: any) => i.label === 'area'), JSON.stringify(items.map((i: any) => i.label)));
});

test('rename across files edits the definition and its user', async () => {
  const edit: any = await connection.sendRequest('textDocument/rename', {
    textDocument: { uri: uri('app.py') }, position: { line: 4, character: 12 }, newName: 'surface',
  });
  const changed = new Map<string, any[]>();
  for (const change of edit.documentChanges ?? []) changed.set(change.textDocument.uri, change.edits);
  for (const [u, edits] of Object.entries(edit.changes ?? {})) changed.set(u, edits as any[]);
  assert.deepEqual([...changed.keys()].sort(), [uri('app.py'), uri('pkg/shapes.py')].sort());
  assert.ok(changed.get(uri('pkg/shapes.py'))!.every((e) => e.newText === 'surface'));
  assert.equal(changed.get(uri('app.py'))!.length, 2, 'import and call');
});

test('didChangeConfiguration with the extension payload is accepted without warnings', async () => {
  const before = messages.length;
  await connection.sendNotification('workspace/didChangeConfiguration',
    configurationChange((key) => (key === 'completion.maxTokens' ? 16 : undefined)));
  await connection.sendNotification('workspace/didChangeConfiguration', { settings: { msa: { completion: { maxTokens: 'many' } } } });
  const warning = await waitFor('a warning for the bad value', () => messages.slice(before).find((m) => /maxTokens/.test(m)));
  assert.match(warning, /msa\.completion\.maxTokens/);
  assert.equal(messages.slice(before).length, 1, messages.slice(before).join('\n'));
});

test('the server offers and runs msa.reindex (the extension forwards its command)', async () => {
  const offered: string[] = capabilities.executeCommandProvider?.commands ?? [];
  assert.ok(offered.includes('msa.reindex') && offered.includes('msa.restartWorker'),
    `executeCommandProvider.commands is ${JSON.stringify(offered)}`);
  const seen = statuses.length;
  await connection.sendRequest('workspace/executeCommand', { command: 'msa.reindex', arguments: [] });
  await waitFor('indexing then ready after msa.reindex', () => {
    const after = statuses.slice(seen);
    const indexing = after.findIndex((s) => s.index.state === 'indexing');
    return indexing >= 0 && after.slice(indexing).some((s) => s.index.state === 'ready');
  });
});

test('the server runs msa.restartWorker (the extension forwards its command)', async () => {
  const before = statuses.length;
  await connection.sendRequest('workspace/executeCommand', { command: 'msa.restartWorker', arguments: [] });
  await waitFor('a worker state change after msa.restartWorker', () =>
    statuses.slice(before).some((s) => ['starting', 'restarting'].includes(s.worker.state)));
});
