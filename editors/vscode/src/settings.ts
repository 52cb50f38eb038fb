/**
 * Settings: which `msa.*` keys go to the server, how they are nested for it, and how the launcher
 * keys turn into the server's command line. Pure functions over a `get(key)` reader, so they run
 * without VS Code. Not here: reading VS Code's configuration or spawning anything.
 *
 * package.json is the single list of keys: its configuration block "msa-server" holds the keys the
 * server understands (mirroring lsp/options.py), "msa-client" the ones only this editor reads.
 */
import manifest from '../package.json';

export const SECTION = 'msa';

interface ConfigurationBlock {
  id: string;
  properties: Record<string, { default?: unknown }>;
}

const blocks = manifest.contributes.configuration as unknown as ConfigurationBlock[];

function keysOf(blockId: string): string[] {
  const block = blocks.find((b) => b.id === blockId);
  if (!block) {
    throw new Error(`package.json has no configuration block "${blockId}"`);
  }
  return Object.keys(block.properties);
}

/** Full keys ("msa.worker.address") the server reads, in package.json order. */
export const SERVER_KEYS: readonly string[] = keysOf('msa-server');
/** Full keys only the editor reads (how to start the server, tracing). */
export const CLIENT_KEYS: readonly string[] = keysOf('msa-client');

/** Default value of a key as package.json declares it. */
export function defaultOf(key: string): unknown {
  for (const block of blocks) {
    if (key in block.properties) {
      return block.properties[key].default;
    }
  }
  throw new Error(`unknown setting ${key}`);
}

/** Reads one setting by its key relative to the "msa" section ("worker.address"). */
export type SettingReader = (relativeKey: string) => unknown;

function relative(key: string): string {
  return key.slice(SECTION.length + 1);
}

/**
 * The server's settings as nested JSON under the "msa" section:
 * {"model": "", "worker": {"address": "", ...}, "cache": {...}, ...}.
 */
export function serverSettings(get: SettingReader): Record<string, unknown> {
  const nested: Record<string, unknown> = {};
  for (const key of SERVER_KEYS) {
    const parts = relative(key).split('.');
    let node = nested;
    for (const part of parts.slice(0, -1)) {
      if (typeof node[part] !== 'object' || node[part] === null) {
        node[part] = {};
      }
      node = node[part] as Record<string, unknown>;
    }
    const value = get(relative(key));
    node[parts[parts.length - 1]] = value === undefined ? defaultOf(key) : value;
  }
  return nested;
}

/** Payload of workspace/didChangeConfiguration: the nested settings under "msa". */
export function configurationChange(get: SettingReader): { settings: { msa: Record<string, unknown> } } {
  return { settings: { msa: serverSettings(get) } };
}

/** True when a configuration change touches a key the server reads. */
export function affectsServer(affects: (section: string) => boolean): boolean {
  return SERVER_KEYS.some((key) => affects(key));
}

/** True when a change needs the server process restarted (its command line changed). */
export function affectsLaunch(affects: (section: string) => boolean): boolean {
  return affects(`${SECTION}.server`);
}

export interface ServerLaunch {
  command: string;
  args: string[];
}

/**
 * The server's command line: msa.server.command if set, else `<msa.server.python> -P -m lsp serve`,
 * else `msa-lsp serve` from PATH. A malformed command is an error, not a silent default.
 */
export function serverLaunch(get: SettingReader): ServerLaunch {
  const command = get('server.command') ?? [];
  if (!Array.isArray(command) || command.some((part) => typeof part !== 'string')) {
    throw new Error('msa.server.command must be an array of strings, e.g. ["msa-lsp", "serve"]');
  }
  if (command.length > 0) {
    if (command[0].trim() === '') {
      throw new Error('msa.server.command starts with an empty program name');
    }
    return { command: command[0], args: command.slice(1) };
  }
  const python = get('server.python');
  if (typeof python === 'string' && python.trim() !== '') {
    // -P: the workspace folder (the cwd) must not shadow the installed `lsp` package
    return { command: python, args: ['-P', '-m', 'lsp', 'serve'] };
  }
  return { command: 'msa-lsp', args: ['serve'] };
}

/**
 * Answers to the server's workspace/configuration request: for the "msa" section, the server keys
 * only (VS Code's own answer would carry the launcher keys too, which the server would flag as
 * unknown); other sections keep VS Code's answer.
 */
export function configurationAnswers(
  items: { section?: string }[],
  vscodeAnswers: unknown[],
  get: SettingReader,
): unknown[] {
  return items.map((item, i) => (item.section === SECTION ? serverSettings(get) : vscodeAnswers[i]));
}
