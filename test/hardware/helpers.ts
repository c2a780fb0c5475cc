/** Helpers of the hardware tests and benchmarks: run the traffic tool and servers inside namespaces. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { once } from 'node:events'

/** Path of the traffic tool. */
export const TRAFFIC_TOOL = fileURLToPath(new URL('./traffic.ts', import.meta.url))

/** What one `traffic.ts send` reported. */
export interface SendResult {
  ok: boolean
  up?: number
  down?: number
  ms?: number
  error?: string
}

/** Runs `traffic.ts send` in a namespace (as `uid` when given) and returns its report. */
export async function sendTraffic (ns: string, host: string, port: number, up: number, down: number, timeoutMs: number, uid?: number): Promise<SendResult> {
  // the socket belongs to `uid`; CAP_DAC_READ_SEARCH lets it read the tool wherever the
  // checkout is (a fresh clone may sit under a directory only root can enter)
  const asUser = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search']
  const child = spawn('ip', ['netns', 'exec', ns, ...asUser, process.execPath, TRAFFIC_TOOL, 'send', host, String(port), String(up), String(down), String(timeoutMs)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 5000)
  await once(child, 'close')
  clearTimeout(killer)
  return JSON.parse(out.trim().split('\n').pop() ?? '{"ok":false,"error":"no output"}') as SendResult
}

/** Starts `traffic.ts serve` in a namespace for at most `seconds` and waits until it listens. */
export async function startServer (ns: string, host: string, port: number, seconds: number): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, TRAFFIC_TOOL, 'serve', host, String(port), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('traffic server did not start within 10 s')) }, 10_000)
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) { clearTimeout(timer); resolve() }
    })
    child.once('exit', () => { clearTimeout(timer); reject(new Error('traffic server exited before it was ready')) })
  })
  return child
}

/** Stops a child process and waits for it to exit. */
export async function stopChild (child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
  await once(child, 'exit')
  clearTimeout(timer)
}
