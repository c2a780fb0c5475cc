/**
 * The test side of the gateway fixtures (`test/fixtures/gateway/*.ts`): spawns a
 * fixture inside a network namespace with Node 24, sends it JSON-line commands and
 * collects its answers and events. Every fixture has a lifetime cap of its own; the
 * test stops each one in `after` (SIGTERM, then SIGKILL).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

/** Path of a gateway fixture script. */
export function fixturePath (name: string): string {
  return fileURLToPath(new URL(`../fixtures/gateway/${name}.ts`, import.meta.url))
}

/** A message from a fixture: an answer (with `id`) or an event (with `type`). */
export type FixtureMessage = Record<string, any>

/** A running fixture process. */
export class Fixture {
  readonly name: string
  readonly child: ChildProcess
  readonly exited: Promise<void>
  #nextId = 1
  #pending = new Map<number, { resolve: (m: FixtureMessage) => void, reject: (e: Error) => void }>()
  #events: FixtureMessage[] = []
  #eventWaiters = new Set<() => void>()
  #stderr = ''

  private constructor (name: string, child: ChildProcess) {
    this.name = name
    this.child = child
    this.exited = once(child, 'exit').then(() => {
      for (const p of this.#pending.values()) p.reject(new Error(`${name} exited (code ${child.exitCode}, signal ${child.signalCode}); stderr tail:\n${this.#stderr}`))
      this.#pending.clear()
      for (const wake of this.#eventWaiters) wake()
    })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: FixtureMessage
      try {
        msg = JSON.parse(line)
      } catch {
        return
      }
      if (typeof msg.id === 'number') {
        const p = this.#pending.get(msg.id)
        this.#pending.delete(msg.id)
        if (msg.ok === true) p?.resolve(msg)
        else p?.reject(Object.assign(new Error(`${name} ${msg.code ?? ''}: ${msg.error}`), { code: msg.code }))
        return
      }
      this.#events.push(msg)
      for (const wake of [...this.#eventWaiters]) wake()
    })
    child.stderr?.on('data', (d: Buffer) => {
      if (process.env.TEST_LOG !== undefined) process.stderr.write(d)
      this.#stderr = (this.#stderr + d.toString()).slice(-4000)
    })
  }

  /** Spawns `fixtures/gateway/NAME.ts ARGS…` in namespace `ns` and waits for its `ready` event. */
  static async start (ns: string, name: string, args: string[], readyTimeoutMs = 30_000): Promise<{ fixture: Fixture, ready: FixtureMessage }> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, fixturePath(name), ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    const fixture = new Fixture(name, child)
    try {
      const ready = await fixture.event('ready', readyTimeoutMs)
      return { fixture, ready }
    } catch (err) {
      await fixture.stop()
      throw err
    }
  }

  /** Sends a command and resolves with the answer (rejects on an error answer or a timeout). */
  request (cmd: string, extra: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<FixtureMessage> {
    const id = this.#nextId++
    return new Promise<FixtureMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.name}: no answer to ${cmd} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: (m) => { clearTimeout(timer); resolve(m) },
        reject: (e) => { clearTimeout(timer); reject(e) }
      })
      this.child.stdin?.write(JSON.stringify({ id, cmd, ...extra }) + '\n')
    })
  }

  /** Resolves with the first event of `type` not taken yet (waiting up to `timeoutMs`). */
  async event (type: string, timeoutMs: number): Promise<FixtureMessage> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const i = this.#events.findIndex((e) => e.type === type)
      if (i >= 0) return this.#events.splice(i, 1)[0]
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`${this.name} exited before "${type}"; stderr tail:\n${this.#stderr}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`${this.name}: no "${type}" event within ${timeoutMs} ms; stderr tail:\n${this.#stderr}`)
      await new Promise<void>((resolve) => {
        const wake = (): void => { clearTimeout(timer); this.#eventWaiters.delete(wake); resolve() }
        const timer = setTimeout(wake, left)
        this.#eventWaiters.add(wake)
      })
    }
  }

  /** Kills the process with `signal` (SIGKILL: a crash) and waits for it to exit. */
  async kill (signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    // `ip netns exec` execs the fixture, so the pid is the fixture's own
    this.child.kill(signal)
    await this.exited
  }

  /** Stops the fixture: SIGTERM, then SIGKILL after `graceMs`. */
  async stop (graceMs = 8000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }
}
