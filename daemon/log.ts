import { pino, type Logger, type LevelWithSilent } from 'pino'

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Minimum level; `SPAREBAND_LOG_LEVEL` overrides the default `info`. */
  level?: LevelWithSilent
  /** Human-friendly output; defaults to true when stderr is a terminal. */
  pretty?: boolean
}

/**
 * The daemon's root logger. Logs go to stderr (stdout belongs to the CLI's
 * output): JSON lines for machines, pino-pretty on a terminal. Modules take
 * `logger.child({ component: '…' })`.
 */
export function createLogger (opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? (process.env.SPAREBAND_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info'
  const pretty = opts.pretty ?? process.stderr.isTTY === true
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { destination: 2, colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } }
    })
  }
  return pino({ level }, pino.destination({ dest: 2, sync: false }))
}
