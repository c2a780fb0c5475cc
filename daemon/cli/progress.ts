/**
 * Live progress of `spareband connect`: the seller in use, its price, bytes
 * relayed, the rate, the spend and the failovers.
 *
 * - `tty`: one status line redrawn in place (at most a few times a second);
 *   events (a seller picked, a failover) are printed as lines above it.
 * - `lines`: events as lines, and the status as a line every few seconds
 *   while it changes (logs and pipes).
 * - `json`: one JSON object per line: `{"type":"progress",…}` while it
 *   changes, and one per event.
 */
import type { BuyerClient, BuyerClientEvents, BuyerProgress } from '../buyer/buyer-client.ts'
import { formatAmount, formatBytes, shorten, tokenLabel } from './format.ts'

/** How progress is shown. */
export type ProgressMode = 'tty' | 'lines' | 'json'

/** Where the view writes: stdout, or a test's sink. */
export interface ProgressOutput {
  write: (text: string) => unknown
  /** Terminal width, for `tty` mode. */
  columns?: number
}

/** What the view watches: a {@link BuyerClient} or anything with its progress and events. */
export type ProgressSource = Pick<BuyerClient, 'progress' | 'on' | 'off'>

/** Options of {@link ProgressView}. */
export interface ProgressViewInit {
  mode: ProgressMode
  output: ProgressOutput
  /** Time between two redraws (`tty`) or samples (`lines`, `json`), ms. Defaults: 250, 10,000, 1,000. */
  intervalMs?: number
  /** Clock in ms. Default `performance.now`. */
  now?: () => number
}

/** Default time between two status updates per mode, ms. */
export const DEFAULT_PROGRESS_INTERVAL_MS: Record<ProgressMode, number> = { tty: 250, lines: 10_000, json: 1_000 }

/** The transfer rate is averaged over about this long. */
const RATE_WINDOW_MS = 2_000

/** Shows a buyer's progress until stopped. */
export class ProgressView {
  readonly #init: ProgressViewInit
  readonly #now: () => number
  #source: ProgressSource | undefined
  #timer: NodeJS.Timeout | undefined
  /** Recent (time, bytes) samples, oldest first, spanning about {@link RATE_WINDOW_MS}. */
  #samples: Array<{ at: number, bytes: bigint }> = []
  #lastShown = ''
  #statusShown = false
  readonly #listeners: { [E in keyof BuyerClientEvents]: (...args: BuyerClientEvents[E]) => void }

  constructor (init: ProgressViewInit) {
    this.#init = init
    this.#now = init.now ?? (() => performance.now())
    this.#listeners = {
      seller: (c) => { this.event('seller', `relaying through seller ${c.peerId.toString()} at ${formatAmount(c.pricePerGiB, this.#token())} ${tokenLabel(this.#token())} per GiB (${c.latencyMs.toFixed(0)} ms)`, { seller: c.peerId.toString(), pricePerGiB: c.pricePerGiB, latencyMs: c.latencyMs }) },
      failover: (f) => { this.event('failover', `seller ${f.from} failed (${f.reason}); switching to the next one`, f) },
      'no-seller': (e) => { this.event('no-seller', `no seller to switch to: ${e.message}`, { code: e.code, message: e.message }) },
      'spend-cap': (s) => { this.event('spend-cap', `spend cap reached: ${formatAmount(s.spent, this.#token())} of ${formatAmount(s.cap, this.#token())} ${tokenLabel(this.#token())}; new connections are refused`, s) }
    }
  }

  /** Starts watching `source`. */
  start (source: ProgressSource): void {
    this.#source = source
    this.#samples = [{ at: this.#now(), bytes: source.progress().bytes }]
    for (const [event, listener] of Object.entries(this.#listeners)) source.on(event as keyof BuyerClientEvents, listener as () => void)
    const interval = this.#init.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS[this.#init.mode]
    this.#timer = setInterval(() => { this.update() }, interval)
    this.#timer.unref()
    this.update()
  }

  /** Stops watching; in `tty` mode the status line is left as it was last drawn, followed by a new line. */
  stop (): void {
    clearInterval(this.#timer)
    const source = this.#source
    if (source === undefined) return
    this.update()
    for (const [event, listener] of Object.entries(this.#listeners)) source.off(event as keyof BuyerClientEvents, listener as () => void)
    if (this.#init.mode === 'tty' && this.#statusShown) this.#init.output.write('\n')
    this.#statusShown = false
    this.#source = undefined
  }

  /** Samples the source and shows the status if it changed (in `tty` mode: redraws it). */
  update (): void {
    const source = this.#source
    if (source === undefined) return
    const p = source.progress()
    const rate = this.#sample(p.bytes)
    const out = this.#init.output
    if (this.#init.mode === 'json') {
      const line = jsonLine({ type: 'progress', ...p, bytesPerSec: Math.round(rate) })
      const key = jsonLine({ ...p })
      if (key !== this.#lastShown) out.write(line)
      this.#lastShown = key
      return
    }
    const text = formatProgress(p, rate)
    if (this.#init.mode === 'lines') {
      const key = `${p.state} ${p.seller} ${p.bytes} ${p.spent} ${p.failovers}`
      if (key !== this.#lastShown) out.write(text + '\n')
      this.#lastShown = key
      return
    }
    if (this.#statusShown && text === this.#lastShown) return
    out.write(`\r\x1b[2K${fit(text, out.columns)}`)
    this.#lastShown = text
    this.#statusShown = true
  }

  /** Records a byte count and returns the rate over the last {@link RATE_WINDOW_MS}, bytes per second. */
  #sample (bytes: bigint): number {
    const now = this.#now()
    const samples = this.#samples
    samples.push({ at: now, bytes })
    while (samples.length > 2 && now - samples[1].at >= RATE_WINDOW_MS) samples.shift()
    const first = samples[0]
    const seconds = (now - first.at) / 1000
    return seconds > 0 ? Number(bytes - first.bytes) / seconds : 0
  }

  /** Prints an event: a line of text (`tty`, `lines`) or a JSON object (`json`). */
  event (type: string, text: string, detail: object): void {
    const out = this.#init.output
    if (this.#init.mode === 'json') {
      out.write(jsonLine({ type, ...detail }))
      return
    }
    if (this.#init.mode === 'tty') {
      out.write(`\r\x1b[2K${text}\n`)
      this.#statusShown = false
      this.update()
      return
    }
    out.write(text + '\n')
  }

  #token (): string {
    return this.#source?.progress().token ?? '0x0000000000000000000000000000000000000000'
  }
}

/** The status line: state, seller and price, bytes and rate, spend against the cap, failovers. */
export function formatProgress (p: BuyerProgress, bytesPerSec: number): string {
  const unit = tokenLabel(p.token)
  const seller = p.seller === undefined
    ? STATE_TEXT[p.state]
    : `seller ${shorten(p.seller, 6)} @ ${formatAmount(p.pricePerGiB ?? 0n, p.token)}/GiB`
  return [
    seller,
    `${formatBytes(p.bytes)} relayed, ${formatBytes(Math.max(0, Math.round(bytesPerSec)))}/s`,
    `spent ${formatAmount(p.spent, p.token)} of ${formatAmount(p.spendCap, p.token)} ${unit}`,
    `${p.failovers} failover${p.failovers === 1 ? '' : 's'}`
  ].join(' | ')
}

const STATE_TEXT: Record<BuyerProgress['state'], string> = {
  starting: 'starting',
  relaying: 'relaying',
  switching: 'switching to the next seller…',
  'no-seller': 'no seller (retrying on the next connection)',
  'spend-cap': 'spend cap reached',
  stopped: 'stopped'
}

/** Cuts `text` to the terminal width so that a redraw stays on one line. */
function fit (text: string, columns: number | undefined): string {
  if (columns === undefined || columns <= 1 || text.length < columns) return text
  return text.slice(0, columns - 2) + '…'
}

function jsonLine (value: object): string {
  return JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString() : v) + '\n'
}
