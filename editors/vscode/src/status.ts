/**
 * Status bar text for the server's `msa/status` notification: index progress, worker state, cache
 * fill and model, as a short label, a tooltip and a severity. Pure, so it runs without VS Code.
 * Not here: the status bar item itself (extension.ts owns it).
 */

export interface MsaStatus {
  index: { state: 'indexing' | 'ready' | 'error'; files: number; done: number };
  worker: { state: 'off' | 'starting' | 'ready' | 'restarting' | 'error'; message: string; model: string };
  cache: { segments: number; tokens: number; filled: number };
}

export type Severity = 'ok' | 'busy' | 'warning' | 'error';

export interface StatusView {
  text: string;
  tooltip: string;
  severity: Severity;
}

/**
 * Share of the workspace's indexed files whose text the worker's KV cache holds (`cache.filled`
 * counts files synced to the worker), or undefined before anything is indexed.
 */
export function cacheFillPercent(status: Pick<MsaStatus, 'index' | 'cache'>): number | undefined {
  const files = status.index?.files;
  if (!status.cache || !(files > 0)) {
    return undefined;
  }
  const ratio = Math.min(Math.max(status.cache.filled / files, 0), 1);
  return Math.floor(ratio * 100);
}

function shortModel(model: string): string {
  const parts = model.split(/[\\/]/).filter((p) => p !== '');
  return parts.length > 0 ? parts[parts.length - 1] : model;
}

function formatCount(n: number): string {
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(1)}M`;
  if (n >= 10_000) return `${Math.round(n / 1000)}k`;
  return String(n);
}

/** Checks the notification's shape; returns a reason when it is malformed. */
export function validateStatus(value: unknown): string | undefined {
  const v = value as Partial<MsaStatus> | null;
  if (!v || typeof v !== 'object') return 'status is not an object';
  if (!v.index || typeof v.index.state !== 'string') return 'status.index.state missing';
  if (!v.worker || typeof v.worker.state !== 'string') return 'status.worker.state missing';
  if (!v.cache || typeof v.cache.segments !== 'number') return 'status.cache missing';
  return undefined;
}

export function describeStatus(status: MsaStatus): StatusView {
  const { index, worker, cache } = status;
  const parts: string[] = [];
  let severity: Severity = 'ok';
  let icon = '$(check)';

  if (index.state === 'indexing') {
    parts.push(`indexing ${index.done}/${index.files}`);
    icon = '$(sync~spin)';
    severity = 'busy';
  } else if (index.state === 'error') {
    parts.push('index error');
    icon = '$(error)';
    severity = 'error';
  } else {
    parts.push(`${index.files} files`);
  }

  const fill = cacheFillPercent(status);
  switch (worker.state) {
    case 'ready':
      if (fill !== undefined) parts.push(`cache ${fill}%`);
      if (worker.model) parts.push(shortModel(worker.model));
      break;
    case 'starting':
    case 'restarting':
      parts.push(`worker ${worker.state}`);
      if (severity === 'ok') {
        icon = '$(loading~spin)';
        severity = 'busy';
      }
      break;
    case 'off':
      parts.push('no worker');
      if (severity === 'ok') icon = '$(circle-slash)';
      break;
    case 'error':
      parts.push('worker error');
      if (severity !== 'error') {
        icon = '$(warning)';
        severity = 'warning';
      }
      break;
  }

  const tooltip = [
    `msa-lsp`,
    `Index: ${index.state} (${index.done}/${index.files} files)`,
    `Worker: ${worker.state}${worker.message ? ` — ${worker.message}` : ''}`,
    `Model: ${worker.model || '(none)'}`,
    `Cache: ${cache.filled}/${index.files} files` + (fill !== undefined ? ` (${fill}%)` : '') +
      `, ${cache.segments} segments, ${formatCount(cache.tokens)} tokens`,
  ].join('\n');

  return { text: `${icon} msa: ${parts.join(' · ')}`, tooltip, severity };
}

/** What the item shows before the first notification and after the server stops. */
export function startingView(): StatusView {
  return { text: '$(loading~spin) msa: starting', tooltip: 'msa-lsp: starting the language server', severity: 'busy' };
}

export function stoppedView(reason: string): StatusView {
  return { text: '$(error) msa: stopped', tooltip: `msa-lsp: the language server stopped\n${reason}`, severity: 'error' };
}
