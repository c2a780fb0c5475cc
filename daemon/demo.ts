/**
 * `spareband demo`: a small market in one process, on loopback only. A
 * devnet; three sellers at different prices forming the DHT; one buyer that
 * knows a single seller's address and finds the others through the DHT; a
 * local HTTP server; downloads through the buyer's SOCKS5 proxy (real
 * traffic, real vouchers); the cheapest seller leaving half-way (the buyer
 * moves on by itself); settlement on chain. Returns a report of who sold
 * what, at which price, and what landed at each payout address.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { createPublicClient, http, parseEther, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { SparebandError } from '../protocol/errors.ts'
import { socks5Connect } from './buyer/socks5-client.ts'
import { startBuyer, type Buyer } from './buyer/start-buyer.ts'
import { startDevnet, type Devnet } from './chain/devnet.ts'
import { fileServer, formMarketDht, fundFromDevAccount, loadOrCreateKeys, localBuyerConfig, startLocalSeller, LOCAL_POLLING_MS, type LocalSeller } from './local-market.ts'

/** Raised when a step of the demo fails; the message names the step. */
export class DemoError extends SparebandError {
  constructor (step: string, cause: unknown) {
    super('ERR_DEMO', `the demo failed while ${step}: ${(cause as Error)?.message ?? String(cause)}`, { cause })
  }
}

/** Options of {@link runDemo}. */
export interface DemoOptions {
  logger: Logger
  /** Size of each of the two downloads. Default 16 MiB. */
  downloadBytes?: number
  /** Prices per GiB of the three sellers, in wei. Default 0.001, 0.002 and 0.003 ETH. */
  prices?: readonly bigint[]
  /** Called as each step starts, for a progress line. */
  onStep?: (step: string) => void
}

/** One seller in the report. */
export interface DemoSeller {
  name: string
  peerId: string
  pricePerGiB: bigint
  payout: Address
  /** Bytes covered by the seller's latest vouchers. */
  paidBytes: bigint
  /** What the latest vouchers are worth. */
  paidAmount: bigint
  /** Vouchers the buyer signed to this seller. */
  vouchers: number
  /** Settlement transactions. */
  settlements: Hex[]
  /** Balance of the payout address at the end (it started at zero). */
  payoutBalance: bigint
  /** Whether the seller left the market before the end. */
  left: boolean
}

/** One download in the report. */
export interface DemoDownload {
  bytes: number
  ms: number
  /** Seller the buyer used when the download finished. */
  seller: string
  sha256Matches: boolean
}

/** What the demo did. */
export interface DemoReport {
  rpcUrl: string
  chainId: number
  contract: Address
  buyer: { peerId: string, bootstrap: string, socks: string, spent: bigint, bytes: bigint, failovers: number, failoverReasons: string[] }
  server: string
  sellers: DemoSeller[]
  downloads: DemoDownload[]
  durationMs: number
}

const NAMES = ['A', 'B', 'C']
const DEFAULT_PRICES = [parseEther('0.001'), parseEther('0.002'), parseEther('0.003')]

/** Runs the demo market and stops everything it started, whatever happens. */
export async function runDemo (options: DemoOptions): Promise<DemoReport> {
  const started = performance.now()
  const log = options.logger
  const prices = options.prices ?? DEFAULT_PRICES
  const size = options.downloadBytes ?? 16 * 1024 * 1024
  const stoppers: Array<() => Promise<unknown>> = []
  let stepName = 'starting'
  const step = (name: string): void => {
    stepName = name
    options.onStep?.(name)
  }
  try {
    step('starting a devnet (anvil) with the channel contract')
    const devnet: Devnet = await startDevnet({ logger: log.child({ component: 'devnet' }) })
    stoppers.unshift(devnet.stop)
    const dir = await mkdtemp(join(tmpdir(), 'spareband-demo-'))
    stoppers.push(async () => { await rm(dir, { recursive: true, force: true }) })
    const chain = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })

    step('starting three sellers on 127.0.0.1 that form the DHT')
    const sellers: LocalSeller[] = []
    const payouts = prices.map(() => privateKeyToAccount(generatePrivateKey()).address)
    const live = new Set<LocalSeller>()
    stoppers.unshift(async () => { for (const s of live) await s.stop() })
    for (let i = 0; i < prices.length; i++) {
      const seller = await startLocalSeller({
        chain: devnet,
        dataDir: join(dir, `seller-${NAMES[i]}`),
        pricePerGiB: prices[i],
        payout: payouts[i],
        bootstrap: i === 0 ? [] : [address(sellers[0])],
        allowCidrs: ['127.0.0.2/32'],
        logger: log.child({ seller: NAMES[i] })
      })
      sellers.push(seller)
      live.add(seller)
    }
    await formMarketDht(sellers)

    step('serving a file on http://127.0.0.2 (the sellers\' exit policy allows 127.0.0.2/32 for the demo)')
    const payload = randomBytes(size)
    const digest = sha256(payload)
    const server = await fileServer('127.0.0.2', payload)
    stoppers.unshift(server.close)

    step('starting the buyer: it knows only seller C and finds the others through the DHT')
    const buyerDir = join(dir, 'buyer')
    const keys = await loadOrCreateKeys(join(buyerDir, 'keys.json'))
    await fundFromDevAccount(devnet, keys.hot.address, parseEther('1'))
    const bootstrap = address(sellers[sellers.length - 1])
    const buyer: Buyer = await startBuyer({
      config: localBuyerConfig({ chain: devnet, dataDir: buyerDir, bootstrap: [bootstrap] }),
      keys,
      logger: log.child({ component: 'buyer' }),
      pollingIntervalMs: LOCAL_POLLING_MS
    })
    stoppers.unshift(buyer.stop)
    const vouchers = new Map<string, number>()
    const countVouchers = (): void => {
      const cur = buyer.client.current
      if (cur === undefined) return
      const id = cur.candidate.peerId.toString()
      cur.session.on('voucher', () => { vouchers.set(id, (vouchers.get(id) ?? 0) + 1) })
    }
    countVouchers()
    buyer.client.on('seller', countVouchers)
    const failoverReasons: string[] = []
    buyer.client.on('failover', (f) => { failoverReasons.push(f.reason) })
    const socks = buyer.client.socksAddress as { host: string, port: number }
    const target = { host: server.host, port: server.port }

    const downloads: DemoDownload[] = []
    const fetchOnce = async (): Promise<void> => {
      const t0 = performance.now()
      const body = await httpGet(await socks5Connect({ proxy: socks, target }), `${server.host}:${server.port}`)
      downloads.push({ bytes: body.length, ms: performance.now() - t0, seller: buyer.client.progress().seller ?? '', sha256Matches: sha256(body) === digest })
    }
    step(`downloading ${size / 1024 / 1024} MiB through the buyer's SOCKS5 proxy`)
    await fetchOnce()

    step('seller A settles and leaves the market; the buyer moves to the next seller by itself')
    const first = sellers[0]
    await settledUp(first, buyer)
    const settlements = new Map<string, Hex[]>()
    const settle = async (s: LocalSeller): Promise<void> => {
      const result = await s.settler.settleNow({ ignoreGasCap: true })
      settlements.set(s.node.peerId.toString(), result.batches.map((b) => b.txHash))
    }
    await settle(first)
    const firstPaid = await paid(first)
    await first.stop()
    live.delete(first)
    await waitUntil(() => buyer.client.progress().seller !== undefined && buyer.client.progress().seller !== first.node.peerId.toString(), 20_000, 'the buyer to switch sellers')

    step(`downloading ${size / 1024 / 1024} MiB again`)
    await fetchOnce()

    step('settling on chain: each seller redeems its latest vouchers in one transaction')
    const current = sellers.find((s) => s.node.peerId.toString() === buyer.client.progress().seller)
    if (current !== undefined) await settledUp(current, buyer)
    await buyer.stop()
    stoppers.splice(stoppers.indexOf(buyer.stop), 1)
    // after the stop: a polite close pays for the last partial window too
    const progress = buyer.client.progress()
    const reported: DemoSeller[] = []
    for (let i = 0; i < sellers.length; i++) {
      const s = sellers[i]
      const id = s.node.peerId.toString()
      const left = s === first
      if (!left) await settle(s)
      const sums = left ? firstPaid : await paid(s)
      reported.push({
        name: NAMES[i],
        peerId: id,
        pricePerGiB: prices[i],
        payout: payouts[i],
        paidBytes: sums.bytes,
        paidAmount: sums.amount,
        vouchers: vouchers.get(id) ?? 0,
        settlements: settlements.get(id) ?? [],
        payoutBalance: await chain.getBalance({ address: payouts[i] }),
        left
      })
    }
    return {
      rpcUrl: devnet.rpcUrl,
      chainId: devnet.chainId,
      contract: devnet.contract,
      buyer: { peerId: buyer.node.peerId.toString(), bootstrap, socks: `${socks.host}:${socks.port}`, spent: progress.spent, bytes: progress.bytes, failovers: progress.failovers, failoverReasons },
      server: `http://${server.host}:${server.port}/data`,
      sellers: reported,
      downloads,
      durationMs: performance.now() - started
    }
  } catch (err) {
    throw err instanceof SparebandError ? err : new DemoError(stepName, err)
  } finally {
    for (const stop of stoppers) await stop().catch((err: unknown) => { log.warn({ err }, 'error while stopping the demo') })
  }
}

function address (seller: LocalSeller): string {
  return seller.node.getMultiaddrs()[0].toString()
}

/** Sums of the seller's latest vouchers. */
async function paid (seller: LocalSeller): Promise<{ bytes: bigint, amount: bigint }> {
  let bytes = 0n
  let amount = 0n
  for (const v of await seller.store.listVouchers()) {
    bytes += v.cumulativeBytes
    amount += v.cumulativeAmount
  }
  return { bytes, amount }
}

/** Waits until the seller holds every voucher the buyer signed on its channels (at most 10 s). */
async function settledUp (seller: LocalSeller, buyer: Buyer): Promise<void> {
  await waitUntilAsync(async () => {
    for (const v of await seller.store.listVouchers()) {
      const signed = await buyer.store.getSigned(v.channelId)
      if (signed !== undefined && signed.cumulativeAmount !== v.cumulativeAmount) return false
    }
    return true
  }, 10_000, 'the last voucher to reach the seller')
}

async function waitUntil (check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  await waitUntilAsync(async () => check(), timeoutMs, what)
}

async function waitUntilAsync (check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** `GET /data` over an open tunnel; resolves with the whole body. */
async function httpGet (socket: Socket, authority: string): Promise<Buffer> {
  return await new Promise<Buffer>((resolve, reject) => {
    const req = request({ createConnection: () => socket, path: '/data', headers: { host: authority, connection: 'close' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      res.once('end', () => { res.complete ? resolve(Buffer.concat(chunks)) : reject(new Error('the download broke off')) })
      res.once('error', reject)
    })
    req.once('error', reject)
    req.end()
    socket.resume()
  })
}
