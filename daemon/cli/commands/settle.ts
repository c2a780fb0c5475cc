import type { Command } from 'commander'
import type { ApiSettleResult } from '../../api/server.ts'
import type { EarningsView, Wire } from '../../api/views.ts'
import { apiClient, resolveApiTarget, withApiOptions, type ApiTargetOptions } from '../api-target.ts'
import { formatTokenAmount } from '../format.ts'
import { printJson, printLines } from '../output.ts'

/** The daemon may wait up to two minutes for a receipt; give it a little longer than its own limit. */
const SETTLE_TIMEOUT_MS = 180_000

/** `spareband settle --now`: asks the running seller to settle every owed voucher now. */
export function settleCommand (program: Command): void {
  withApiOptions(program.command('settle'))
    .description('settle owed vouchers on chain now (without --now: show what is owed)')
    .option('--now', 'send the settlement transaction now')
    .option('--ignore-gas-cap', 'send even if the gas price is above the configured cap')
    .action(async (opts: ApiTargetOptions & { now?: boolean, ignoreGasCap?: boolean }) => {
      const target = await resolveApiTarget(opts)
      if (opts.now !== true) {
        const e = await (await apiClient(target, false)).get<Wire<EarningsView>>('/api/earnings?batches=1')
        if (opts.json === true) {
          printJson({ owed: e.tokens.map((t) => ({ token: t.token, owed: t.owed })) })
          return
        }
        const owed = e.tokens.filter((t) => t.owed !== '0')
        printLines(
          owed.length === 0 ? 'Nothing is owed: every accepted voucher is settled.' : `Owed: ${owed.map((t) => formatTokenAmount(t.owed, t.token)).join(', ')}`,
          'The daemon settles by itself (interval, threshold, close deadlines); run `spareband settle --now` to settle at once.'
        )
        return
      }
      const client = await apiClient(target, true, SETTLE_TIMEOUT_MS)
      const result = await client.post<Wire<ApiSettleResult>>('/api/settle', { ignoreGasCap: opts.ignoreGasCap === true })
      if (opts.json === true) {
        printJson(result)
        return
      }
      const lines: string[] = []
      for (const b of result.batches) {
        const paid = b.paid.map((p) => formatTokenAmount(p.amount, p.token)).join(', ') || 'nothing'
        lines.push(b.status === 'success'
          ? `Settled ${b.vouchers} voucher(s) in tx ${b.txHash} (block ${b.blockNumber}, ${Number(b.gasUsed).toLocaleString('en-US')} gas): paid ${paid}${b.skipped > 0 ? `; ${b.skipped} voucher(s) skipped by the contract` : ''}`
          : `Settlement tx ${b.txHash} reverted; its vouchers stay owed and are retried (see the daemon log)`)
      }
      if (result.deferredGasPrice !== null) lines.push(`Gas price ${(Number(result.deferredGasPrice) / 1e9).toFixed(2)} gwei is above the configured cap (chain.gasPriceCapGwei); nothing was sent. Pass --ignore-gas-cap to settle anyway.`)
      if (result.inFlight !== null) lines.push(`Transaction ${result.inFlight} is sent but not mined yet; \`spareband earnings\` shows it once it is.`)
      if (result.remaining > 0) lines.push(`${result.remaining} voucher(s) did not fit in this batch; the daemon sends them next.`)
      if (lines.length === 0) lines.push('Nothing to settle: every accepted voucher is already settled.')
      printLines(...lines)
    })
}
