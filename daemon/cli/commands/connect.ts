import type { Command } from 'commander'
import type { LevelWithSilent } from 'pino'
import { isLoopbackHost } from '../../api/http.ts'
import { hostPort, startBuyer } from '../../buyer/start-buyer.ts'
import { ConfigError, type ConfigLayer } from '../../config/load.ts'
import { createLogger } from '../../log.ts'
import { buyerConfig, buyerKeys, withBuyerOptions, type BuyerCliOptions } from '../buyer-setup.ts'
import { formatAmount, formatBytes, tokenLabel } from '../format.ts'
import { printLines } from '../output.ts'
import { ProgressView, type ProgressMode } from '../progress.ts'
import { untilSignal } from '../signals.ts'

/** Flags of `spareband connect`. */
interface ConnectOptions extends BuyerCliOptions {
  socks?: string
  http?: string
  spendCap?: string
  deposit?: string
  json?: boolean
}

/** `spareband connect`: buys relay service and serves local SOCKS5 and HTTP CONNECT proxies until Ctrl-C. */
export function connectCommand (program: Command): void {
  withBuyerOptions(program.command('connect'))
    .description('buy: find sellers in the DHT, pay one through a channel and serve local SOCKS5 and HTTP CONNECT proxies until Ctrl-C')
    .option('--socks <host:port>', 'SOCKS5 proxy address (default buyer.socksListen, 127.0.0.1:1080; port 0 picks a free one)')
    .option('--http <host:port>', 'HTTP CONNECT proxy address (default buyer.httpListen, 127.0.0.1:8118)')
    .option('--spend-cap <amount>', 'most this run signs for, in token base units (wei for the native coin)')
    .option('--deposit <amount>', 'deposit of a new channel, in token base units')
    .option('--json', 'print JSON lines (events and progress) instead of text')
    .action(async (opts: ConnectOptions) => {
      const setup = await buyerConfig(opts, flagLayer(opts))
      const { config } = setup
      for (const [name, listen] of [['SOCKS5', config.buyer.socksListen], ['HTTP', config.buyer.httpListen]]) {
        if (!isLoopbackHost(hostPort(listen).host)) throw new ConfigError(`the ${name} proxy address ${listen} is not on loopback: the proxies have no authentication, so whoever reaches them spends your money; use 127.0.0.1 or [::1]`)
      }
      if (config.bootstrap.length === 0 && !config.mdns) throw new ConfigError('no way into the DHT: pass --bootstrap <multiaddr> (a seller prints its address when it starts) or enable mdns')
      const tty = process.stdout.isTTY === true && opts.json !== true
      const mode: ProgressMode = opts.json === true ? 'json' : tty ? 'tty' : 'lines'
      // on a terminal the status line is redrawn in place: keep the logs to warnings unless asked
      const level = (process.env.SPAREBAND_LOG_LEVEL as LevelWithSilent | undefined) ?? (tty ? 'warn' : config.logLevel)
      const logger = createLogger({ level })
      const keys = await buyerKeys(setup)
      if (mode !== 'json') {
        printLines(`spareband connect: looking for sellers through the DHT (${config.bootstrap.length} bootstrap peer${config.bootstrap.length === 1 ? '' : 's'}) on chain ${config.chain.chainId}…`)
      }
      const buyer = await startBuyer({ config, keys, logger, pollingIntervalMs: setup.devAccounts === undefined ? undefined : 100 })
      const client = buyer.client
      const socks = client.socksAddress
      const http = client.httpAddress
      const token = config.buyer.token
      const cur = client.current
      if (mode === 'json') {
        process.stdout.write(JSON.stringify({
          type: 'started',
          peerId: buyer.node.peerId.toString(),
          socks,
          http,
          seller: cur?.candidate.peerId.toString(),
          pricePerGiB: cur?.candidate.pricePerGiB.toString(),
          token,
          spendCap: config.buyer.spendCap,
          hotAddress: keys.hot.address
        }) + '\n')
      } else {
        printLines(
          `buyer ${buyer.node.peerId.toString()} (funds channels from ${keys.hot.address})`,
          `  seller       ${cur?.candidate.peerId.toString()} at ${formatAmount(cur?.candidate.pricePerGiB ?? 0n, token)} ${tokenLabel(token)} per GiB`,
          `  SOCKS5 proxy ${socks?.host}:${socks?.port}   e.g. curl --socks5-hostname ${socks?.host}:${socks?.port} https://example.com`,
          `  HTTP proxy   ${http?.host}:${http?.port}   CONNECT only, e.g. https_proxy=http://${http?.host}:${http?.port} curl https://example.com`,
          `  spend cap    ${formatAmount(config.buyer.spendCap, token)} ${tokenLabel(token)}`,
          'Press Ctrl-C to stop.'
        )
      }
      const view = new ProgressView({ mode, output: { write: (text) => process.stdout.write(text), columns: process.stdout.columns } })
      view.start(client)
      await untilSignal()
      view.stop()
      const last = client.progress()
      await buyer.stop()
      if (mode === 'json') process.stdout.write(JSON.stringify({ type: 'stopped', bytes: last.bytes.toString(), spent: last.spent.toString(), failovers: last.failovers, sellersTried: last.sellersTried }) + '\n')
      else printLines(`Stopped: ${formatBytes(last.bytes)} relayed for ${formatAmount(last.spent, token)} ${tokenLabel(token)} through ${last.sellersTried} seller${last.sellersTried === 1 ? '' : 's'}; the session was closed.`)
    })
}

/** The flags that override the configuration. */
function flagLayer (opts: ConnectOptions): ConfigLayer {
  for (const [flag, value] of [['--spend-cap', opts.spendCap], ['--deposit', opts.deposit]] as const) {
    if (value !== undefined && !/^(0|[1-9][0-9]{0,77})$/.test(value)) throw new ConfigError(`${flag} ${value} is not an amount in base units (a whole number, e.g. 100000000000000000 for 0.1 of the native coin)`)
  }
  const buyer = {
    ...(opts.socks !== undefined ? { socksListen: opts.socks } : {}),
    ...(opts.http !== undefined ? { httpListen: opts.http } : {}),
    ...(opts.spendCap !== undefined ? { spendCap: opts.spendCap } : {}),
    ...(opts.deposit !== undefined ? { deposit: opts.deposit } : {})
  }
  return Object.keys(buyer).length === 0 ? {} : { buyer }
}
