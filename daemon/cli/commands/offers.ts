import type { Command } from 'commander'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { LevelWithSilent } from 'pino'
import { DEFAULT_DISCOVERY_TIMEOUT_MS, SellerDiscovery, type SeenSeller } from '../../buyer/discovery.ts'
import { ConfigError } from '../../config/load.ts'
import { createLogger } from '../../log.ts'
import { createNode } from '../../node/create-node.ts'
import { buyerConfig, withBuyerOptions, type BuyerCliOptions } from '../buyer-setup.ts'
import { formatAmount, formatBitRate, formatTable, tokenLabel } from '../format.ts'
import { printJson, printLines } from '../output.ts'

/** Flags of `spareband offers`. */
interface OffersOptions extends BuyerCliOptions {
  timeout?: string
  json?: boolean
}

/** One seller as `offers` shows it. */
interface OfferRow {
  peerId: string
  status: SeenSeller['status']
  pricePerGiB: string | undefined
  spareUplinkBps: number | undefined
  latencyMs: number | undefined
  region: string | undefined
  services: string[] | undefined
  payout: string | undefined
  expiresAt: number | undefined
  error: { code: string, message: string } | undefined
}

const STATUS_ORDER: Record<SeenSeller['status'], number> = { verified: 0, unsuitable: 1, unavailable: 2, rejected: 3, unreachable: 4 }

/** `spareband offers`: a short-lived node joins the DHT, fetches and checks every seller's offer, and lists them. */
export function offersCommand (program: Command): void {
  withBuyerOptions(program.command('offers'))
    .description('list the sellers the DHT knows: verified offers with price, spare uplink, latency and region, and the ones that failed')
    .option('--timeout <ms>', `time limit of the search (default ${DEFAULT_DISCOVERY_TIMEOUT_MS})`)
    .option('--json', 'print the sellers as JSON')
    .action(async (opts: OffersOptions) => {
      const timeoutMs = opts.timeout === undefined ? DEFAULT_DISCOVERY_TIMEOUT_MS : Number(opts.timeout)
      if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new ConfigError(`--timeout ${opts.timeout} is not a number of milliseconds`)
      const { config } = await buyerConfig(opts)
      if (config.bootstrap.length === 0 && !config.mdns) throw new ConfigError('no way into the DHT: pass --bootstrap <multiaddr> (a seller prints its address when it starts) or enable mdns')
      const logger = createLogger({ level: (process.env.SPAREBAND_LOG_LEVEL as LevelWithSilent | undefined) ?? 'warn' })
      // a throwaway identity: looking is anonymous, nothing is paid
      const node = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: [], bootstrap: config.bootstrap, mdns: config.mdns, dhtServer: false })
      let seen: SeenSeller[]
      try {
        const discovery = new SellerDiscovery(node, { chainId: config.chain.chainId, contract: config.chain.contract, token: config.buyer.token, logger })
        await discovery.discover({ region: config.buyer.region, timeoutMs })
        seen = discovery.seen()
      } finally {
        await node.stop()
      }
      const token = config.buyer.token
      const rows = seen.map(toRow(token)).sort((a, b) =>
        STATUS_ORDER[a.status] - STATUS_ORDER[b.status] ||
        Number(BigInt(a.pricePerGiB ?? 0) - BigInt(b.pricePerGiB ?? 0)) ||
        (a.latencyMs ?? 0) - (b.latencyMs ?? 0))
      if (opts.json === true) {
        printJson({ chainId: config.chain.chainId, contract: config.chain.contract, token, region: config.buyer.region ?? null, sellers: rows })
        return
      }
      if (rows.length === 0) {
        printLines(`No seller found in the DHT within ${timeoutMs} ms. Check the bootstrap peers, or look again in a moment (sellers advertise shortly after they start).`)
        return
      }
      printLines(
        `${rows.filter((r) => r.status === 'verified').length} of ${rows.length} sellers usable on chain ${config.chain.chainId}, prices per GiB in ${tokenLabel(token)}:`,
        ...formatTable(rows, [
          { header: 'STATUS', value: (r) => r.status },
          { header: 'PEER', value: (r) => r.peerId },
          { header: 'PRICE/GiB', value: (r) => r.pricePerGiB === undefined ? '-' : formatAmount(r.pricePerGiB, token), right: true },
          { header: 'SPARE', value: (r) => r.spareUplinkBps === undefined ? '-' : formatBitRate(r.spareUplinkBps), right: true },
          { header: 'LATENCY', value: (r) => r.latencyMs === undefined ? '-' : `${r.latencyMs.toFixed(0)} ms`, right: true },
          { header: 'REGION', value: (r) => r.region ?? '-' },
          { header: 'NOTE', value: (r) => r.error === undefined ? '' : `${r.error.code}: ${r.error.message}` }
        ])
      )
    })
}

/** A seen seller as a row: its price in the buyer's token, and why it is not usable. */
function toRow (token: string): (s: SeenSeller) => OfferRow {
  return (s) => ({
    peerId: s.peerId,
    status: s.status,
    pricePerGiB: s.offer?.tokens.find((t) => t.token.toLowerCase() === token.toLowerCase())?.pricePerGiB.toString(),
    spareUplinkBps: s.offer?.spareUplinkBps,
    latencyMs: s.latencyMs === undefined ? undefined : Math.round(s.latencyMs * 10) / 10,
    region: s.offer?.region,
    services: s.offer?.services,
    payout: s.offer?.payout,
    expiresAt: s.offer?.expiresAt,
    error: s.error
  })
}
