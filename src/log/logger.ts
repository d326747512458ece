/** Operational log lines (start-up, state flips, warnings), separate from the access log. */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function consoleLogger(): Logger {
  const line = (level: string, msg: string) => `${new Date().toISOString()} ${level} ${msg}`;
  return {
    info: (msg) => console.log(line("info ", msg)),
    warn: (msg) => console.warn(line("warn ", msg)),
    error: (msg) => console.error(line("error", msg)),
  };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** Keeps lines in memory: for tests that assert on what was logged. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
  };
}
