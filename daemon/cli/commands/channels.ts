import type { Command } from 'commander'
import type { ChannelView, Wire } from '../../api/views.ts'
import { apiClient, resolveApiTarget, withApiOptions, type ApiTargetOptions } from '../api-target.ts'
import { formatAgo, formatAmount, formatBytes, formatTable, shorten, tokenLabel } from '../format.ts'
import { printJson, printLines } from '../output.ts'

/** `spareband channels`: the seller's payment channels with their latest voucher, settled and owed amounts. */
export function channelsCommand (program: Command): void {
  withApiOptions(program.command('channels'))
    .description('list payment channels: latest voucher, settled, owed, live session')
    .option('--limit <n>', 'most channels to list, most recently seen first', '100')
    .action(async (opts: ApiTargetOptions & { limit: string }) => {
      const target = await resolveApiTarget(opts)
      const answer = await (await apiClient(target, false)).get<Wire<{ total: number, channels: ChannelView[] }>>(`/api/channels?limit=${encodeURIComponent(opts.limit)}`)
      if (opts.json === true) {
        printJson(answer)
        return
      }
      if (answer.total === 0) {
        printLines('No payment channel yet: buyers open one when they first use this seller.')
        return
      }
      const now = Date.now()
      printLines(...formatTable(answer.channels, [
        { header: 'CHANNEL', value: (c) => shorten(c.channelId, 4) },
        { header: 'TOKEN', value: (c) => tokenLabel(c.token) },
        { header: 'DEPOSIT', value: (c) => formatAmount(c.deposit, c.token), right: true },
        { header: 'VOUCHER', value: (c) => c.voucher === null ? '-' : formatAmount(c.voucher.cumulativeAmount, c.token), right: true },
        { header: 'BYTES', value: (c) => c.voucher === null ? '-' : formatBytes(c.voucher.cumulativeBytes), right: true },
        { header: 'SETTLED', value: (c) => formatAmount(c.settled, c.token), right: true },
        { header: 'OWED', value: (c) => formatAmount(c.owed, c.token), right: true },
        { header: 'STATE', value: (c) => c.session !== null ? 'live session' : c.closeDeadline !== '0' ? 'closing' : 'idle' },
        { header: 'SEEN', value: (c) => formatAgo(c.lastSeenAt, now) }
      ]))
      if (answer.total > answer.channels.length) printLines(`(${answer.channels.length} of ${answer.total} channels; --limit for more)`)
    })
}
