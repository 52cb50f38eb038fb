/**
 * VS Code entry point: starts `msa-lsp serve` through vscode-languageclient, sends the "msa"
 * settings as initializationOptions and on every change, shows `msa/status` in a status bar item and
 * registers the msa-lsp commands. Decisions live in settings.ts, status.ts and launch.ts; this file
 * only wires them to VS Code.
 */
import { createInterface } from 'readline';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';
import { spawnServer } from './launch';
import { createLogRouter } from './serverLog';
import {
  SECTION, affectsLaunch, affectsServer, configurationAnswers, configurationChange, serverLaunch, serverSettings,
} from './settings';
import { MsaStatus, StatusView, describeStatus, startingView, stoppedView, validateStatus } from './status';

const CLIENT_ID = 'msa';
const DOCUMENT_LANGUAGES = ['python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact', 'go', 'rust'];
/** Commands the extension registers itself and forwards to the server's workspace/executeCommand. */
const SERVER_COMMANDS = ['msa.restartWorker', 'msa.reindex'];

let client: LanguageClient | undefined;
let statusItem: vscode.StatusBarItem;
let output: vscode.LogOutputChannel;

/** Leaves SERVER_COMMANDS out of the client's automatic command registration (they are ours). */
class MsaLanguageClient extends LanguageClient {
  public registerFeature(feature: Parameters<LanguageClient['registerFeature']>[0]): void {
    const dynamic = feature as { registrationType?: { method?: string }; register?: (data: any) => void };
    if (dynamic.registrationType?.method === ExecuteCommandRequest.method && dynamic.register) {
      const register = dynamic.register.bind(feature);
      dynamic.register = (data: any) => {
        const commands: string[] = data?.registerOptions?.commands ?? [];
        const registerOptions = { ...data.registerOptions, commands: commands.filter((c) => !SERVER_COMMANDS.includes(c)) };
        register({ ...data, registerOptions });
      };
    }
    super.registerFeature(feature);
  }
}

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

function reader(): (key: string) => unknown {
  const cfg = config();
  return (key) => cfg.get(key);
}

function show(view: StatusView): void {
  statusItem.text = view.text;
  statusItem.tooltip = view.tooltip;
  statusItem.backgroundColor =
    view.severity === 'error'
      ? new vscode.ThemeColor('statusBarItem.errorBackground')
      : view.severity === 'warning'
        ? new vscode.ThemeColor('statusBarItem.warningBackground')
        : undefined;
  statusItem.show();
}

function pipeLog(input: NodeJS.ReadableStream, channel: vscode.LogOutputChannel): void {
  const route = createLogRouter();
  createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', (line) => {
    const { level, text } = route(line);
    channel[level](text);
  });
}

function createClient(context: vscode.ExtensionContext): LanguageClient {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const serverOptions: ServerOptions = () => spawnServer(serverLaunch(reader()), { cwd: folder });
  const clientOptions: LanguageClientOptions = {
    documentSelector: DOCUMENT_LANGUAGES.map((language) => ({ scheme: 'file', language })),
    initializationOptions: serverSettings(reader()),
    outputChannel: output,
    // server log lines keep their level in the channel (the client default marks all stderr as errors);
    // stdout is only handed here by transports other than the stdio one we use
    stdioOptions: { stdout: pipeLog, stderr: pipeLog },
    middleware: {
      workspace: {
        configuration: async (params, token, next) => {
          const answers = await next(params, token);
          return Array.isArray(answers) ? configurationAnswers(params.items, answers, reader()) : answers;
        },
      },
      provideInlineCompletionItems: (document, position, ctx, token, next) =>
        config().get<boolean>('inlineCompletion.enable', true) ? next(document, position, ctx, token) : null,
    },
  };
  const created = new MsaLanguageClient(CLIENT_ID, 'msa-lsp', serverOptions, clientOptions);
  context.subscriptions.push(
    created.onNotification('msa/status', (params: unknown) => {
      const problem = validateStatus(params);
      if (problem) {
        output.appendLine(`ignored malformed msa/status: ${problem}`);
        return;
      }
      show(describeStatus(params as MsaStatus));
    }),
    created.onDidChangeState((event) => {
      if (event.newState === State.Stopped) show(stoppedView('See "msa-lsp: Show server log".'));
      if (event.newState === State.Starting) show(startingView());
    }),
  );
  return created;
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  show(startingView());
  client = createClient(context);
  try {
    await client.start();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    show(stoppedView(message));
    output.appendLine(message);
    void vscode.window.showErrorMessage(`msa-lsp: ${message}`, 'Show log').then((choice) => {
      if (choice) output.show();
    });
  }
}

async function runServerCommand(command: string): Promise<void> {
  if (!client || !client.isRunning()) {
    void vscode.window.showWarningMessage('msa-lsp: the language server is not running.');
    return;
  }
  try {
    await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [] });
  } catch (err) {
    void vscode.window.showErrorMessage(`msa-lsp: ${command} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function toggleInlineCompletion(): Promise<void> {
  const cfg = config();
  const enabled = cfg.get<boolean>('inlineCompletion.enable', true);
  const inspected = cfg.inspect('inlineCompletion.enable');
  const target = inspected?.workspaceValue !== undefined
    ? vscode.ConfigurationTarget.Workspace
    : vscode.ConfigurationTarget.Global;
  await cfg.update('inlineCompletion.enable', !enabled, target);
  void vscode.window.setStatusBarMessage(`msa-lsp: inline completion ${enabled ? 'off' : 'on'}`, 3000);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('msa-lsp', { log: true });
  statusItem = vscode.window.createStatusBarItem('msa.status', vscode.StatusBarAlignment.Right, 100);
  statusItem.name = 'msa-lsp';
  statusItem.command = 'msa.showLog';
  context.subscriptions.push(output, statusItem);

  context.subscriptions.push(
    ...SERVER_COMMANDS.map((command) => vscode.commands.registerCommand(command, () => runServerCommand(command))),
    vscode.commands.registerCommand('msa.showLog', () => output.show(true)),
    vscode.commands.registerCommand('msa.toggleInlineCompletion', toggleInlineCompletion),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (affectsLaunch(event.affectsConfiguration)) {
        await client?.stop().catch(() => undefined); // a client that never started cannot stop
        await startClient(context);
      } else if (affectsServer(event.affectsConfiguration) && client?.isRunning()) {
        await client.sendNotification(DidChangeConfigurationNotification.type, configurationChange(reader()));
      }
    }),
  );
  await startClient(context);
  const marker = process.env.MSA_VSCODE_ACTIVATION_MARKER;
  if (marker) {
    // test hook: a file the end-to-end test reads to know activation finished
    require('fs').appendFileSync(marker, `activated running=${client?.isRunning()}\n`);
  }
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
