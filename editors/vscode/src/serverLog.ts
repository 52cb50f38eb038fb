/**
 * Routing the server's stderr into the log output channel at the right level: `msa-lsp serve` logs
 * "2026-01-02 10:11:12,345 INFO lsp.index: message"; the channel adds its own timestamp, so the
 * router strips the server's and keeps "lsp.index: message" at level info. Lines without a prefix
 * (a traceback's) keep the level of the line before them. Pure; extension.ts wires it to the channel.
 */

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const PREFIX = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$/;
const LEVELS: Record<string, LogLevel> = { DEBUG: 'debug', INFO: 'info', WARNING: 'warn', ERROR: 'error', CRITICAL: 'error' };

/** A stateful router: call it once per stderr line, in order. */
export function createLogRouter(): (line: string) => { level: LogLevel; text: string } {
  let last: LogLevel = 'error'; // output before any prefixed line is a crash at start-up
  return (line) => {
    const match = PREFIX.exec(line);
    if (match) {
      last = LEVELS[match[1]];
      return { level: last, text: match[2] };
    }
    return { level: last, text: line };
  };
}
