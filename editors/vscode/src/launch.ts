/**
 * Starting the language server process: spawns the command line from settings.serverLaunch with
 * stdio pipes, in the workspace folder, and makes a failed spawn a clear error. Used by the
 * extension (as the client's server options) and by the protocol test, so both run the same code.
 * Not here: the LSP conversation.
 */
import { ChildProcess, spawn } from 'child_process';
import { ServerLaunch } from './settings';

export interface LaunchOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Receives the server's stderr (its log) line by line. */
  onLog?: (line: string) => void;
}

/** Spawns the server; resolves once the process is running, rejects if it cannot start. */
export function spawnServer(launch: ServerLaunch, options: LaunchOptions = {}): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(launch.command, launch.args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env, PYTHONUNBUFFERED: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const described = [launch.command, ...launch.args].join(' ');
    child.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'ENOENT'
        ? ' (not found: install msa-lsp or set msa.server.command / msa.server.python)'
        : '';
      reject(new Error(`cannot start the msa-lsp server "${described}": ${err.message}${hint}`));
    });
    child.once('spawn', () => resolve(child));
    if (options.onLog) {
      let pending = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) options.onLog!(line);
      });
    }
  });
}
