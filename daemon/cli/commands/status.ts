import type { Command } from 'commander'
import type { ApiStatus } from '../../api/server.ts'
import type { Wire } from '../../api/views.ts'
import { apiClient, resolveApiTarget, withApiOptions, type ApiTargetOptions } from '../api-target.ts'
import { formatAgo, formatBitRate, formatBytes, formatTable, formatTokenAmount, shorten, formatAmount } from '../format.ts'
import { printJson, printLines } from '../output.ts'

/** Why a seller does not share, in words. */
export const SHARING_REASONS: Readonly<Record<string, string>> = {
  available: 'sharing',
  'outside-schedule': 'outside the sharing hours',
  'monthly-cap-reached': 'the monthly cap is reached',
  'link-busy': 'the uplink is busy',
  'limit-reached': 'the bandwidth limit is reached',
  'unknown-capacity': 'the uplink capacity is unknown (set uplink.capacityMbps)'
}

/** `spareband status`: the running seller at a glance, from its control API. */
export function statusCommand (program: Command): void {
  withApiOptions(program.command('status'))
    .description('show the running seller: sharing, sessions, owed, last settlement')
    .action(async (opts: ApiTargetOptions) => {
      const target = await resolveApiTarget(opts)
      const status = await (await apiClient(target, false)).get<Wire<ApiStatus>>('/api/status')
      if (opts.json === true) {
        printJson(status)
        return
      }
      const owed = new Map<string, bigint>()
      for (const o of status.owed) owed.set(o.token, (owed.get(o.token) ?? 0n) + BigInt(o.owed))
      const now = Date.now()
      printLines(
        `spareband seller ${status.peerId}`,
        `  sharing     ${status.spareUplinkBps > 0 ? `yes, ${formatBitRate(status.spareUplinkBps)} spare` : `no: ${SHARING_REASONS[status.sharing] ?? status.sharing}`}`,
        `  payout      ${status.payout} (hot key ${status.hotAddress} pays the gas)`,
        `  chain       ${status.chainId}, contract ${status.contract}`,
        `  sessions    ${status.sessions.length} live`,
        `  owed        ${owed.size === 0 ? 'nothing' : [...owed].map(([token, amount]) => formatTokenAmount(amount, token)).join(', ')}${status.owed.length > 0 ? ` on ${status.owed.length} channel(s)` : ''}`,
        `  settled     ${status.lastSettlement === null ? 'never yet' : `${formatAgo(status.lastSettlement.confirmedAt, now)} (tx ${status.lastSettlement.txHash})`}`,
        `  advertised  ${status.lastAdvertisedAt === undefined ? 'not yet' : formatAgo(status.lastAdvertisedAt, now)}`,
        `  dashboard   ${target.url}`
      )
      if (status.sessions.length > 0) {
        printLines('', ...formatTable(status.sessions, [
          { header: 'BUYER', value: (s) => shorten(s.peer, 6) },
          { header: 'CHANNEL', value: (s) => shorten(s.channelId, 4) },
          { header: 'RELAYED', value: (s) => formatBytes(s.deliveredBytes), right: true },
          { header: 'PAID', value: (s) => s.token === null ? s.paidAmount : formatAmount(s.paidAmount, s.token), right: true },
          { header: 'UNPAID', value: (s) => s.token === null ? s.unpaidAmount : formatAmount(s.unpaidAmount, s.token), right: true },
          { header: 'STATE', value: (s) => s.starved ? 'waiting for payment' : 'active' }
        ]))
      }
    })
}
