/**
 * The CLI's client of the control API: JSON over HTTP with a time limit and a
 * bounded answer size. A daemon that does not answer becomes
 * `ERR_DAEMON_UNREACHABLE`; an API error keeps the daemon's `code` and `message`.
 */
import { SparebandError } from '../../protocol/errors.ts'

/** Raised when no daemon answers at the API address (not running, wrong address, too slow). */
export class DaemonUnreachableError extends SparebandError {
  /** Why, in a few words (refused, timed out…). */
  readonly reason: string

  constructor (url: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_DAEMON_UNREACHABLE', `no spareband daemon answers at ${url} (${reason}); start it with \`spareband start\`, or pass --api with the address of its control API`, options)
    this.reason = reason
  }
}

/** An error the daemon answered with (`{ code, message }`). */
export class ApiCallError extends SparebandError {
  /** HTTP status of the answer. */
  readonly status: number

  constructor (status: number, code: string, message: string) {
    super(code, message)
    this.status = status
  }
}

/** Options of {@link ApiClient}. */
export interface ApiClientInit {
  /** Base URL, e.g. `http://127.0.0.1:8742/`. */
  url: string
  /** Bearer token for mutating routes. */
  token?: string
  /** Default time limit per call. Default 10 s. */
  timeoutMs?: number
  /** Largest answer accepted. Default 8 MiB. */
  maxResponseBytes?: number
}

/** Calls one daemon's control API. */
export class ApiClient {
  readonly url: string
  readonly #init: ApiClientInit

  constructor (init: ApiClientInit) {
    this.url = new URL(init.url).toString()
    this.#init = init
  }

  /** GETs a JSON route. */
  async get<T> (path: string, options: { timeoutMs?: number } = {}): Promise<T> {
    return await this.#call<T>('GET', path, undefined, options.timeoutMs)
  }

  /** POSTs a JSON body to a route, with the bearer token. */
  async post<T> (path: string, body: unknown, options: { timeoutMs?: number } = {}): Promise<T> {
    return await this.#call<T>('POST', path, body, options.timeoutMs)
  }

  async #call<T> (method: 'GET' | 'POST', path: string, body: unknown, timeoutMs = this.#init.timeoutMs ?? 10_000): Promise<T> {
    const target = new URL(path, this.url)
    const headers: Record<string, string> = { Accept: 'application/json' }
    if (this.#init.token !== undefined) headers.Authorization = `Bearer ${this.#init.token}`
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    const signal = AbortSignal.timeout(timeoutMs)
    let res: Response
    let text: string
    try {
      res = await fetch(target, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, redirect: 'error' })
      text = await readCapped(res, this.#init.maxResponseBytes ?? 8 * 1024 * 1024)
    } catch (err: any) {
      if (err instanceof SparebandError) throw err
      const why = signal.aborted ? `no answer within ${Math.round(timeoutMs / 1000)} s` : (err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(err))
      throw new DaemonUnreachableError(this.url, why, { cause: err })
    }
    let json: any
    try {
      json = JSON.parse(text)
    } catch {
      throw new DaemonUnreachableError(this.url, `HTTP ${res.status} with an answer that is not JSON; is this a spareband control API?`)
    }
    if (!res.ok) {
      const code = typeof json?.code === 'string' ? json.code : 'ERR_API'
      const message = typeof json?.message === 'string' ? json.message : `HTTP ${res.status}`
      throw new ApiCallError(res.status, code, message)
    }
    return json as T
  }
}

async function readCapped (res: Response, max: number): Promise<string> {
  if (res.body === null) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length
    // leaving the loop by throwing cancels the body stream
    if (size > max) throw new SparebandError('ERR_API_RESPONSE_TOO_LARGE', `the answer exceeds ${max} bytes; ask for fewer rows (e.g. ?limit=)`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
