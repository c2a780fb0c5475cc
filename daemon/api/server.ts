/**
 * The seller's local control API and dashboard. The CLI (`spareband status`,
 * `channels`, `earnings`, `settle`, `fleet`) talks to a running daemon through it,
 * since LevelDB's lock keeps every other process out of the data directory.
 *
 * | route | access | answer |
 * |---|---|---|
 * | `GET /` | read | the dashboard page |
 * | `GET /api/status` | read | {@link ApiStatus} |
 * | `GET /api/channels?limit=N` | read | channels with latest voucher, settled, owed |
 * | `GET /api/earnings?batches=N` | read | per token settled/owed, batches, gas |
 * | `GET /api/sessions?recent=N` | read | live sessions and recently ended ones |
 * | `POST /api/settle` `{ ignoreGasCap? }` | write (token) | what the settlement round did |
 * | `GET /metrics` | read | Prometheus text |
 *
 * Bigints travel as decimal strings; errors as `{ code, message }`. A second,
 * optional listener (`metricsListen`, any address the operator chooses) serves only
 * `GET /metrics`, for a fleet's Prometheus.
 */
import type { Address } from 'viem'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { Type } from '@sinclair/typebox'
import type { SessionInfo } from '../payment/seller-payment-service.ts'
import type { SettleNowOptions, SettleResult } from '../settlement/settler.ts'
import type { SellerStatus } from '../seller.ts'
import { ApiError, HttpService, type Route, type RouteResult } from './http.ts'
import { DASHBOARD_HEADERS, DASHBOARD_HTML } from './dashboard.ts'
import { ensureApiToken } from './token.ts'
import { batchView, channelTokens, readChannels, readEarnings, readLastSettlement, readSessions, type BatchView, type EarningsView, type SellerReadSource } from './views.ts'

/** `GET /api/status`: the seller's status, each session with its token, and the last settlement. */
export interface ApiStatus extends Omit<SellerStatus, 'sessions'> {
  sessions: Array<SessionInfo & { token: Address | null }>
  lastSettlement: EarningsView['lastSettlement']
}

/** `POST /api/settle`: what the round did. */
export interface ApiSettleResult {
  batches: BatchView[]
  /** Set when the gas price cap held the batch back (wei per gas seen). */
  deferredGasPrice: bigint | null
  /** Set when a transaction was sent but not mined yet. */
  inFlight: string | null
  /** Vouchers left for the next round because the batch was full. */
  remaining: number
}

/** What the API reads and drives. */
export interface ApiSellerSource extends SellerReadSource {
  status: () => Promise<SellerStatus>
  settleNow: (options: SettleNowOptions) => Promise<SettleResult>
}

/** Options of {@link startApiServer}. */
export interface ApiServerInit {
  seller: ApiSellerSource
  /** The Prometheus registry, asked for on each scrape (the seller creates it on the first). */
  metrics: () => Promise<Registry>
  /** `host:port` of the control API (`apiListen`). */
  listen: string
  /** Allow a non-loopback `listen` (`apiAllowRemote`). */
  allowRemote: boolean
  /** `host:port` of the metrics-only listener (`metricsListen`), if any. */
  metricsListen?: string
  /** Data directory: holds the `api-token` file. */
  dataDir: string
  logger: Logger
}

/** A running control API. */
export interface ApiServer {
  /** Base URL of the API and dashboard, e.g. `http://127.0.0.1:8742/`. */
  url: string
  /** Base URL of the metrics-only listener, if configured. */
  metricsUrl: string | undefined
  stop: () => Promise<void>
}

const SETTLE_TIMEOUT_MS = 150_000
const SettleBody = Type.Object({ ignoreGasCap: Type.Optional(Type.Boolean()) }, { additionalProperties: false })

/** Starts the control API (and the metrics listener if configured). */
export async function startApiServer (init: ApiServerInit): Promise<ApiServer> {
  const token = await ensureApiToken(init.dataDir)
  const src = init.seller
  const metricsRoute: Route = {
    method: 'GET',
    path: '/metrics',
    access: 'read',
    handler: async (): Promise<RouteResult> => {
      const registry = await init.metrics()
      return { kind: 'text', body: await registry.metrics(), contentType: registry.contentType }
    }
  }
  const routes: Array<Route<any>> = [
    { method: 'GET', path: '/', access: 'read', handler: async () => ({ kind: 'text', body: DASHBOARD_HTML, contentType: 'text/html; charset=utf-8', headers: { ...DASHBOARD_HEADERS } }) },
    {
      method: 'GET',
      path: '/api/status',
      access: 'read',
      handler: async () => {
        const [status, channels, lastSettlement] = await Promise.all([src.status(), src.store.listChannels(), readLastSettlement(src.store)])
        const tokenOf = channelTokens(channels)
        const body: ApiStatus = { ...status, sessions: status.sessions.map((s) => ({ ...s, token: tokenOf.get(s.channelId.toLowerCase()) ?? null })), lastSettlement }
        return { kind: 'json', body }
      }
    },
    { method: 'GET', path: '/api/channels', access: 'read', handler: async ({ url }) => ({ kind: 'json', body: await readChannels(src, intParam(url, 'limit', 1000)) }) },
    { method: 'GET', path: '/api/earnings', access: 'read', handler: async ({ url }) => ({ kind: 'json', body: await readEarnings(src, intParam(url, 'batches', 20)) }) },
    { method: 'GET', path: '/api/sessions', access: 'read', handler: async ({ url }) => ({ kind: 'json', body: await readSessions(src, intParam(url, 'recent', 50)) }) },
    {
      method: 'POST',
      path: '/api/settle',
      access: 'write',
      body: SettleBody,
      timeoutMs: SETTLE_TIMEOUT_MS,
      handler: async ({ body }: { body: { ignoreGasCap?: boolean } }) => {
        const result = await src.settleNow({ ignoreGasCap: body.ignoreGasCap === true })
        const answer: ApiSettleResult = {
          batches: result.batches.map(batchView),
          deferredGasPrice: result.deferredGasPrice ?? null,
          inFlight: result.inFlight ?? null,
          remaining: result.remaining
        }
        return { kind: 'json', body: answer }
      }
    },
    metricsRoute
  ]
  const api = new HttpService({ name: 'control API', listenField: 'apiListen', listen: init.listen, allowRemote: init.allowRemote, routes, token, logger: init.logger })
  await api.start()
  let metricsService: HttpService | undefined
  if (init.metricsListen !== undefined) {
    try {
      metricsService = new HttpService({ name: 'metrics listener', listenField: 'metricsListen', listen: init.metricsListen, allowRemote: true, routes: [metricsRoute], logger: init.logger })
      await metricsService.start()
    } catch (err) {
      await api.stop()
      throw err
    }
  }
  return {
    url: api.url,
    metricsUrl: metricsService?.url,
    stop: async () => {
      await metricsService?.stop()
      await api.stop()
    }
  }
}

/** An integer query parameter in 1..10000, or its default. */
function intParam (url: URL, name: string, fallback: number): number {
  const raw = url.searchParams.get(name)
  if (raw === null) return fallback
  if (!/^[0-9]{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 10_000) throw new ApiError(400, 'ERR_API_BAD_REQUEST', `${name} must be an integer from 1 to 10000`)
  return Number(raw)
}
