import type { Command } from 'commander'
import type { LevelWithSilent } from 'pino'
import { runDemo, type DemoReport } from '../../demo.ts'
import { ConfigError } from '../../config/load.ts'
import { createLogger } from '../../log.ts'
import { formatAmount, formatBytes, formatTable, shorten } from '../format.ts'
import { printJson, printLines } from '../output.ts'

const NATIVE = '0x0000000000000000000000000000000000000000'

/** `spareband demo`: a whole market on this machine for half a minute, and a report of what happened. */
export function demoCommand (program: Command): void {
  program.command('demo')
    .description('run a small market on this machine (devnet, 3 sellers, 1 buyer, real traffic and settlement) and explain what happened')
    .option('--size <MiB>', 'size of each of the two downloads, in MiB (default 16)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { size?: string, json?: boolean }) => {
      const mib = opts.size === undefined ? 16 : Number(opts.size)
      if (!Number.isInteger(mib) || mib < 1 || mib > 1024) throw new ConfigError(`--size ${opts.size} must be a whole number of MiB between 1 and 1024`)
      const logger = createLogger({ level: (process.env.SPAREBAND_LOG_LEVEL as LevelWithSilent | undefined) ?? 'error' })
      let n = 0
      const report = await runDemo({
        logger,
        downloadBytes: mib * 1024 * 1024,
        onStep: opts.json === true ? undefined : (step) => { printLines(`[${++n}] ${step}…`) }
      })
      if (opts.json === true) printJson(report)
      else printLines('', ...explain(report))
    })
}

/** The report for a newcomer: who sold what at which price, the payments and where to go next. */
function explain (r: DemoReport): string[] {
  const eth = (v: bigint): string => `${formatAmount(v, NATIVE)} ETH`
  const downloads = r.downloads.map((d, i) => {
    const seller = r.sellers.find((s) => s.peerId === d.seller)
    return `  download ${i + 1}: ${formatBytes(d.bytes)} in ${(d.ms / 1000).toFixed(2)} s through seller ${seller?.name ?? '?'}, sha256 ${d.sha256Matches ? 'matches' : 'DOES NOT MATCH'}`
  })
  const txs = r.sellers.flatMap((s) => s.settlements.map((tx) => `  seller ${s.name}: ${tx}`))
  return [
    `What happened (${(r.durationMs / 1000).toFixed(1)} s, everything on loopback, chain ${r.chainId} with SpareChannels at ${r.contract}):`,
    '',
    'Three sellers advertised themselves in a private Kademlia DHT and signed offers with their prices.',
    'The buyer knew only seller C\'s address, found A and B through the DHT, checked each offer\'s signature,',
    'picked the cheapest, opened a payment channel on chain and served a SOCKS5 proxy',
    `on ${r.buyer.socks}. A plain HTTP client fetched ${r.server} through that proxy:`,
    ...downloads,
    `Between the downloads seller A settled and left; the buyer noticed and switched on its own (${r.buyer.failovers} failover:`,
    ...r.buyer.failoverReasons.map((reason) => `  "${reason}").`),
    '',
    'Who sold what (each voucher is a signed receipt for cumulative bytes, sent every half credit window):',
    ...formatTable(r.sellers, [
      { header: 'SELLER', value: (s) => s.name },
      { header: 'PEER', value: (s) => shorten(s.peerId, 6) },
      { header: 'PRICE/GiB', value: (s) => eth(s.pricePerGiB), right: true },
      { header: 'PAID BYTES', value: (s) => formatBytes(s.paidBytes), right: true },
      { header: 'VOUCHERS', value: (s) => String(s.vouchers), right: true },
      { header: 'EARNED', value: (s) => eth(s.paidAmount), right: true },
      { header: 'PAYOUT BALANCE', value: (s) => eth(s.payoutBalance), right: true },
      { header: 'PAYOUT ADDRESS', value: (s) => s.payout }
    ]).map((line) => `  ${line}`),
    `  The buyer relayed ${formatBytes(r.buyer.bytes)} (both ways) and signed for ${eth(r.buyer.spent)}; the last part of a window that no`,
    '  voucher covered yet stays unpaid, which is the seller\'s bounded risk (one credit window).',
    '',
    'Settlement transactions (one per seller with vouchers, each paying every channel it holds):',
    ...(txs.length > 0 ? txs : ['  none']),
    '',
    'What to try next:',
    '  spareband start --dev           a seller on its own devnet, with the dashboard; it prints its devnet RPC and address',
    '  spareband offers --dev-rpc <RPC> --bootstrap <seller address>',
    '  spareband connect --dev-rpc <RPC> --bootstrap <seller address>',
    '                                  then: curl --socks5-hostname 127.0.0.1:1080 https://example.com',
    '  spareband status, spareband earnings, spareband settle   (next to a running seller)'
  ]
}
