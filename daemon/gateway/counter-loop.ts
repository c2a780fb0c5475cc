/**
 * The one reader of the hardware adapter's counters. Reading zeroes them
 * (read-and-reset in one kernel operation), so two readers would each see only
 * part of the traffic: every consumer (the gateway meter, the exit reconciler)
 * gets each reading from this loop instead.
 */
import type { Logger } from 'pino'
import type { CounterReading, HardwareAdapter } from '../../hardware/adapter.ts'

/** Something that wants every counter reading. */
export interface CounterConsumer {
  /** Called with each reading, in order; the next read waits until it settles. A failure is logged and does not stop the others. */
  onReading: (reading: CounterReading, nowMs: number) => void | Promise<void>
}

/** Options of {@link CounterLoop}. */
export interface CounterLoopInit {
  adapter: Pick<HardwareAdapter, 'readCounters'>
  /** Time between two reads. */
  intervalMs: number
  logger: Logger
}

/** Reads the counters every interval and hands each reading to every consumer. */
export class CounterLoop {
  readonly #init: CounterLoopInit
  readonly #log: Logger
  readonly #consumers: CounterConsumer[] = []
  readonly #failing = new Set<CounterConsumer>()
  #timer: NodeJS.Timeout | undefined
  #tail: Promise<unknown> = Promise.resolve()
  #failures = 0
  #busy = false

  constructor (init: CounterLoopInit) {
    if (!Number.isSafeInteger(init.intervalMs) || init.intervalMs <= 0) throw new RangeError(`intervalMs must be a positive whole number, got ${init.intervalMs}`)
    this.#init = init
    this.#log = init.logger.child({ component: 'counter-loop' })
  }

  /** The time between two reads. */
  get intervalMs (): number {
    return this.#init.intervalMs
  }

  /** Adds a consumer of every later reading. */
  add (consumer: CounterConsumer): void {
    this.#consumers.push(consumer)
  }

  /** Reads once now (after any read in progress) and hands the reading to every consumer. */
  tick (): Promise<CounterReading> {
    const run = this.#tail.then(async () => {
      const reading = await this.#init.adapter.readCounters()
      const nowMs = Date.now()
      for (const consumer of this.#consumers) {
        try {
          await consumer.onReading(reading, nowMs)
          this.#failing.delete(consumer)
        } catch (err: any) {
          // logged once per run of failures: the loop may read ten times a second
          if (!this.#failing.has(consumer)) this.#log.error({ err: err?.message, code: err?.code, consumer: String(consumer) }, 'a counter consumer failed; it gets the next reading again')
          this.#failing.add(consumer)
        }
      }
      return reading
    })
    this.#tail = run.catch(() => {})
    return run
  }

  /** Reads every interval until {@link stop}; a failed read is logged and retried at the next interval. */
  start (): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => {
      // skip a beat rather than queue reads behind a slow one
      if (this.#busy) return
      this.#busy = true
      this.tick().then(() => {
        if (this.#failures > 0) this.#log.info({ failures: this.#failures }, 'counter reads work again')
        this.#failures = 0
      }, (err: any) => {
        if (this.#failures++ === 0) this.#log.error({ err: err?.message, code: err?.code }, 'cannot read the kernel counters; retrying every interval')
      }).finally(() => { this.#busy = false })
    }, this.#init.intervalMs)
  }

  /** Stops reading and waits for a read in progress. */
  async stop (): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#tail
  }
}
