import type { Command } from 'commander'
import type { EarningsView, Wire } from '../../api/views.ts'
import { apiClient, resolveApiTarget, withApiOptions, type ApiTargetOptions } from '../api-target.ts'
import { formatAgo, formatAmount, formatTable, formatTokenAmount, shorten, tokenLabel } from '../format.ts'
import { printJson, printLines } from '../output.ts'

/** `spareband earnings`: settled and owed amounts per token, and the recent settlement batches. */
export function earningsCommand (program: Command): void {
  withApiOptions(program.command('earnings'))
    .description('show earnings per token (settled on chain, owed) and recent settlement batches')
    .option('--batches <n>', 'how many recent batches to list', '10')
    .action(async (opts: ApiTargetOptions & { batches: string }) => {
      const target = await resolveApiTarget(opts)
      const e = await (await apiClient(target, false)).get<Wire<EarningsView>>(`/api/earnings?batches=${encodeURIComponent(opts.batches)}`)
      if (opts.json === true) {
        printJson(e)
        return
      }
      const now = Date.now()
      printLines(...formatTable(e.tokens, [
        { header: 'TOKEN', value: (t) => tokenLabel(t.token) },
        { header: 'SETTLED', value: (t) => formatAmount(t.settled, t.token), right: true },
        { header: 'OWED', value: (t) => formatAmount(t.owed, t.token), right: true },
        { header: 'AT RISK (LIVE)', value: (t) => formatAmount(t.unpaidLive, t.token), right: true },
        { header: 'CHANNELS', value: (t) => String(t.channels), right: true }
      ]))
      printLines('', `Settlement: ${e.batchCount} batch(es), gas ${formatTokenAmount(e.gasSpent, '0x0000000000000000000000000000000000000000')}${e.inFlight.length > 0 ? `, ${e.inFlight.length} waiting to be mined` : ''}`)
      if (e.batches.length > 0) {
        printLines('', ...formatTable(e.batches, [
          { header: 'WHEN', value: (b) => formatAgo(b.confirmedAt, now) },
          { header: 'TRANSACTION', value: (b) => b.txHash },
          { header: 'VOUCHERS', value: (b) => `${b.vouchers}${b.skipped > 0 ? ` (+${b.skipped} skipped)` : ''}`, right: true },
          { header: 'PAID', value: (b) => b.paid.map((p) => formatTokenAmount(p.amount, p.token)).join(', ') || '0', right: true },
          { header: 'GAS', value: (b) => Number(b.gasUsed).toLocaleString('en-US'), right: true },
          { header: 'STATUS', value: (b) => b.status }
        ]))
      }
      for (const f of e.inFlight) printLines(`  in flight: batch ${f.id}, ${f.vouchers} voucher(s), ${f.txHash === null ? 'not signed yet' : `tx ${shorten(f.txHash, 8)}`}`)
    })
}
