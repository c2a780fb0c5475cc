import { spawn } from 'node:child_process'
import { CommandFailedError } from './errors.ts'

/** What a finished command printed and how it exited. */
export interface CommandResult {
  stdout: string
  stderr: string
  exitCode: number
}

/** Options of one command run. */
export interface RunOptions {
  /** Written to the command's stdin, which is then closed. */
  input?: string
  /** Resolve with the result instead of rejecting when the exit code is not 0. */
  allowFailure?: boolean
}

/**
 * Runs a system command given as argv (never through a shell). Every adapter talks
 * to the kernel and the platform through one of these, so a test can point an
 * adapter at a network namespace by giving it a runner with an `ip netns exec` prefix.
 */
export type CommandRunner = (argv: readonly string[], options?: RunOptions) => Promise<CommandResult>

/** Settings of {@link commandRunner}. */
export interface CommandRunnerInit {
  /** Prepended to every argv, e.g. `['ip', 'netns', 'exec', 'sb-gw']` (see {@link netnsPrefix}). */
  prefix?: readonly string[]
  /** A command still running after this long is killed and the run fails (default 10 s). */
  timeoutMs?: number
  /** Output beyond this many bytes (stdout plus stderr) fails the run (default 64 MiB). */
  maxOutputBytes?: number
}

/** The argv prefix that runs a command inside the named network namespace. */
export function netnsPrefix (namespace: string): string[] {
  return ['ip', 'netns', 'exec', namespace]
}

/** A {@link CommandRunner} that spawns processes, optionally behind a prefix such as `ip netns exec NS`. */
export function commandRunner (init: CommandRunnerInit = {}): CommandRunner {
  const prefix = init.prefix ?? []
  const timeoutMs = init.timeoutMs ?? 10_000
  const maxOutputBytes = init.maxOutputBytes ?? 64 * 1024 * 1024
  return async (argv, options = {}) => {
    const full = [...prefix, ...argv]
    const result = await new Promise<CommandResult>((resolve, reject) => {
      const child = spawn(full[0], full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
      const out: Buffer[] = []
      const err: Buffer[] = []
      let size = 0
      let failure: CommandFailedError | undefined
      const fail = (e: CommandFailedError): void => {
        failure ??= e
        child.kill('SIGKILL')
      }
      const timer = setTimeout(() => { fail(new CommandFailedError(full, null, '', `It did not finish within ${timeoutMs} ms.`)) }, timeoutMs)
      const collect = (into: Buffer[]) => (chunk: Buffer): void => {
        size += chunk.length
        if (size > maxOutputBytes) {
          fail(new CommandFailedError(full, null, '', `It printed more than ${maxOutputBytes} bytes.`))
          return
        }
        into.push(chunk)
      }
      child.stdout.on('data', collect(out))
      child.stderr.on('data', collect(err))
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        const hint = e.code === 'ENOENT' ? `Install \`${full[0]}\` or check PATH.` : 'Check that spareband runs with the rights it needs (root or CAP_NET_ADMIN).'
        reject(failure ?? new CommandFailedError(full, null, e.message, hint, { cause: e }))
      })
      child.on('close', (code) => {
        clearTimeout(timer)
        if (failure !== undefined) {
          reject(failure)
          return
        }
        resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), exitCode: code ?? -1 })
      })
      child.stdin.on('error', () => {})
      child.stdin.end(options.input ?? '')
    })
    if (result.exitCode !== 0 && options.allowFailure !== true) {
      throw new CommandFailedError(full, result.exitCode, result.stderr.trim(), 'Check that spareband runs as root (or with CAP_NET_ADMIN) and that the tool is installed.')
    }
    return result
  }
}
