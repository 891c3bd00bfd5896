export { mainHelp, run } from './cli.js';
export { redactUrl } from './config.js';
export { CliError, EXIT, type ExitCode } from './errors.js';
export type { CliIo } from './io.js';
export { lockPgliteFolder, PGLITE_LOCK_FILE, PgliteFolderInUseError } from './pglite-lock.js';
export { type Finding, scanText } from './scanner.js';
